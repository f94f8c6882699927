"""The real system for the tests: a search engine node (OpenSearch 2.19, then Elasticsearch 7.17),
crossbar, Beater and Tailor, started on ports of their own (so a `make up` alongside does not
disturb them). Every test that uses `stack` runs once on each engine.

There is no skipping: if a part cannot start, every test that needs it fails, with its log.
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path

import pytest

from dev.stack import ENGINES, ROOT, Ports, Stack

TEST_PORTS = Ports(engine=19200, router=18080, beater=18070, tailor=18090)
ARTIFACTS = ROOT / "test-artifacts"
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="session", params=sorted(ENGINES))
def stack(request) -> Stack:
    """The running system, once on each search engine. A test that stops a part must start it
    again before it ends."""
    workdir = ARTIFACTS / f"stack-{request.param}"
    shutil.rmtree(workdir, ignore_errors=True)
    system = Stack(
        workdir,
        ports=TEST_PORTS,
        engine=request.param,
        watcher=secrets.token_urlsafe(24),
        # Each test has an index of its own, and so a percolator index: a run makes several
        # hundred, past the default cap (tests/beater/test_stored_queries.py tests the cap).
        env={"ESTROM_MAX_PERCOLATOR_INDEXES": "100000"},
    )
    try:
        system.start_engine()
        system.start_router()
        system.start_beater()
        system.start_tailor()
    except RuntimeError as e:
        system.down()
        pytest.fail(f"the test system did not start: {e}", pytrace=False)
    yield system
    system.down()


@pytest.fixture
def sole_beater(stack):
    """Start the only Beater with the given settings; the usual one is back after the test."""

    def start(**env: str) -> None:
        stack.stop("beater")
        stack.start_beater(**env)

    yield start
    stack.stop("beater")
    stack.start_beater()
    _STORED[id(stack)] = False


# How Beater runs for the tests that ask for ``stored``: with the store, and a backlog small
# enough to overflow in a test.
STORE = {"ESTROM_STORE": "true", "ESTROM_MAX_BACKLOG": "3000"}
_STORED: dict[int, bool] = {}  # by id(stack): whether its Beater runs with the store


@pytest.fixture(autouse=True)
def _beater_mode(request):
    """Beater runs with the store for tests that ask for ``stored``, without it for the others;
    it is restarted only when that changes (tests of a kind sit together in their modules)."""
    if "stack" not in request.fixturenames:
        return
    stack = request.getfixturevalue("stack")
    wanted = "stored" in request.fixturenames
    if _STORED.get(id(stack), False) != wanted:
        stack.stop("beater")
        stack.start_beater(**(STORE if wanted else {}))
        _STORED[id(stack)] = wanted


@pytest.fixture
def stored(stack):
    """The stack, with Beater running with the store (ESTROM_STORE, see _beater_mode)."""
    return stack


@pytest.fixture
def index(request) -> str:
    """An index name of this test's own, so that tests do not see each other's documents."""
    return "t-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:100]


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


def pytest_collection_modifyitems(items) -> None:
    """Mark every test that needs the running system (``stack``, directly or through another
    fixture) with ``stack``: ``make test-unit`` runs the others (``-m "not stack"``).

    The split shows in the file names: a test module (``tests/**/test_*.py``) whose name ends in
    ``_unit.py`` holds only unit tests, none of them marked ``stack``; every other test module
    holds only system tests, all marked ``stack``. A test on the wrong side fails the run."""
    misplaced = []
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)
        path = item.path.resolve()
        if path.suffix != ".py" or not path.name.startswith("test_") or TESTS not in path.parents:
            continue
        unit, marked = path.name.endswith("_unit.py"), item.get_closest_marker("stack") is not None
        if unit and marked:
            misplaced.append(f"  {item.nodeid}: uses the running system, in a *_unit.py module")
        elif not unit and not marked:
            misplaced.append(f"  {item.nodeid}: a unit test, in a module not named *_unit.py")
    if misplaced:
        raise pytest.UsageError(
            "a test module named *_unit.py holds only unit tests (none marked stack), every other "
            "test module only system tests (all marked stack, tests/conftest.py); move these:\n"
            + "\n".join(misplaced)
        )
