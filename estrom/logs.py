"""Where Beater's and Tailor's logs go: text lines (autobahn's, as before), or with
``ESTROM_LOG_FORMAT=json`` one JSON object per line for a log pipeline:
``{"time", "level", "logger", "message"}``, and ``"traceback"`` for an error that has one."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import txaio
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from zope.interface import implementer

FORMATS = ("text", "json")


def start_logging(log_format: str, out: TextIO = sys.stdout) -> None:
    """Log at level info and above to ``out``, as ``log_format`` says; ValueError for another."""
    if log_format not in FORMATS:
        raise ValueError(f"ESTROM_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {log_format[:50]!r}")
    if log_format == "text":
        txaio.start_logging(level="info")
        return
    # txaio's levels still filter autobahn's own loggers; its text observer is left out.
    txaio.start_logging(out=None, level="info")
    globalLogPublisher.addObserver(JsonLines(out))


@implementer(ILogObserver)
class JsonLines:
    """A log observer that writes each event of level info and above as one JSON line."""

    def __init__(self, out: TextIO, level: LogLevel = LogLevel.info):
        self.out, self.level = out, level

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level", LogLevel.info)
        if level < self.level:
            return
        record = {
            "time": datetime.fromtimestamp(event.get("log_time", 0), UTC).isoformat(timespec="milliseconds"),
            "level": level.name,
            "logger": event.get("log_namespace", ""),
            "message": formatEvent(event),
        }
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        self.out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self.out.flush()
