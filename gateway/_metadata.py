"""HTTP headers forwarded to the RPC as gRPC metadata."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Trace context and credentials pass through as they are; anything else only
# when the client asks with grpc-gateway's ``Grpc-Metadata-<key>`` prefix.
PASS_THROUGH_HEADERS = frozenset(
    {"authorization", "traceparent", "tracestate", "baggage", "x-request-id"}
)
_PREFIX = "grpc-metadata-"
_VALID_KEY = re.compile(r"[0-9a-z_.-]+")


def forwarded_metadata(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The gRPC metadata for a request's headers (names lower case)."""
    out: list[tuple[str, str]] = []
    for name, value in headers:
        key = name.lower()
        if key.startswith(_PREFIX):
            key = key[len(_PREFIX) :]
        elif key not in PASS_THROUGH_HEADERS:
            continue
        # grpc rejects reserved, binary and malformed keys and non-ASCII values.
        if (
            not _VALID_KEY.fullmatch(key)
            or key.startswith("grpc-")
            or key.endswith("-bin")
            or not value.isascii()
        ):
            continue
        out.append((key, value))
    return out


__all__ = ["PASS_THROUGH_HEADERS", "forwarded_metadata"]
