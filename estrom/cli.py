"""``estrom tail``: follow a query from a terminal, one line per matching document.

It reads Tailor's HTTP stream (so it works through any HTTP proxy: urllib honours
``http_proxy``) and parses it incrementally with ijson. When the connection is lost it says so on
stderr and reconnects with backoff, to the same subscription, after the cursor of the last hit
it printed: with the store, what arrived meanwhile comes first; without, it says a gap happened.
Ctrl-C ends it with status 0.

This is a plain blocking program, not a reactor process.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.client import HTTPException
from pathlib import Path
from typing import Any, TextIO

import ijson
from twisted.web.iweb import IResponse

from estrom import api, tokens
from estrom.cursor import cursor_iso, cursor_ms

DEFAULT_URL = "http://127.0.0.1:8090"
RECONNECT_MAX_SECONDS = 10.0
# Tailor sends whitespace every 15 s on a quiet stream: a read that waits longer has lost it.
READ_TIMEOUT_SECONDS = 60.0

_COLOURS = {
    "fatal": "\033[1;31m",
    "critical": "\033[1;31m",
    "error": "\033[31m",
    "err": "\033[31m",
    "warn": "\033[33m",
    "warning": "\033[33m",
    "debug": "\033[2m",
    "trace": "\033[2m",
}
_RESET = "\033[0m"
_FIELD = re.compile(r"\{([^{}]+)\}")

# What a document must not send to the reader's terminal: C0 controls (ESC starts escape
# sequences: colours, cursor moves, OSC 52 clipboard writes, window titles) and DEL; C1 controls,
# U+0080-U+009F (U+009B is CSI on terminals that honour 8-bit controls); the bidirectional
# overrides and isolates, which reorder what is shown (CVE-2021-42574, "Trojan Source"); and the
# line and paragraph separators, which some tools take for new lines. Lone surrogates too: they
# cannot be written as UTF-8 at all. JSON escapes only C0 (and json.dumps with
# ensure_ascii=False none of the rest).
_JSON_LEAVES = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[\x00-\x1f{_JSON_LEAVES}]")
_UNSAFE_IN_JSON = re.compile(f"[{_JSON_LEAVES}]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


_GAP = "estrom: documents sent while disconnected are missing here (Tailor keeps no store, or lost more than its backlog holds)\n"
_BACKLOG_GAP = "estrom: more stored documents match than a backlog holds: the newest are shown\n"


class TailorRefused(Exception):
    """Tailor refused the request (4xx): retrying will not help."""


class Lost(Exception):
    """The stream broke off, or could not be opened for now: reconnect."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="estrom", description="Live, filtered tail for document streams.")
    commands = parser.add_subparsers(dest="command", required=True)
    tail = commands.add_parser(
        "tail",
        help="print each document matching a query as it arrives",
        description="Print each document matching a query as it arrives, one line each.",
    )
    add_query_arguments(tail)
    shape = tail.add_mutually_exclusive_group()
    shape.add_argument(
        "-o",
        "--output",
        choices=OUTPUTS,
        help="line: time, level, service, host, message (the default on a terminal); raw: the "
        "document as JSON (the default in a pipe); json: whole hits as NDJSON; template: see --format",
    )
    shape.add_argument(
        "--format", metavar="TEMPLATE", help="e.g. '{@timestamp} {level} {msg}'; {a.b} reads nested fields"
    )
    shape.add_argument("--json", action="store_true", help="print whole hits as NDJSON (for jq): -o json")
    tail.add_argument("--limit", type=int, metavar="N", help="stop after N documents")
    tail.add_argument(
        "-n", "--lines", type=int, metavar="N", help="first the last N stored documents (needs the store)"
    )
    tail.add_argument(
        "--since",
        metavar="TIME",
        help="first the stored documents since TIME: 5m, 1h, 2d, or ISO 8601 (needs the store)",
    )
    tail.add_argument(
        "--color", choices=["auto", "always", "never"], default="auto", help="colour lines by level"
    )
    tail.add_argument(
        "--highlight",
        action="store_true",
        help="why each matched: the engine's highlights of the terms, in reverse video in line output "
        "(in colour), under the hit's 'highlight' key with -o json",
    )
    tail.add_argument(
        "--token",
        default=os.environ.get("ESTROM_TOKEN"),
        help="a token that may read the index, when Tailor asks for one; $ESTROM_TOKEN keeps it out "
        "of the process list",
    )
    add_token_commands(commands)
    from estrom import top  # it reads streams with this module's helpers

    top.add_command(commands)
    args = parser.parse_args(argv)
    if args.command == "token":
        return tokens_command(args, parser)
    if args.command == "top":
        return top.command(args, parser, sys.stdout, sys.stderr)

    if args.subscription and (args.index or args.query):
        parser.error("give -s ID, or -i INDEX and QUERY, not both")
    if not args.subscription and not (args.index and args.query):
        parser.error("give -i INDEX and QUERY, or -s ID")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be a positive integer")
    if args.lines is not None and args.lines < 1:
        parser.error("-n must be a positive integer")
    if args.output == "template" and not args.format:
        parser.error("-o template needs --format TEMPLATE")
    if args.json:
        args.output = "json"
    elif args.format:
        args.output = "template"
    elif args.output is None:  # pipes get what they always got
        args.output = "line" if sys.stdout.isatty() else "raw"
    colour = args.color == "always" or (
        args.color == "auto" and sys.stdout.isatty() and args.output != "json"
    )
    try:
        return follow(args, sys.stdout, sys.stderr, colour)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # e.g. `estrom tail ... | head`
        sys.stderr.close()
        return 0


