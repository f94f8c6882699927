"""Answering as an Elasticsearch cluster where clients look.

The official clients 8 and 9 (Python, Go, JavaScript, Java), and the shippers built on them
(Filebeat 8, Elastic Agent, Logstash 8, the OpenTelemetry Collector's elasticsearch exporter),
refuse a server whose answers lack ``X-Elastic-Product: Elasticsearch``, and send versioned
media types: ``application/vnd.elasticsearch+json; compatible-with=8`` (``+x-ndjson`` for
``_bulk``). Beater reads those as JSON and NDJSON, answers in the type asked for, says at
``GET /`` the version ``ESTROM_COMPAT_VERSION`` names, and words ``_bulk`` answers as that
version does (7: each item has ``"_type": "_doc"``; 8 and later: none).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Self

from twisted.web.server import Request

PRODUCT_HEADER = b"X-Elastic-Product"
PRODUCT = b"Elasticsearch"
VERSIONS = (7, 8, 9)  # compatible-with values taken
_VENDOR = re.compile(r"application/vnd\.elasticsearch\+(json|x-ndjson)")
_COMPATIBLE = re.compile(r"compatible-with\s*=\s*\"?(\d{1,4})\b\"?", re.IGNORECASE)
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")
# Lucene shipped with each major the clients know (what GET / says; nothing reads more of it).
_LUCENE = {7: "8.11.3", 8: "9.12.0", 9: "10.1.0"}


class MediaTypeError(ValueError):
    """A versioned media type Beater does not take (a 400, as the engine answers)."""


class ElasticsearchVersion(str):
    """A version of Elasticsearch Beater can answer as: 7.x.y, 8.x.y or 9.x.y (ValueError else)."""

    def __new__(cls, value: str) -> Self:
        match = _VERSION.fullmatch(str(value).strip())
        if match is None or int(match.group(1)) not in VERSIONS:
            raise ValueError(value)
        return super().__new__(cls, match.group(0))


@dataclass(frozen=True)
class Compat:
    """The Elasticsearch version Beater answers as."""

    version: str = "8.17.0"

    def __post_init__(self) -> None:
        ElasticsearchVersion(self.version)

    @property
    def major(self) -> int:
        return int(self.version.split(".", 1)[0])

    def info(self) -> dict[str, Any]:
        """``GET /``, as that version answers it."""
        major = self.major
        return {
            "name": "estrom",
            "cluster_name": "estrom",
            "cluster_uuid": "estrom-estrom-estrom-estrom",
            "version": {
                "number": self.version,
                # 7.10.2 and earlier: what OpenSearch says in its compatibility mode
                "build_flavor": "default" if major >= 8 else "oss",
                "build_type": "estrom",
                "build_hash": "estrom",
                "build_date": "2026-01-01T00:00:00.000Z",
                "build_snapshot": False,
                "lucene_version": _LUCENE[major],
                "minimum_wire_compatibility_version": f"{major - 1}.17.0" if major >= 8 else "6.8.0",
                "minimum_index_compatibility_version": f"{major - 1}.0.0" if major >= 8 else "6.0.0-beta1",
            },
            "tagline": "You Know, for Search",
        }

    def bulk_item(self, answer: dict[str, Any]) -> dict[str, Any]:
        """A ``_bulk`` answer's item as this version words it."""
        if self.major == 7:
            return {"_index": answer["_index"], "_type": "_doc", **answer}
        return answer


def plain_type(kind: str, params: str) -> str:
    """The media type ``kind`` (its parameters ``params``) stands for: a versioned Elasticsearch
    type is its plain JSON or NDJSON; MediaTypeError for a version Beater does not take."""
    match = _VENDOR.fullmatch(kind)
    if match is None:
        return kind
    compatible = _COMPATIBLE.search(params)
    if compatible is not None and int(compatible.group(1)) not in VERSIONS:
        raise MediaTypeError(
            f"Content-Type '{kind}' with compatible-with={compatible.group(1)}: "
            f"this server takes compatible-with {', '.join(map(str, VERSIONS))}"
        )
    return "application/json" if match.group(1) == "json" else "application/x-ndjson"


def answer_type(request: Request) -> bytes | None:
    """The versioned JSON type a request's Accept asks for (the answer is given in it), or None."""
    accept = (request.getHeader(b"accept") or b"").decode("latin-1")
    for entry in accept.split(","):
        kind, _, params = entry.partition(";")
        if kind.strip().lower() == "application/vnd.elasticsearch+json":
            compatible = _COMPATIBLE.search(params)
            if compatible is not None and int(compatible.group(1)) in VERSIONS:
                return f"application/vnd.elasticsearch+json; compatible-with={compatible.group(1)}".encode()
            return b"application/vnd.elasticsearch+json"
    return None
