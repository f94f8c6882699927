"""Typed settings for each service, from command-line flags and ``ESTROM_*`` variables.

A service declares a dataclass whose fields carry ``setting(default, help)``: the variable that
sets one is ``ESTROM_`` and its name in capitals (``max_body_bytes``: ``ESTROM_MAX_BODY_BYTES``),
unless ``env`` names another; ``load`` fills it (flag over environment over default) and
``describe`` prints it with secrets masked. What
every service has is ServiceSettings's; each adds its ``host``, ``port`` and ``max_connections``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from estrom.http import LOOPBACK_HOSTS

T = TypeVar("T")


def setting(default: Any, help: str, secret: bool = False, env: str | None = None) -> Any:
    """A settings field: its default, its help, whether its value is a secret, and the variable
    that overrides it if not the one its name makes (see ``env_of``)."""
    return dataclasses.field(default=default, metadata={"env": env, "help": help, "secret": secret})


def env_of(field: dataclasses.Field) -> str:
    """The ``ESTROM_*`` variable that sets a settings field."""
    return field.metadata["env"] or "ESTROM_" + field.name.upper()


def load(cls: type[T], argv: Sequence[str] | None = None, prog: str | None = None) -> T:
    """Parse ``argv`` (default: the process's) into ``cls``, environment variables as defaults."""
    parser = argparse.ArgumentParser(prog=prog, description=cls.__doc__)
    for field in dataclasses.fields(cls):
        env = env_of(field)
        kind = type(field.default)
        if kind is bool:
            kind = _boolean
        flag = "--" + field.name.replace("_", "-")
        # A value from the environment stays a string: argparse converts it only when the flag
        # is not given, after --help had its chance (a bad variable must not hide the help).
        default = os.environ.get(env, field.default)
        parser.add_argument(
            flag,
            dest=field.name,
            type=_converter(kind, f"{flag} or ${env}"),
            default=default,
            # argparse formats help with %: "7 % of" would break --help.
            help=f"{field.metadata['help'].replace('%', '%%')} (${env}, default: %(default)s)"
            if not field.metadata["secret"]
            else f"{field.metadata['help'].replace('%', '%%')} (${env})",
        )
    return cls(**vars(parser.parse_args(argv)))


def _converter(kind: Any, source: str) -> Any:
    """``kind`` as argparse's ``type``, its error naming where the value came from."""

    def convert(value: Any) -> Any:
        try:
            return kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{str(value)[:100]!r} is not a valid {kind.__name__} ({source})"
            ) from None

    convert.__name__ = kind.__name__
    return convert


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


_boolean.__name__ = "boolean (true/false)"


def describe(settings: Any) -> str:
    """One line per setting, secrets masked, for the start-up log."""
    lines = []
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if field.metadata["secret"]:
            value = "***" if value else "(not set)"
        lines.append(f"  {env_of(field):<28} {value}")
    return "\n".join(lines)


@dataclass(frozen=True)
class ServiceSettings:
    """The settings of every service: how it reaches the router, who may use it, its logs."""

    router_url: str = setting(
        "rs://127.0.0.1:8080",
        "WAMP router URL: rs://host:port (RawSocket, the router's cheapest) or ws://host:port/ws",
    )
    router_heartbeat_seconds: float = setting(
        10.0, "how often Beater and Tailor check that the router answers (silent twice that: reconnect)"
    )
    realm: str = setting("estrom", "WAMP realm")
    tokens: str = setting(
        "",
        "the token file (see docs/team.md); unset: anyone may send and read, "
        "and the service listens only on loopback",
    )
    allowed_hosts: str = setting(
        LOOPBACK_HOSTS,
        "comma-separated host names a request's Host header may name (* for any); others get 421",
    )
    request_deadline_seconds: float = setting(
        30.0, "seconds a client has to send a whole request, head and body; past it 408 and closed"
    )
    listen_backlog: int = setting(
        4096,
        "connections the kernel queues before they are accepted (bounded by net.core.somaxconn); "
        "past it, connecting clients wait seconds to retry",
    )
    access_log: bool = setting(
        False, "log a line per HTTP request (it costs about 7 % of Beater's time per one-document request)"
    )
    log_format: str = setting("text", "log lines as 'text', or 'json' (one object per line)")