def add_query_arguments(command: argparse.ArgumentParser) -> None:
    """What a command that reads Tailor is asked: a query on an index, or its ID, and where."""
    command.add_argument("query", nargs="?", help="Lucene query string, or query DSL as a JSON object")
    command.add_argument("-i", "--index", help="the index the documents are sent to")
    command.add_argument(
        "-s", "--subscription", metavar="ID", help="a subscription ID instead of -i and QUERY"
    )
    command.add_argument(
        "--url",
        default=os.environ.get("ESTROM_TAILOR_URL", DEFAULT_URL),
        help="Tailor's URL ($ESTROM_TAILOR_URL, default: %(default)s)",
    )


def follow(args: argparse.Namespace, out: TextIO, err: TextIO, colour: bool) -> int:
    """Print hits until the limit, a refusal (status 2) or forever, reconnecting as needed."""
    subscription = args.subscription
    printed = 0
    delay = 0.5
    cursor = None  # of the last hit printed: where a reconnect resumes
    while True:
        if subscription:
            params = {"s": subscription}
        else:
            params = {"i": args.index, "q": args.query}
        if args.limit:
            params["limit"] = str(args.limit - printed)
        if getattr(args, "highlight", False):
            params["highlight"] = "true"
        if cursor is not None:
            params["after"] = cursor
        elif printed == 0:  # the backlog asked for, on the first connection only
            if args.lines:
                params["backlog"] = str(args.lines)
            if args.since:
                params["since"] = args.since
        try:
            for kind, value in stream_items(
                f"{args.url.rstrip('/')}/api/v0.1/docs", params, getattr(args, "token", None)
            ):
                if kind == "subscription_id":
                    if subscription is None:
                        subscription = value
                    delay = 0.5
                    continue
                if kind == "gap":
                    if value is True:
                        err.write(_GAP if "after" in params else _BACKLOG_GAP)
                        err.flush()
                    continue
                out.write(render(value, args, colour) + "\n")
                out.flush()
                printed += 1
                if isinstance(value.get("_cursor"), str):
                    cursor = value["_cursor"]
                if args.limit and printed >= args.limit:
                    return 0
            reason = "the stream ended"
        except TailorRefused as e:
            # Tailor's reasons quote the query, and the engine's: they are shown, not obeyed.
            err.write(f"estrom: {printable(str(e))}\n")
            return 2
        except Lost as e:
            reason = printable(str(e))
        resume = (
            "resuming after the last document shown" if cursor else "documents sent meanwhile are not shown"
        )
        err.write(f"estrom: {reason}; reconnecting in {delay:.1f} s ({resume})\n")
        err.flush()
        time.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX_SECONDS)


