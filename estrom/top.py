"""``estrom top``: the aggregated tail in a terminal, like ``top``.

It reads Tailor's ``/api/v0.1/aggs`` frames and redraws a table with each one: the total and the
rate with a sparkline of the histogram, each ``--by`` field's top values with their counts and
shares, each ``--stats`` field's statistics. ``q`` or Ctrl-C quits. ``--json`` prints the frames
as NDJSON; when the output is not a terminal it prints a plain line per frame. It reconnects as
``estrom tail`` does (an aggregation starts again: the first frame after says so).

The screen is drawn with blessed: it reads single keys in cbreak mode (``q``), switches to the
terminal's alternate screen and back, and measures wide characters (wcwidth), where rich
draws tables well but reads no keys. What a document holds is shown through
``estrom.cli.printable``: no escape sequence of a document reaches the terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import threading
import time
from typing import Any, TextIO

from blessed import Terminal

from estrom.cli import (
    RECONNECT_MAX_SECONDS,
    Lost,
    TailorRefused,
    add_query_arguments,
    printable,
    stream_items,
)

SPARKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 60  # buckets of the histogram shown, the newest


def add_command(commands: Any) -> None:
    top = commands.add_parser(
        "top",
        help="a live table of what a query matches: counts, rate, top values, statistics",
        description="A live table of what a query matches, redrawn with each frame; q quits.",
    )
    add_query_arguments(top)
    top.add_argument("--by", metavar="FIELDS", help="top values of these fields, e.g. service,host")
    top.add_argument("--stats", metavar="FIELDS", help="statistics of these numeric fields")
    top.add_argument("-k", type=int, default=10, help="top values per field (default: %(default)s)")
    top.add_argument("--window", help="a rolling window (5m, 1h) or 'all' (default: 5m; with --since, all)")
    top.add_argument(
        "--since",
        metavar="TIME",
        help="with the store: count the stored matches since then first (15m, 2h, or an ISO time)",
    )
    top.add_argument("--every", default="1s", help="how often the table is redrawn (default: %(default)s)")
    top.add_argument("--json", action="store_true", help="print the frames as NDJSON")
    top.add_argument(
        "--token",
        default=os.environ.get("ESTROM_TOKEN"),
        help="a token that may read the index ($ESTROM_TOKEN)",
    )


def command(args: argparse.Namespace, parser: argparse.ArgumentParser, out: TextIO, err: TextIO) -> int:
    if args.subscription and (args.index or args.query):
        parser.error("give -s ID, or -i INDEX and QUERY, not both")
    if not args.subscription and not (args.index and args.query):
        parser.error("give -i INDEX and QUERY, or -s ID")
    params = {"s": args.subscription} if args.subscription else {"i": args.index, "q": args.query}
    for name in ("by", "stats"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    params.update(k=str(args.k), window=args.window or ("all" if args.since else "5m"), every=args.every)
    if args.since:
        params["since"] = args.since
    frames: queue.Queue = queue.Queue()
    url = f"{args.url.rstrip('/')}/api/v0.1/aggs"
    threading.Thread(target=_read, args=(url, params, args.token, frames), daemon=True).start()
    if args.json:
        return _lines(frames, out, err, lambda frame: json.dumps(frame))
    if not out.isatty():
        return _lines(frames, out, err, plain)
    return _screen(frames, err)


def _read(url: str, params: dict[str, str], token: str | None, frames: queue.Queue) -> None:
    """Put each frame (``("frame", frame)``), each loss (``("lost", why)``) and a refusal
    (``("refused", why)``, the end) on ``frames``, reconnecting with backoff."""
    delay = 0.5
    while True:
        try:
            for kind, value in stream_items(url, params, token, "frames"):
                if kind == "item":
                    frames.put(("frame", value))
                    delay = 0.5
            reason = "the stream ended"
        except TailorRefused as e:
            frames.put(("refused", str(e)))
            return
        except Lost as e:
            reason = str(e)
        frames.put(("lost", f"{reason}; reconnecting in {delay:.1f} s (the aggregation starts again)"))
        time.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX_SECONDS)


def _lines(frames: queue.Queue, out: TextIO, err: TextIO, shape: Any) -> int:
    try:
        while True:
            try:
                kind, value = frames.get(timeout=0.5)  # a wait Ctrl-C can end
            except queue.Empty:
                continue
            if kind == "frame":
                out.write(shape(value) + "\n")
                out.flush()
                continue
            err.write(f"estrom: {printable(value)}\n")
            err.flush()
            if kind == "refused":
                return 2
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # e.g. `estrom top ... --json | head`
        err.close()
        return 0


def plain(frame: dict[str, Any]) -> str:
    """A frame as one line: the count and rate, each field's top values, each statistic."""
    parts = [f"count={frame.get('count')} rate={frame.get('rate')}/s"]
    for name, entry in (frame.get("top") or {}).items():
        values = ", ".join(f"{printable(str(v))}={n}" for v, n in entry.get("values", []))
        parts.append(f"{printable(name)}: {values or '-'}")
    for name, stats in (frame.get("stats") or {}).items():
        figures = " ".join(f"{k}={_number(v)}" for k, v in stats.items())
        parts.append(f"{printable(name)}: {figures}")
    return " | ".join(parts)


