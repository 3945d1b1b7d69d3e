"""Errors the gateway raises itself, below the mesh's one exception root."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from meshwright.mesh.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unimplemented,
)


class RouteNotFound(NotFound):
    """No derived route has a template matching the request path."""

    reason = "ROUTE_NOT_FOUND"


class MethodNotAllowed(Unimplemented):
    """The path matches a route, but not with the request's HTTP method.

    Its status code is UNIMPLEMENTED (as in grpc-gateway); the gateway answers
    HTTP 405 with an ``Allow`` header instead of the table's 501.
    """

    reason = "METHOD_NOT_ALLOWED"

    def __init__(
        self,
        message: str,
        *,
        allowed: Sequence[str] = (),
        reason: str | None = None,
        violations: Sequence[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        meta = dict(metadata or {})
        if allowed:
            meta["allowed_methods"] = ", ".join(allowed)
        super().__init__(message, reason=reason, violations=violations, metadata=meta)
        self.allowed = tuple(allowed)


class BodyTooLarge(ResourceExhausted):
    """The request body is larger than the gateway accepts (answered as HTTP 413)."""

    reason = "REQUEST_TOO_LARGE"


class UnsupportedMediaType(InvalidArgument):
    """A state-changing request whose body is not declared ``application/json`` (HTTP 415).

    Browsers send ``text/plain``, form and multipart bodies cross-origin without
    a CORS preflight; refusing every other media type means no page on another
    origin can change state through the gateway without the preflight the CORS
    allowlist answers.
    """

    reason = "UNSUPPORTED_MEDIA_TYPE"


__all__ = ["BodyTooLarge", "MethodNotAllowed", "RouteNotFound", "UnsupportedMediaType"]
