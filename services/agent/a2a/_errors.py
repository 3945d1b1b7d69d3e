"""Our errors as A2A answers: one table, never an HTTP 500.

Authentication and authorization failures are HTTP statuses (A2A §4.4: the transport's
401/403), as are "try later" conditions (429, 503, 504, with ``Retry-After`` when the
mesh says when); everything else is the A2A JSON-RPC error closest to our code, with our
``reason`` (and the message) in the error's ``ErrorInfo`` metadata.
"""

from __future__ import annotations

from typing import Any

from a2a.utils.errors import (
    A2AError,
    InternalError,
    InvalidParamsError,
    InvalidRequestError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from starlette.exceptions import HTTPException

from meshwright.mesh.errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    MeshError,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

HTTP_STATUS: dict[type[MeshError], int] = {
    Unauthenticated: 401,
    PermissionDenied: 403,
    ResourceExhausted: 429,
    Unavailable: 503,
    DeadlineExceeded: 504,
}
"""Errors answered with an HTTP status instead of a JSON-RPC error (subclasses included)."""

A2A_ERRORS: dict[type[MeshError], type[A2AError]] = {
    InvalidArgument: InvalidParamsError,
    OutOfRange: InvalidParamsError,
    AlreadyExists: InvalidRequestError,
    FailedPrecondition: UnsupportedOperationError,
    Unimplemented: UnsupportedOperationError,
    Cancelled: InvalidRequestError,
}
"""The A2A error of every other class (looked up along the MRO; InternalError if none)."""

SKILL_REASONS: frozenset[str] = frozenset({"SKILL_NOT_FOUND", "SKILL_NOT_OFFERED"})
"""NOT_FOUND reasons that name a skill: the request's parameter is wrong (invalid params)."""


class A2AHttpError(HTTPException):
    """An A2A call refused at the HTTP level; the app answers it as a JSON-RPC error body
    with this status (see ``http_error_response``)."""

    def __init__(self, status_code: int, error: MeshError) -> None:
        headers = {}
        if status_code == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="meshwright"'
        if error.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, round(error.retry_after_s)))
        super().__init__(status_code, detail=error.message, headers=headers)
        self.error = error


def _lookup(table: dict[type[MeshError], Any], err: MeshError) -> Any:
    for cls in type(err).__mro__:
        if cls in table:
            return table[cls]
    return None


def a2a_error(err: MeshError) -> Exception:
    """What to raise into a2a-sdk for ``err``: an ``A2AError``, or an ``A2AHttpError``."""
    status = _lookup(HTTP_STATUS, err)
    if status is not None:
        return A2AHttpError(status, err)
    data = {"reason": err.reason, **{k: str(v) for k, v in err.metadata.items()}}
    if err.violations:
        data["violations"] = "; ".join(f"{v.field}: {v.description}" for v in err.violations)
    if isinstance(err, NotFound):
        cls: type[A2AError] = (
            InvalidParamsError if err.reason in SKILL_REASONS else TaskNotFoundError
        )
    else:
        cls = _lookup(A2A_ERRORS, err) or InternalError
    return cls(message=err.message, data=data)


def cancel_error(err: MeshError) -> Exception:
    """The answer to a ``tasks/cancel`` the agent refused: a task no longer running there
    cannot be canceled (A2A's TaskNotCancelable), the rest as for any call."""
    if isinstance(err, NotFound):
        return TaskNotCancelableError(message=err.message, data={"reason": err.reason})
    return a2a_error(err)


__all__ = ["A2A_ERRORS", "HTTP_STATUS", "A2AHttpError", "a2a_error", "cancel_error"]