def stream_items(
    url: str, params: dict[str, str], token: str | None = None, array: str = "hits"
) -> Iterator[tuple[str, Any]]:
    """Yield ``("subscription_id", id)``, then ``("item", item)`` for each item of ``array`` (a
    hit, or an aggregation's frame) as it arrives."""
    request = urllib.request.Request(url + "?" + urllib.parse.urlencode(params))
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        response = urllib.request.urlopen(request, timeout=READ_TIMEOUT_SECONDS)
    except urllib.error.HTTPError as e:
        message = _error_message(e)
        if e.code in (400, 401, 403, 404):
            raise TailorRefused(message) from None
        raise Lost(message) from None
    except (urllib.error.URLError, OSError) as e:
        raise Lost(f"cannot reach Tailor at {url}: {getattr(e, 'reason', e)}") from None
    error, item = None, f"{array}.item"
    with response:
        try:
            builder = None
            # A frame's figures as floats; a hit's numbers as Decimal, which keeps their digits.
            for prefix, event, value in ijson.parse(_Available(response), use_float=array == "frames"):
                if prefix == "subscription_id":
                    yield "subscription_id", value
                elif prefix == "gap":
                    yield "gap", value
                elif prefix == "error":
                    error = value
                elif prefix == item and event in ("start_map", "start_array"):
                    builder = ijson.ObjectBuilder()
                    builder.event(event, value)
                elif builder is not None:
                    builder.event(event, value)
                    if prefix == item and event in ("end_map", "end_array"):
                        yield "item", builder.value
                        builder = None
        except (ijson.JSONError, HTTPException, OSError) as e:
            raise Lost(f"connection lost: {e}") from None
    if error:
        raise Lost(f"Tailor ended the stream: {error}")


class _Available:
    """A response whose ``read`` returns what has arrived, not a full buffer: ijson asks for
    64 kB at a time, and a live stream must not wait for that much."""

    def __init__(self, response: IResponse) -> None:
        self._response = response

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson's probe of the type read returns
            return b""
        return self._response.read1(size if size > 0 else 65536)


def add_token_commands(commands: Any) -> None:
    """``estrom token add|list|remove``: the token file (ESTROM_TOKENS) of Beater, Tailor and the
    router."""
    token = commands.add_parser(
        "token",
        help="make, list and remove tokens of the token file",
        description="Make, list and remove tokens of the token file that Beater, Tailor and the router read "
        "(they see changes within seconds). The file keeps each token's SHA-256 only: 'add' prints "
        "the token once.",
    )
    actions = token.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="make a token; print it once")
    add.add_argument("name", help="who the token is for (letters, digits, '_' and '-')")
    add.add_argument(
        "--send", action="append", default=[], metavar="PATTERN", help="an index pattern it may send to"
    )
    add.add_argument(
        "--read", action="append", default=[], metavar="PATTERN", help="an index pattern it may read"
    )
    actions.add_parser("list", help="the tokens' names and patterns")
    remove = actions.add_parser("remove", help="remove a token: it stops working within seconds")
    remove.add_argument("name")
    for parser in (add, remove, actions.choices["list"]):
        parser.add_argument(
            "--file",
            default=os.environ.get("ESTROM_TOKENS"),
            help="the token file ($ESTROM_TOKENS)",
        )


