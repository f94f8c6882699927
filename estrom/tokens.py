"""Who may send and who may read: the token file (``ESTROM_TOKENS``), shared by Beater, Tailor
and the router's authenticator.

The file is TOML, one table per token; only each token's SHA-256 is kept, as a service keeps an
API key's (the token is 32 random bytes: a slow password hash would add nothing but cost per
request). ``estrom token add`` writes an entry and prints the token once::

    [tokens.logstash]
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    send = ["logs-*"]          # indexes it may send documents to (shell patterns)

    [tokens.alice]
    sha256 = "..."
    read = ["logs-*", "events"]   # indexes whose documents it may register queries on and tail

A client shows a token as ``Authorization: Bearer <token>``, as HTTP basic auth (user: the
token's name, password: the token), as an Elasticsearch API key (``ApiKey`` base64 of
``name:token``), or as the WAMP-Ticket of a router session. Without a token file every client
is anonymous and may do everything (``make up`` on 127.0.0.1).

The standard library and Twisted only: the router's worker imports this module from its own Python.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import secrets
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from twisted.internet import reactor, threads
from twisted.logger import Logger

from estrom.loops import Repeating

log = Logger()

# A TOML bare key (no ".": it would nest tables), so a name is the table's as written.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# Names the router gives principals of its own: a token by one of them would read as one.
RESERVED_NAMES = frozenset({"anonymous", "beater"})
_SHA256 = re.compile(r"[0-9a-f]{64}")
_KEYS = frozenset({"sha256", "send", "read"})
MAX_PATTERN_LENGTH = 255
# A token as an HTTP header or a WAMP-Ticket is at most this long: nothing longer is hashed.
MAX_TOKEN_LENGTH = 512


class TokenFileError(ValueError):
    """The token file cannot be read, or says something that is not a token."""


@dataclass(frozen=True)
class Principal:
    """Who a client is, and the index patterns it may send to and read."""

    name: str
    send: tuple[str, ...] = ()
    read: tuple[str, ...] = ()
    digest: str = ""  # the token's SHA-256: a token given again under the same name is another

    def may_send(self, index: str) -> bool:
        return _matches(index, self.send)

    def may_read(self, index: str) -> bool:
        return _matches(index, self.read)

    @property
    def reads_everything(self) -> bool:
        return "*" in self.read


ANONYMOUS = Principal("anonymous", send=("*",), read=("*",))


def _matches(index: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(index, pattern) for pattern in patterns)


def digest(token: str) -> str:
    """The hex SHA-256 of ``token``, as the token file keeps it."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    """A new token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Tokens:
    """The tokens of one reading of the file."""

    principals: dict[str, Principal] = field(default_factory=dict)  # by name
    _by_digest: dict[str, Principal] = field(default_factory=dict, repr=False)

    def check(self, token: str, name: str | None = None) -> Principal | None:
        """The principal whose token is ``token`` (and whose name is ``name``, if one is given),
        or None."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        # A lookup by the digest, not a comparison with each secret: what an attacker can time
        # is the digest of their own guess.
        principal = self._by_digest.get(digest(token))
        if principal is None or (name and name != principal.name):
            return None
        return principal


def parse(text: str, source: str = "the token file") -> Tokens:
    """The tokens in ``text``; TokenFileError naming the entry and key that is wrong."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TokenFileError(f"{source} is not valid TOML: {e}") from None
    unknown = set(document) - {"tokens"}
    if unknown:
        raise TokenFileError(f"{source}: unknown table {min(unknown)!r} (only [tokens.<name>])")
    entries = document.get("tokens", {})
    if not isinstance(entries, dict):
        raise TokenFileError(f"{source}: 'tokens' must be a table of [tokens.<name>] entries")
    principals, by_digest = {}, {}
    for name, entry in entries.items():
        where = f"{source}: [tokens.{name}]"
        try:
            check_name(name)
        except TokenFileError as e:
            raise TokenFileError(f"{source}: {e}") from None
        if not isinstance(entry, dict):
            raise TokenFileError(f"{where} must be a table")
        if set(entry) - _KEYS:
            raise TokenFileError(f"{where}: unknown key {min(set(entry) - _KEYS)!r}")
        hexdigest = entry.get("sha256")
        if not isinstance(hexdigest, str) or not _SHA256.fullmatch(hexdigest):
            raise TokenFileError(
                f"{where}: 'sha256' must be the 64 lower-case hex digits of the token's SHA-256"
            )
        if hexdigest in by_digest:
            raise TokenFileError(f"{where}: the same token as [tokens.{by_digest[hexdigest].name}]")
        principal = Principal(
            name, _patterns(entry, "send", where), _patterns(entry, "read", where), hexdigest
        )
        principals[name] = by_digest[hexdigest] = principal
    return Tokens(principals, by_digest)


