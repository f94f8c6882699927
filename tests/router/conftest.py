from tests.router import probe


def pytest_collection_finish(session) -> None:
    """Start the router's Python on the probe cases (tests/router/probe.py) if a selected test
    reads them: it then runs beside the tests that come first."""
    probe.start({item.module.__name__ for item in session.items if getattr(item, "module", None)})
