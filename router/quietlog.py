"""Debug-log arguments the router worker builds only when they are printed.

crossbar's router code logs at debug level on every message it routes, and builds the log
arguments first: ``hltype(self.processPublish)``, ``hlval(cache_key)`` (which colour text with
``click.style``) and ``pformat(authorization)``. Below debug level the log call does nothing,
but the arguments are built all the same: measured with py-spy on a router relaying one
publication per document, 15 % of the worker's CPU time went into them.

The upstream fix is a guard around each call (crossbar 26.10.1 has none, and its logger has no
lazy arguments); until then, :func:`quiet_debug_arguments` runs inside the router worker (from
the authorizer component, before any client is admitted) when the worker logs above debug:
- highlighted text is plain text (autobahn's ``hl`` without click, as when click is missing,
  and crossbar's own ``hl`` the same way): same words, no terminal colours;
- ``pformat`` in the router modules that use it only for log arguments renders when printed.
It runs in the router's Python (``.venv-router``) and imports crossbar, so it is not part of the
estrom package.
"""

from __future__ import annotations

import pprint
from typing import Any

import autobahn.util
import crossbar._util
import crossbar.router.role
import crossbar.router.router
import txaio

# Modules whose only use of pformat is as a debug-log argument (read in crossbar 26.10.1).
PFORMAT_IN_LOG_ONLY = (crossbar.router.router, crossbar.router.role)


class Rendered:
    """``pformat(value)``, computed when the log line is formatted, if ever."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __str__(self) -> str:
        return pprint.pformat(self.value)

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def plain(text: Any, bold: bool = False, color: str = "yellow") -> str:
    """crossbar's ``hl`` without colours."""
    return text if isinstance(text, str) else f"{text}"


def check() -> None:
    """What :func:`quiet_debug_arguments` replaces, there as it expects: RuntimeError says what
    is not (an upgrade changed it), and the router does not start."""
    missing = [
        f"{module.__name__}.{name}"
        for module, name in [(autobahn.util, "_HAS_CLICK"), (crossbar._util, "hl")]
        + [(module, "pformat") for module in PFORMAT_IN_LOG_ONLY]
        if not hasattr(module, name)
    ]
    if missing:
        raise RuntimeError(f"quietlog: crossbar or autobahn no longer has {', '.join(missing)}")


def quiet_debug_arguments(level: str | None = None) -> bool:
    """Make the router's debug-log arguments cheap unless ``level`` (the worker's log level,
    by default txaio's) prints them; whether it did."""
    check()
    if (level or txaio.get_global_log_level()) in ("debug", "trace"):
        return False
    autobahn.util._HAS_CLICK = False
    crossbar._util.hl = plain
    for module in PFORMAT_IN_LOG_ONLY:
        module.pformat = Rendered
    # And it works: highlighted text as crossbar's routing code builds it is plain.
    if "\x1b[" in crossbar._util.hltype(quiet_debug_arguments) + autobahn.util.hlval("x"):
        raise RuntimeError(
            "quietlog: crossbar's or autobahn's highlighting no longer goes through what it replaces"
        )
    return True