def _patterns(entry: dict, key: str, where: str) -> tuple[str, ...]:
    patterns = entry.get(key, [])
    if not isinstance(patterns, list) or not all(
        isinstance(p, str) and 0 < len(p) <= MAX_PATTERN_LENGTH for p in patterns
    ):
        raise TokenFileError(f'{where}: {key!r} must be a list of index patterns such as ["logs-*"]')
    return tuple(patterns)


def load(path: str | os.PathLike) -> Tokens:
    """The tokens in the file at ``path`` (blocking: at start-up, or in a thread)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TokenFileError(f"cannot read the token file {str(path)!r}: {e}") from None
    return parse(text, str(path))


def signature(path: str | os.PathLike) -> tuple[int, int, int] | None:
    """What changes when the file is written (or replaced): its inode, size and mtime; None if
    it is not there."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_ino, status.st_size, status.st_mtime_ns)


def from_authorization(header: bytes | str | None) -> tuple[str | None, str] | None:
    """The (name or None, token) an HTTP ``Authorization`` header shows: ``Bearer <token>``,
    ``Basic`` base64(``name:token``) or ``ApiKey`` base64(``name:token``) (Elasticsearch's API key
    header). None if there is no header or it is none of these."""
    if header is None:
        return None
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    scheme, _, credentials = header.strip().partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme == "bearer":
        return (None, credentials) if credentials else None
    if scheme in ("basic", "apikey"):
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, colon, token = decoded.partition(":")
        return (name or None, token) if colon and token else None
    return None


def check_name(name: str) -> None:
    """TokenFileError unless ``name`` may name a token."""
    if not NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise TokenFileError(
            f"{name[:80]!r} cannot name a token: 1 to 64 letters, digits, '_' and '-' "
            f"(and not {' or '.join(sorted(RESERVED_NAMES))})"
        )


def entry(name: str, token: str, send: Iterable[str] = (), read: Iterable[str] = ()) -> str:
    """The token file's TOML for a new token (its digest, not the token)."""
    check_name(name)
    lines = [f"[tokens.{name}]", f'sha256 = "{digest(token)}"']
    for key, patterns in (("send", list(send)), ("read", list(read))):
        if patterns:
            # JSON's strings are TOML's basic strings.
            lines.append(f"{key} = [{', '.join(_quoted(p) for p in patterns)}]")
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    return json.dumps(text)


class TokenFile:
    """The token file at ``path``, read again whenever it changes (checked every ``interval``
    seconds, in a thread). ``tokens`` is the last good reading: a file that stops parsing is
    logged and the tokens before it stay (a typo does not lock everyone out, nor let everyone
    in); a file that is gone leaves no token valid. ``on_change`` callables get the names of
    tokens removed or changed (another token, other patterns), whose holders should be cut off.

    ``strict``: a file that cannot be read at start raises TokenFileError (Beater and Tailor
    stop); else no token is valid until it can be read (the router, which must keep running)."""

    def __init__(
        self, path: str | os.PathLike, interval: float = 2.0, clock: Any = reactor, strict: bool = True
    ):
        self.path = str(path)
        self._signature = signature(self.path)
        try:
            self.tokens = load(self.path)
        except TokenFileError as e:
            if strict:
                raise
            log.error("{error}: no token is valid until it can be read", error=str(e))
            self.tokens, self._signature = Tokens(), None
        self.on_change: list[Callable[[set[str]], Any]] = []
        # A round that fails (a thread pool gone, a bug) is logged and counted, and the file is
        # still read again at the next: a watcher that stopped would leave removed tokens valid.
        self.watcher = Repeating("token_file", self.reread, interval, clock)
        self.interval = interval

    def watch(self) -> None:
        self.watcher.start()

    def check(self, token: str, name: str | None = None) -> Principal | None:
        return self.tokens.check(token, name)

    def principal(self, name: str) -> Principal | None:
        return self.tokens.principals.get(name)

    async def reread(self) -> None:
        """Read the file again if it changed since it was read (watch() does, every interval)."""
        now = await threads.deferToThread(signature, self.path)
        if now == self._signature:
            return
        self._signature = now
        if now is None:
            log.error("the token file {path} is gone: no token is valid", path=self.path)
            self._replace(Tokens())
            return
        try:
            tokens = await threads.deferToThread(load, self.path)
        except TokenFileError as e:
            log.error("{error}; the tokens read before stay valid", error=str(e))
            return
        log.info("token file read again: {count} tokens", count=len(tokens.principals))
        self._replace(tokens)

    def _replace(self, tokens: Tokens) -> None:
        before, self.tokens = self.tokens.principals, tokens
        revoked = {name for name, held in before.items() if tokens.principals.get(name) != held}
        if revoked:
            log.info("tokens removed or changed: {names}", names=", ".join(sorted(revoked)))
            for call in self.on_change:
                call(revoked)