def tokens_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.file:
        parser.error("give the token file: --file or $ESTROM_TOKENS")
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else TOKEN_FILE_HEAD
        held = tokens.parse(text, str(path))
    except (OSError, tokens.TokenFileError) as e:
        print(f"estrom: {e}", file=sys.stderr)
        return 2
    if args.action == "list":
        for principal in held.principals.values():
            print(
                f"{principal.name}\tsend: {', '.join(principal.send) or '-'}\tread: {', '.join(principal.read) or '-'}"
            )
        return 0
    if args.action == "add":
        if args.name in held.principals:
            parser.error(f"there is a token named {args.name!r} already: remove it first")
        secret = tokens.new_token()
        try:
            added = tokens.entry(args.name, secret, args.send, args.read)
        except tokens.TokenFileError as e:
            parser.error(str(e))
        text = text.rstrip("\n") + "\n\n" + added
    else:
        if args.name not in held.principals:
            parser.error(f"there is no token named {args.name!r}")
        text = _without(text, args.name)
    try:
        # A name the file cannot hold, a pattern it cannot: refused here, the file unchanged.
        if args.action == "remove" and args.name in tokens.parse(text, str(path)).principals:
            print(
                f"estrom: cannot find where [tokens.{args.name}] begins and ends in {path} "
                "(edited by hand?): remove it there",
                file=sys.stderr,
            )
            return 2
        tokens.parse(text, str(path))
        _replace(path, text)
    except (OSError, tokens.TokenFileError) as e:
        print(f"estrom: {e}", file=sys.stderr)
        return 2
    if args.action == "add":
        print(secret)
        print(f"estrom: token {args.name!r} added to {path}; it is not shown again", file=sys.stderr)
    else:
        print(f"estrom: token {args.name!r} removed from {path}", file=sys.stderr)
    return 0


TOKEN_FILE_HEAD = (
    "# estrom's tokens (see docs/team.md): each token's SHA-256, and the index\n"
    "# patterns it may send to and read. Made with `estrom token add`.\n"
)


