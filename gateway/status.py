"""The one table from gRPC status codes to HTTP, and google.rpc.Status bodies."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import grpc
from google.protobuf import json_format, message
from starlette.responses import JSONResponse

from meshwright.mesh.errors import MeshError, grpc_code, to_status_proto

# As grpc-gateway's runtime/errors.go HTTPStatusFromCode.
HTTP_STATUS: Mapping[grpc.StatusCode, int] = MappingProxyType(
    {
        grpc.StatusCode.OK: 200,
        grpc.StatusCode.CANCELLED: 499,
        grpc.StatusCode.UNKNOWN: 500,
        grpc.StatusCode.INVALID_ARGUMENT: 400,
        grpc.StatusCode.DEADLINE_EXCEEDED: 504,
        grpc.StatusCode.NOT_FOUND: 404,
        grpc.StatusCode.ALREADY_EXISTS: 409,
        grpc.StatusCode.PERMISSION_DENIED: 403,
        grpc.StatusCode.UNAUTHENTICATED: 401,
        grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
        grpc.StatusCode.FAILED_PRECONDITION: 400,
        grpc.StatusCode.ABORTED: 409,
        grpc.StatusCode.OUT_OF_RANGE: 400,
        grpc.StatusCode.UNIMPLEMENTED: 501,
        grpc.StatusCode.INTERNAL: 500,
        grpc.StatusCode.UNAVAILABLE: 503,
        grpc.StatusCode.DATA_LOSS: 500,
    }
)


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status for a gRPC status code (500 for anything unlisted)."""
    return HTTP_STATUS.get(code, 500)


def message_json(msg: message.Message) -> dict[str, Any]:
    """A message as the gateway writes it: JSON names, unset fields included."""
    return json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)


def status_json(err: MeshError) -> dict[str, Any]:
    """The ``google.rpc.Status`` of ``err`` as JSON, details with ``@type``."""
    return message_json(to_status_proto(err))


NO_STORE = "no-store"
"""``Cache-Control`` of every RPC answer: they hold account data, tokens decide who sees it."""


def retry_after(seconds: float | None) -> str | None:
    """The ``Retry-After`` value for a retry delay: whole seconds rounded up, at least 1.

    HTTP only has whole seconds; rounding down would invite a retry that is
    refused again. None when there is no (finite) delay.
    """
    if seconds is None or not math.isfinite(seconds):
        return None
    return str(max(1, math.ceil(seconds)))


def error_response(
    err: MeshError,
    *,
    status_code: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSON response carrying ``err``'s Status, with the table's HTTP status.

    An error with a retry delay (a rate limit's RetryInfo) carries it as
    ``Retry-After`` too, for HTTP clients that do not read Status details.
    """
    code = http_status(grpc_code(err)) if status_code is None else status_code
    out = {"Cache-Control": NO_STORE}
    delay = retry_after(err.retry_after_s)
    if delay is not None:
        out["Retry-After"] = delay
    out.update(headers or {})
    return JSONResponse(status_json(err), status_code=code, headers=out)


__all__ = [
    "HTTP_STATUS",
    "NO_STORE",
    "error_response",
    "http_status",
    "message_json",
    "retry_after",
    "status_json",
]
