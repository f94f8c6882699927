"""The token file (estrom/tokens.py): what it holds, what a client may show, how changes are read."""

from __future__ import annotations

import base64
import os

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from estrom import tokens
from estrom.http import GuardedSite, is_loopback
from estrom.tokens import ANONYMOUS, Principal, TokenFile, TokenFileError, entry, from_authorization, parse


def test_a_token_is_found_by_its_digest_and_the_file_keeps_no_token():
    secret = tokens.new_token()
    text = entry("shipper", secret, send=["logs-*", "events"])
    assert secret not in text
    held = parse(text)
    assert held.check(secret) == Principal("shipper", send=("logs-*", "events"), digest=tokens.digest(secret))
    assert held.check(secret, "shipper") == held.check(secret)
    assert held.check(secret, "alice") is None  # a name given must be the token's
    assert held.check(secret + "x") is None
    assert held.check("") is None
    assert held.check("x" * 10_000) is None


def test_patterns_are_shell_patterns_matched_case_sensitively():
    reader = Principal("alice", read=("logs-*", "events"))
    assert reader.may_read("logs-web") and reader.may_read("events")
    assert not reader.may_read("Logs-web") and not reader.may_read("events-2")
    assert not reader.may_send("logs-web")  # reading is not sending
    assert not reader.reads_everything and ANONYMOUS.reads_everything


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[tokens.a", "not valid TOML"),
        ("[other]\nx = 1", "unknown table 'other'"),
        ("tokens = 1", "must be a table"),
        ('[tokens."a.b"]\nsha256 = "' + "0" * 64 + '"', "cannot name a token"),
        ('[tokens.beater]\nsha256 = "' + "0" * 64 + '"', "cannot name a token"),
        ("[tokens.a]\nsha256 = 'abc'", "'sha256' must be"),
        ('[tokens.a]\nsha256 = "' + "0" * 64 + '"\nwrite = []', "unknown key 'write'"),
        ('[tokens.a]\nsha256 = "' + "0" * 64 + '"\nread = "logs-*"', "'read' must be a list"),
        ('[tokens.a]\nsha256 = "' + "0" * 64 + '"\nsend = [""]', "'send' must be a list"),
        (
            '[tokens.a]\nsha256 = "' + "0" * 64 + '"\n[tokens.b]\nsha256 = "' + "0" * 64 + '"',
            "the same token as [tokens.a]",
        ),
    ],
)
def test_a_file_that_says_something_else_is_refused_naming_what(text, says):
    with pytest.raises(TokenFileError, match=".*" + says.replace("[", r"\[").replace("]", r"\]")):
        parse(text)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("header", "shown"),
    [
        (None, None),
        (b"Bearer abc", (None, "abc")),
        (b"bearer   abc  ", (None, "abc")),
        (b"Bearer", None),
        (f"Basic {_b64('shipper:abc')}".encode(), ("shipper", "abc")),
        (f"Basic {_b64(':abc')}".encode(), (None, "abc")),
        (f"Basic {_b64('shipper:a:b')}".encode(), ("shipper", "a:b")),
        (f"Basic {_b64('shipper')}".encode(), None),
        (f"Basic {_b64('shipper:')}".encode(), None),
        (b"Basic !!!", None),
        (f"ApiKey {_b64('shipper:abc')}".encode(), ("shipper", "abc")),
        (b"Token abc", None),
        (b"Basic " + base64.b64encode(b"\xff:abc"), None),
    ],
)
def test_what_an_authorization_header_shows(header, shown):
    assert from_authorization(header) == shown


def test_only_loopback_interfaces_count_as_loopback():
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "10.0.0.5", "example.com", ""))


@pytest_twisted.ensureDeferred
async def test_changes_to_the_file_are_read_and_a_bad_one_keeps_the_tokens_before(tmp_path):
    path = tmp_path / "tokens.toml"
    first, second = tokens.new_token(), tokens.new_token()
    path.write_text(entry("a", first, read=["*"]))
    held = TokenFile(path, clock=Clock())
    assert held.check(first).name == "a"
    path.write_text(entry("a", first, read=["*"]) + entry("b", second, send=["x"]))
    await held.reread()
    assert held.check(second) == Principal("b", send=("x",), digest=tokens.digest(second))
    path.write_text("[tokens.a\n")  # a typo: the tokens before stay
    await held.reread()
    assert held.check(second) is not None
    revoked: list[set[str]] = []
    held.on_change.append(revoked.append)
    path.write_text(entry("a", tokens.new_token(), read=["*"]) + entry("b", second, send=["x"]))
    await held.reread()
    assert revoked == [{"a"}]  # another token under the name: its holders are cut off
    path.write_text(entry("b", second, send=["x", "y"]))
    await held.reread()
    assert revoked[-1] == {"a", "b"}  # removed, and other patterns
    os.remove(path)  # gone: no token is valid
    await held.reread()
    assert held.check(second) is None and held.principal("b") is None
    assert revoked[-1] == {"b"}


def test_a_file_that_cannot_be_read_at_start_stops_a_strict_reader_only(tmp_path):
    path = tmp_path / "tokens.toml"
    path.write_text("[tokens.a\n")
    with pytest.raises(TokenFileError, match="not valid TOML"):
        TokenFile(path, clock=Clock())
    lenient = TokenFile(path, clock=Clock(), strict=False)
    assert lenient.tokens.principals == {}


def test_a_request_without_a_site_is_nobody():
    from twisted.web.test.requesthelper import DummyRequest

    from estrom.http import principal_of

    nobody = principal_of(DummyRequest([b""]))
    assert not nobody.may_read("x") and not nobody.may_send("x")
    site = GuardedSite(None)
    request = DummyRequest([b""])
    assert site.authenticate(request) is ANONYMOUS  # no token file: everyone may do everything