def _without(text: str, name: str) -> str:
    """``text`` without the table ``[tokens.<name>]`` (up to the next table)."""
    mine = re.compile(rf'\[\s*tokens\s*\.\s*("?){re.escape(name)}\1\s*\]\s*(#.*)?')
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        header = line.strip()
        if header.startswith("["):
            skipping = mine.fullmatch(header) is not None
        if not skipping:
            kept.append(line)
    return "".join(kept)


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` at once (readers see the old file or the new one). Readable by
    all, so that services running as other users (containers) can read it: it holds no token."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temporary, path)


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        return json.loads(error.read())["error"]
    except (ValueError, KeyError, TypeError, OSError):
        return f"Tailor answered {error.code} {error.reason}"


def render(hit: dict[str, Any], args: argparse.Namespace, colour: bool) -> str:
    """One line for ``hit``, as ``args.output`` says: ``line`` (the document's time, level,
    service and host, then its message), ``template``, ``json`` (the whole hit) or ``raw`` (the
    document as JSON).

    Whatever comes from the document is escaped so that it can neither control the terminal nor
    start a line of its own: JSON output stays valid JSON (``\\u009b``), the rest gets
    ``printable``.
    """
    output = getattr(args, "output", None) or ("json" if args.json else "template" if args.format else "raw")
    if output == "json":
        return _json(hit)
    source = hit.get("_source", {})
    level = _first(source, LEVEL_FIELDS, scalar=True)
    start = _COLOURS.get(str(level).lower()) if colour and level is not None else None
    if output == "line":
        return _line(hit, source, level, start, hit.get(api.HIGHLIGHT) if colour else None)
    if output == "template":
        line = _FIELD.sub(lambda match: _field(hit, source, match.group(1)), args.format)
    else:
        line = _json(source)
    return f"{start}{line}{_RESET}" if start else line


# What the line output reads of a document, each the first of its names that it holds.
TIME_FIELDS = ("@timestamp", "timestamp", "time")
LEVEL_FIELDS = ("level", "log.level", "severity")
MESSAGE_FIELDS = ("message", "msg", "log", "event.original")
SHOWN_FIELDS = ("service", "host")  # between the level and the message, when present
OUTPUTS = ("line", "raw", "json", "template")


def _line(hit: dict[str, Any], source: Any, level: Any, start: str | None, highlight: Any = None) -> str:
    """``time LEVEL service host message``: the time the document says (else when Beater took
    it), the level coloured, then the message; a document without one shows its other fields.
    The terms the engine highlighted (``highlight``) in reverse video."""
    when = _first(source, TIME_FIELDS, scalar=True)
    if when is None:
        cursor = hit.get("_cursor")
        when = _cursor_time(cursor)
    parts = [_text(when)]
    if level is not None:
        shown = _text(level).upper()[:10].ljust(5)
        if _marked(highlight, _named(source, LEVEL_FIELDS), level) != _text(level):
            shown = f"{_MARK}{shown.rstrip()}{_UNMARK}" + " " * (len(shown) - len(shown.rstrip()))
        parts.append(f"{start}{shown}{_RESET}" if start else shown)
    for name in SHOWN_FIELDS:
        value = _lookup(source, name)
        if value is not None and not isinstance(value, dict | list):
            parts.append(_marked(highlight, name, value))
    named = _named(source, MESSAGE_FIELDS)
    message = _first(source, MESSAGE_FIELDS, scalar=True)
    if message is None:
        rest = source
        if isinstance(source, dict):
            used = {*TIME_FIELDS, *LEVEL_FIELDS, *SHOWN_FIELDS}
            rest = {key: value for key, value in source.items() if key not in used}
        parts.append(_json(rest))
    else:
        parts.append(_marked(highlight, named, message))
    return " ".join(parts)


_MARK, _UNMARK = "\x1b[7m", "\x1b[27m"


def _named(source: Any, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` that ``source`` holds as a single value."""
    return next((name for name in names if _first(source, (name,), scalar=True) is not None), None)


def _marked(highlight: Any, name: str | None, value: Any) -> str:
    """``value`` as text, the parts the engine highlighted in it (api.HIGHLIGHT: the whole value,
    HTML-escaped, the terms in <em>) in reverse video; as it is when no highlight is of it."""
    fragments = highlight.get(name) if isinstance(highlight, dict) and name else None
    if not isinstance(value, str) or not isinstance(fragments, list):
        return _text(value)
    for fragment in fragments:
        if not isinstance(fragment, str):
            continue
        pieces = [html.unescape(piece) for piece in re.split(r"<em>|</em>", fragment)]
        if "".join(pieces) != value:
            continue  # another value of an array
        # Split on the tags, the pieces alternate: outside, inside, outside...
        return "".join(
            f"{_MARK}{printable(piece)}{_UNMARK}" if inside % 2 else printable(piece)
            for inside, piece in enumerate(pieces)
            if piece
        )
    return _text(value)


def _first(source: Any, names: tuple[str, ...], scalar: bool = False) -> Any:
    """The value of the first of ``names`` ``source`` holds (``scalar``: not an object or array)."""
    for name in names:
        value = _lookup(source, name)
        if value is not None and not (scalar and isinstance(value, dict | list)):
            return value
    return None


def _text(value: Any) -> str:
    return printable(value) if isinstance(value, str) else _json(value)


def _cursor_time(cursor: Any) -> str:
    """When Beater took the hit with ``cursor`` (as ``cursor_iso``), or ``-``."""
    return "-" if cursor_ms(cursor) is None else cursor_iso(cursor)


def printable(text: str) -> str:
    """``text`` with every control character in a visible form: ``\\n``, ``\\t``, ``\\x1b``,
    ``\\u009b``, ``\\u202e``. Backslashes are left alone: this is for reading, not for parsing
    (``--json`` is)."""
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x80 else f"\\u{ord(char):04x}"


def _json(value: Any) -> str:
    """Compact JSON, non-ASCII text kept readable, but no character a terminal would act on."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    # Outside its strings JSON is ASCII, so these are inside strings, where \\uXXXX means them.
    return _UNSAFE_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def _field(hit: dict, source: dict, name: str) -> str:
    value = _lookup(source, name)
    if value is None and name in ("_id", "_index", "_cursor"):
        value = hit.get(name)
    if value is None:
        return "-"
    return printable(value) if isinstance(value, str) else _json(value)


def _lookup(source: Any, name: str) -> Any:
    """``source[name]``, or by the dotted path ``a.b.c`` through nested objects."""
    if isinstance(source, dict) and name in source:
        return source[name]
    head, dot, rest = name.partition(".")
    if dot and isinstance(source, dict) and isinstance(source.get(head), dict):
        return _lookup(source[head], rest)
    return None


if __name__ == "__main__":
    sys.exit(main())
