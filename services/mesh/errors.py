"""One exception root for the mesh and the one table that maps it to gRPC.

Domain code raises ``MeshError`` subclasses and knows nothing of gRPC. The
server side turns them into a ``google.rpc.Status`` with an ``ErrorInfo``
(reason in UPPER_SNAKE_CASE) and, for bad input, a ``BadRequest`` with one
field violation per problem. The client side turns the status back into the
same exception class, so a caller sees the same errors whether it calls a
service in-process or over the network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "meshwright.dev"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One problem with one request field."""

    field: str
    """Path of the field, e.g. ``definition.tasks[2].depends_on[0]``."""
    description: str
    """What is wrong with it."""


class MeshError(Exception):
    """Root of every error the mesh raises on purpose."""

    reason: str = "INTERNAL"
    _by_reason: ClassVar[dict[str, type[MeshError]]] = {}

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        violations: Sequence[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or type(self).reason
        self.violations = tuple(violations)
        self.metadata = dict(metadata or {})
        self.retry_after_s = retry_after_s
        """When set, the caller may retry after this many seconds (``google.rpc.RetryInfo``)."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # Classes with their own reason are what the client side rebuilds:
        # THE table of reasons. A reason claimed twice is a bug caught at import.
        if "reason" in cls.__dict__:
            owner = MeshError._by_reason.get(cls.reason)
            # Only the same class created again (a module reloaded) may take its
            # reason back; a class of the same name in another module may not.
            if owner is not None and (owner.__module__, owner.__qualname__) != (
                cls.__module__,
                cls.__qualname__,
            ):
                raise TypeError(
                    f"error reason {cls.reason!r} of {cls.__module__}.{cls.__qualname__} is "
                    f"already claimed by {owner.__module__}.{owner.__qualname__}"
                )
            MeshError._by_reason[cls.reason] = cls

    @staticmethod
    def reasons() -> dict[str, type[MeshError]]:
        """Every registered reason and its class (a copy)."""
        return dict(MeshError._by_reason)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"


class InvalidArgument(MeshError):
    """The request is malformed; ``violations`` says which fields."""

    reason = "INVALID_ARGUMENT"

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        """An error about one field."""
        return cls(f"{field}: {description}", violations=[FieldViolation(field, description)])


class NotFound(MeshError):
    """The named resource does not exist."""

    reason = "NOT_FOUND"


class AlreadyExists(MeshError):
    """A resource with that id exists already."""

    reason = "ALREADY_EXISTS"


class FailedPrecondition(MeshError):
    """The system is not in a state where the request can be applied."""

    reason = "FAILED_PRECONDITION"


class ResourceExhausted(MeshError):
    """A quota or capacity is used up."""

    reason = "RESOURCE_EXHAUSTED"


class PermissionDenied(MeshError):
    """The caller may not do this."""

    reason = "PERMISSION_DENIED"


class Unauthenticated(MeshError):
    """The caller is not known."""

    reason = "UNAUTHENTICATED"


class Unavailable(MeshError):
    """A dependency cannot be reached; retrying may help."""

    reason = "UNAVAILABLE"


class DeadlineExceeded(MeshError):
    """The deadline passed before the work finished."""

    reason = "DEADLINE_EXCEEDED"


class Cancelled(MeshError):
    """The caller cancelled."""

    reason = "CANCELLED"


class Aborted(MeshError):
    """A concurrent change conflicted; retry the whole operation."""

    reason = "ABORTED"


class OutOfRange(MeshError):
    """A position (a revision, an offset) outside what is kept; start again from a fresh read."""

    reason = "OUT_OF_RANGE"


class Unimplemented(MeshError):
    """The operation is not supported."""

    reason = "UNIMPLEMENTED"


class Internal(MeshError):
    """A bug or an unexpected state."""

    reason = "INTERNAL"


# THE table: error class -> gRPC status code. Subclasses inherit their
# parent's row (looked up along the MRO).
GRPC_CODES: dict[type[MeshError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    Cancelled: grpc.StatusCode.CANCELLED,
    Aborted: grpc.StatusCode.ABORTED,
    OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    Internal: grpc.StatusCode.INTERNAL,
    MeshError: grpc.StatusCode.INTERNAL,
}
_CLASS_BY_CODE: dict[grpc.StatusCode, type[MeshError]] = {
    code: cls for cls, code in GRPC_CODES.items() if cls is not MeshError
}
_CODE_BY_NUMBER: dict[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}


def grpc_code(err: MeshError) -> grpc.StatusCode:
    """The gRPC status code of an error, from the one table."""
    return grpc_code_of_class(type(err))


MAX_VIOLATIONS = 20
"""Field violations sent with one error at most; when some are left out (the limit,
or the byte budget below) ``violation_count`` in ErrorInfo gives the total."""
TRAILER_BUDGET = 7168
"""Bytes the serialized status and ``grpc-message`` (the message again, percent-encoded)
may take together. gRPC clients refuse trailing metadata above 8 KiB (at random between
the soft and the hard limit); the rest is headroom for header names and accounting."""
_MAX_TEXT = 150
_MAX_MESSAGE = 512
_MAX_KEY = 64
_MAX_VALUE = 256
_MAX_METADATA = 8
_MAX_RETRY_S = 86_400.0


def _clip(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` UTF-8 bytes, cut on a character boundary."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "..."


def _wire_len(text: str) -> int:
    # grpc-message is percent-encoded: a byte outside printable ASCII (or '%') takes 3.
    return sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in text.encode())


def to_status_proto(err: MeshError) -> status_pb2.Status:
    """The ``google.rpc.Status`` for an error, with ErrorInfo, BadRequest and RetryInfo.

    Bounded whatever the error holds, so the trailers always fit in what gRPC
    clients accept: texts are clipped, and violations are sent in order while
    the status stays within ``TRAILER_BUDGET`` (at most ``MAX_VIOLATIONS``).
    """
    message = _clip(err.message, _MAX_MESSAGE)
    metadata = {
        _clip(k, _MAX_KEY): _clip(v, _MAX_VALUE)
        for k, v in list(err.metadata.items())[:_MAX_METADATA]
    }
    violations = [
        error_details_pb2.BadRequest.FieldViolation(
            field=_clip(v.field, _MAX_TEXT), description=_clip(v.description, _MAX_TEXT)
        )
        for v in err.violations[:MAX_VIOLATIONS]
    ]
    budget = TRAILER_BUDGET - _wire_len(message)
    while True:
        status = _status(err, message, metadata, violations)
        # Without violations the status is a few KiB at most: the loop always ends.
        if status.ByteSize() <= budget or not violations:
            return status
        violations.pop()


def _status(
    err: MeshError,
    message: str,
    metadata: dict[str, str],
    violations: list[error_details_pb2.BadRequest.FieldViolation],
) -> status_pb2.Status:
    status = status_pb2.Status(code=grpc_code(err).value[0], message=message)
    if len(violations) < len(err.violations):
        metadata = {**metadata, "violation_count": str(len(err.violations))}
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(
            reason=_clip(err.reason, _MAX_KEY), domain=ERROR_DOMAIN, metadata=metadata
        )
    )
    status.details.append(info)
    if violations:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.BadRequest(field_violations=violations))
        status.details.append(detail)
    if err.retry_after_s is not None:
        retry = error_details_pb2.RetryInfo()
        delay = min(max(0.0, err.retry_after_s), _MAX_RETRY_S)  # NaN -> 0
        retry.retry_delay.FromNanoseconds(int(delay * 1e9))
        detail = any_pb2.Any()
        detail.Pack(retry)
        status.details.append(detail)
    return status


def to_grpc_status(err: MeshError) -> grpc.Status:
    """The status to abort an RPC with (``context.abort_with_status``)."""
    return rpc_status.to_status(to_status_proto(err))


def from_status_proto(status: status_pb2.Status) -> MeshError:
    """Rebuild the typed error a ``google.rpc.Status`` describes."""
    reason = ""
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    retry_after_s: float | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
            metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after_s = retry.retry_delay.ToNanoseconds() / 1e9
    code = _CODE_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
    cls = MeshError._by_reason.get(reason)
    if cls is None or grpc_code_of_class(cls) != code:
        cls = _CLASS_BY_CODE.get(code, Internal)
    return cls(
        status.message,
        reason=reason or None,
        violations=violations,
        metadata=metadata,
        retry_after_s=retry_after_s,
    )


def grpc_code_of_class(cls: type[MeshError]) -> grpc.StatusCode:
    """The table's code for an error class."""
    for base in cls.__mro__:
        code = GRPC_CODES.get(base)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def from_rpc_error(err: grpc.RpcError) -> MeshError:
    """Turn a failed call into the typed error it carries.

    Calls that failed without a rich status (for example a peer that is down)
    become the class of their status code, with the code's name as reason.
    """
    try:
        status = rpc_status.from_call(err)
    except ValueError:
        # The details trailer names another code than the call ended with: a hop
        # replaced the status (a proxy, or the transport refusing the trailers).
        # The call's own code is what happened.
        status = None
    if status is not None:
        return from_status_proto(status)
    code = err.code()
    details = err.details() or code.name
    cls = _CLASS_BY_CODE.get(code, Internal)
    return cls(details, reason=code.name)


__all__ = [
    "ERROR_DOMAIN",
    "GRPC_CODES",
    "Aborted",
    "OutOfRange",
    "AlreadyExists",
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "MeshError",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "from_rpc_error",
    "from_status_proto",
    "grpc_code",
    "to_grpc_status",
    "to_status_proto",
]
