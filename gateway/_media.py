"""Which requests may change state: only those that declare a JSON body.

A browser sends a "simple" cross-origin request (``text/plain``, a form,
``multipart/form-data``, or a POST with no ``Content-Type`` at all) without
asking the server first, so the CORS allowlist never gets a say. Requiring
``application/json`` on every state-changing method makes each of them need
the preflight that only allowlisted origins pass.
"""

from __future__ import annotations

from starlette.datastructures import Headers

from meshwright.gateway.errors import UnsupportedMediaType

JSON = "application/json"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that never change state; they carry no body the gateway reads."""
# A browser sends these cross-origin without a preflight (the Fetch standard's
# CORS-safelisted methods, minus the safe ones): they need a JSON body even when
# empty. Other methods (PUT, PATCH, DELETE, ...) are always preflighted, so one
# without a body (a DELETE of a path) needs no Content-Type.
_SIMPLE_UNSAFE_METHODS = frozenset({"POST"})
_UTF8 = frozenset({"utf-8", "utf8"})


def require_json(method: str, headers: Headers) -> None:
    """Raise ``UnsupportedMediaType`` unless ``method`` is safe or its body is declared JSON.

    JSON is UTF-8 (RFC 8259), so a ``charset`` parameter other than UTF-8 is
    refused too; other parameters are ignored.
    """
    method = method.upper()
    if method in SAFE_METHODS:
        return
    declared = headers.getlist("content-type")
    if not declared:
        if method not in _SIMPLE_UNSAFE_METHODS and not _has_body(headers):
            return
        raise UnsupportedMediaType(
            f"{method} needs Content-Type: {JSON}", metadata={"content_type": ""}
        )
    if len(declared) > 1:
        raise UnsupportedMediaType(
            f"one Content-Type please, got {len(declared)}", metadata={"content_type": "(many)"}
        )
    media, _, params = declared[0].partition(";")
    if media.strip().lower() != JSON or not _charset_ok(params):
        raise UnsupportedMediaType(
            f"the request body must be {JSON} (UTF-8), not {declared[0][:100]!r}",
            metadata={"content_type": declared[0][:200]},
        )


def _charset_ok(params: str) -> bool:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in _UTF8:
            return False
    return True


def _has_body(headers: Headers) -> bool:
    if "transfer-encoding" in headers:
        return True
    length = headers.get("content-length")
    return length is not None and length.strip() != "0"


__all__ = ["JSON", "SAFE_METHODS", "require_json"]
