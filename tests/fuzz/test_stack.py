"""A sample of the generated queries and ingest bodies against the real Tailor and Beater:
every answer is a 2xx or a 4xx with a JSON error, and the parts stay up."""

from __future__ import annotations

import json
import os
import socket
import urllib.parse

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz.strategies import content_types, ingest_bodies, queries

EXAMPLES = int(os.environ.get("ESTROM_FUZZ_STACK_EXAMPLES", "60"))


def sample(strategy: st.SearchStrategy, count: int = EXAMPLES) -> list:
    """``count`` values of ``strategy``, the same on every run unless ESTROM_FUZZ_RANDOM=1.

    Collected by a Hypothesis test of its own, so that the stack tests stay plain tests.
    """
    found = []

    @settings(
        max_examples=count,
        derandomize=os.environ.get("ESTROM_FUZZ_RANDOM") != "1",
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    @given(strategy)
    def collect(value) -> None:
        found.append(value)

    collect()
    return found


def exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """Send one raw HTTP request; the status and what came back within the first read(s).

    Raw sockets, so that a 200 stream (which never ends) is read only as far as its head.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        connection.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or (b" 200 " not in data.split(b"\r\n")[0] and not _complete(data)):
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        return body.endswith(b"0\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def _error_body(body: bytes) -> dict:
    text = body
    if body[:1] not in (b"{", b"["):  # chunked: one chunk of JSON
        text = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
    return json.loads(text)


def test_generated_queries_get_2xx_or_a_json_4xx_from_tailor(stack):
    for query in sample(queries):
        q = query if isinstance(query, str) else json.dumps(query)
        params = urllib.parse.urlencode({"i": "t-fuzz", "q": q.encode("utf-8", "surrogatepass")})
        request = f"GET /api/v0.1/docs?{params} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        status, body = exchange(stack.ports.tailor, request.encode())
        assert status == 200 or (400 <= status < 500 and "error" in _error_body(body)), (query, status, body)


def test_generated_bodies_get_2xx_or_a_json_4xx_from_beater(stack):
    for body, content_type in sample(st.tuples(ingest_bodies, content_types)):
        head = (
            f"POST /api/v0.1/docs/t-fuzz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        status, answer = exchange(stack.ports.beater, head.encode() + body)
        assert status == 200 or (400 <= status < 500 and "error" in _error_body(answer)), (
            body,
            status,
            answer,
        )