def sparkline(counts: list[int]) -> str:
    """The histogram's counts as block characters, scaled to the largest."""
    if not counts:
        return ""
    most = max(counts)
    if most == 0:
        return SPARKS[0] * len(counts)
    return "".join(SPARKS[min(len(SPARKS) - 1, n * len(SPARKS) // (most + 1))] for n in counts)


def table(frame: dict[str, Any], width: int) -> list[str]:
    """The lines of the screen for ``frame``, each at most ``width`` columns."""
    buckets = (frame.get("histogram") or {}).get("buckets") or []
    counts = [row[1] for row in buckets if isinstance(row, list) and len(row) > 1][-SPARK_WIDTH:]
    lines = [
        f"{frame.get('at', '')}  total {frame.get('count', 0):,}  rate {frame.get('rate', 0):,.1f}/s"
        + ("  (approximate)" if frame.get("approximate") else ""),
        sparkline(counts),
        "",
    ]
    for name, entry in (frame.get("top") or {}).items():
        shown = entry.get("values") or []
        total = sum(n for _, n in shown) + entry.get("other", 0)
        lines.append(
            f"{printable(name)}  (other {entry.get('other', 0):,}, missing {entry.get('missing', 0):,})"
        )
        for value, count in shown:
            share = count / total if total else 0.0
            bar = "█" * round(share * 20)
            lines.append(f"  {printable(str(value))[:40]:<40} {count:>10,} {share:>6.1%} {bar}")
        lines.append("")
    for name, stats in (frame.get("stats") or {}).items():
        lines.append(printable(name))
        lines.append("  " + "  ".join(f"{k} {_number(v)}" for k, v in stats.items()))
        lines.append("")
    lines.append("q quits")
    return [line[:width] for line in lines]


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _screen(frames: queue.Queue, err: TextIO) -> int:
    term = Terminal()
    message = "waiting for the first frame"
    frame: dict[str, Any] | None = None
    changed = True  # draw
    try:
        with term.fullscreen(), term.cbreak(), term.hidden_cursor():
            while True:
                if changed:
                    width, height = term.width or 80, term.height or 24
                    lines = table(frame, width) if frame is not None else []
                    if message:
                        lines.append(printable(message)[:width])
                    print(term.home + term.clear + "\n".join(lines[: height - 1]), end="", flush=True)
                key = term.inkey(timeout=0.05)
                if key == "q":
                    return 0
                changed = False
                while True:
                    try:
                        kind, value = frames.get_nowait()
                    except queue.Empty:
                        break
                    changed = True
                    if kind == "frame":
                        frame, message = value, ""
                    elif kind == "refused":
                        raise TailorRefused(value)
                    else:
                        message = value
    except TailorRefused as e:
        err.write(f"estrom: {printable(str(e))}\n")
        return 2
    except KeyboardInterrupt:
        return 0
