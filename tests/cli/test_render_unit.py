"""`estrom tail`'s lines (estrom.cli.render): a document cannot control the reader's terminal, nor
start a line of its own, in any output shape."""

from __future__ import annotations

import argparse
import io
import json
import re

import pytest

from estrom.cli import printable, render

# What a hostile document carries: a colour and a cursor move (ESC, CSI), an OSC 52 clipboard
# write ending in BEL, a window title, an 8-bit CSI (U+009B), another C1 (NEL, U+0085), DEL, a
# right-to-left override, a line separator, and a new line that would fake a second document.
HOSTILE = (
    "\x1b[2J\x1b[31mred"
    "\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07"
    "\x1b]0;title\x1b\\"
    "\x9b31m\x85\x7f"
    "\u202eexe.txt\u2066"
    "\u2028"
    '\n{"level":"error","msg":"forged"}\r\tend'
)
HIT = {
    "_index": "events",
    "_id": "1\x1b[8m",
    "_source": {"level": "error", "msg": HOSTILE, "nested": {"m": HOSTILE}},
}
# Only what colouring adds itself: ESC [ digits ; m.
OWN_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def args(**kwargs) -> argparse.Namespace:
    return argparse.Namespace(**{"json": False, "format": None, "lines": None, "since": None, **kwargs})


def controls(line: str) -> list[str]:
    """The characters in ``line`` a terminal or a line splitter would act on."""
    return [
        char
        for char in line
        if ord(char) < 0x20
        or 0x7F <= ord(char) <= 0x9F
        or char in "\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    ]


SHAPES = {
    "compact": args(),
    "json": args(json=True),
    "format": args(format="{level} {msg} {nested} {nested.m} {_id}"),
    "line": args(output="line"),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("colour", [False, True])
def test_no_control_character_reaches_the_terminal(shape, colour):
    line = render(HIT, SHAPES[shape], colour)
    assert controls(OWN_COLOUR.sub("", line)) == []
    assert len(line.splitlines()) == 1


@pytest.mark.parametrize("shape", ["compact", "json"])
def test_json_output_stays_valid_and_means_the_same(shape):
    line = render(HIT, SHAPES[shape], False)
    assert json.loads(line) == (HIT if shape == "json" else HIT["_source"])


def test_json_output_keeps_other_text_readable():
    hit = {"_source": {"msg": "café ☕ 日本"}}
    assert render(hit, args(), False) == '{"msg":"café ☕ 日本"}'


def test_c1_controls_are_json_escaped():
    assert render({"_source": {"m": "\x9b31m\x85"}}, args(), False) == '{"m":"\\u009b31m\\u0085"}'


def test_template_fields_show_controls_in_a_visible_form():
    line = render({"_source": {"msg": "a\x1b[31mb\x9bc\u202ed\ne\tf\x7f"}}, args(format="[{msg}]"), False)
    assert line == "[a\\x1b[31mb\\u009bc\\u202ed\\ne\\tf\\x7f]"


def test_the_template_itself_is_the_users_and_kept():
    assert render({"_source": {"a": "x", "b": "y"}}, args(format="{a}\t{b}"), False) == "x\ty"


def test_printable_leaves_plain_text_alone():
    assert printable("C:\\Users\\me — café, ☕") == "C:\\Users\\me — café, ☕"


def test_tailors_refusal_is_shown_not_obeyed(monkeypatch):
    # Tailor's reasons quote the query and the engine's words.
    from estrom import cli

    def refused(url, params, token=None):
        raise cli.TailorRefused("invalid query: \x1b]52;c;ZXZpbA==\x07\x9b2J")
        yield  # a generator, as stream_items is

    monkeypatch.setattr(cli, "stream_items", refused)
    out, err = io.StringIO(), io.StringIO()
    status = cli.follow(
        args(url="http://tailor", subscription="s", index=None, query=None, limit=None), out, err, False
    )
    assert status == 2
    assert err.getvalue() == "estrom: invalid query: \\x1b]52;c;ZXZpbA==\\x07\\u009b2J\n"


def test_a_line_reads_time_level_service_host_then_the_message():
    hit = {
        "_cursor": "018f0000000000000beef"[:20],
        "_source": {
            "@timestamp": "2026-12-06T03:00:00.250Z",
            "level": "warn",
            "service": "api",
            "host": "h1",
            "status": 503,
            "msg": "upstream timed out",
        },
    }
    assert (
        render(hit, args(output="line"), False) == "2026-12-06T03:00:00.250Z WARN  api h1 upstream timed out"
    )
    coloured = render(hit, args(output="line"), True)
    assert coloured == "2026-12-06T03:00:00.250Z \x1b[33mWARN \x1b[0m api h1 upstream timed out"


def test_a_line_without_a_time_or_a_message_shows_when_it_was_taken_and_the_rest():
    cursor = f"{1_800_000_000_123:012x}0000beef"
    hit = {"_cursor": cursor, "_source": {"log": {"level": "error"}, "status": 500, "path": "/x"}}
    line = render(hit, args(output="line"), False)
    assert line == '2027-01-15T08:00:00.123Z ERROR {"log":{"level":"error"},"status":500,"path":"/x"}'
    # Other names of the same things: timestamp, severity, message; objects are not shown as service.
    hit = {
        "_source": {"timestamp": 1700000000, "severity": "INFO", "service": {"name": "x"}, "message": "ok"}
    }
    assert render(hit, args(output="line"), False) == "1700000000 INFO  ok"


def test_highlights_are_in_reverse_video_and_a_hostile_one_controls_nothing():
    hit = {
        "_source": {"level": "info", "service": "api", "msg": "a <b>timeout</b> \x1b[2J"},
        "highlight": {
            "msg": ["a &lt;b&gt;<em>timeout</em>&lt;&#x2F;b&gt; \x1b[2J"],
            "service": ["<em>api</em>"],
            "host": ["<em>h9</em>"],  # not in the document: nothing to mark
        },
    }
    line = render(hit, args(output="line"), colour=True)
    assert line.endswith("\x1b[7mapi\x1b[27m a <b>\x1b[7mtimeout\x1b[27m</b> \\x1b[2J")
    # A highlight that is not of the value (forged, or of another value) marks nothing.
    forged = {**hit, "highlight": {"msg": ["<em>\x1b[31m</em>"]}}
    assert render(forged, args(output="line"), colour=True).endswith(" api a <b>timeout</b> \\x1b[2J")
    # Without colour (a pipe), the line is the same text, unmarked.
    assert render(hit, args(output="line"), colour=False).endswith(" api a <b>timeout</b> \\x1b[2J")
    assert controls(OWN_COLOUR.sub("", line)) == []


def test_a_highlighted_level_is_in_reverse_video_in_its_colour():
    hit = {"_source": {"level": "error", "msg": "x"}, "highlight": {"level": ["<em>error</em>"]}}
    assert render(hit, args(output="line"), colour=True).startswith("- \x1b[31m\x1b[7mERROR\x1b[27m\x1b[0m x")
