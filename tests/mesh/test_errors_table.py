"""The one table of error reasons and codes, and the bounded google.rpc.Status it produces.

A reason claimed twice fails when the second class is created; the status an
error becomes always fits in the trailing metadata gRPC clients accept, over a
real socket too, and comes back as the same class.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import MeshServer, RemoteServiceClient
from meshwright.mesh.auth import TokenExpired, TokenMissing
from meshwright.mesh.errors import (
    ERROR_DOMAIN,
    GRPC_CODES,
    Aborted,
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    MeshError,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    from_rpc_error,
    from_status_proto,
    grpc_code,
    grpc_code_of_class,
    to_grpc_status,
    to_status_proto,
)
from meshwright.mesh.limits import RateLimited
from meshwright.mesh.policy import NotOwner
from meshwright.mesh.security import insecure_pipeline
from meshwright.mesh.server import RequestUndecodable

SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
Code = grpc.StatusCode

TRAILER_LIMIT = 8192
"""gRPC clients start refusing trailing metadata above this many bytes (soft limit)."""
STATUS_TRAILERS = ("grpc-status", "grpc-message", "grpc-status-details-bin")
TRAILER_OVERHEAD = sum(32 + len(k) for k in STATUS_TRAILERS)
"""What the three status trailers cost besides their values (HPACK counts 32 bytes each)."""


def details(status: status_pb2.Status) -> dict[str, Any]:
    """The unpacked details of a status, by type name."""
    out: dict[str, Any] = {}
    for d in status.details:
        for cls in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
        ):
            if d.Is(cls.DESCRIPTOR):
                msg = cls()
                d.Unpack(msg)
                out[cls.DESCRIPTOR.name] = msg
    return out


def wire_len(text: str) -> int:
    """Length of grpc-message as sent: percent-encoded outside printable ASCII."""
    return sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in text.encode())


def trailer_bytes(status: status_pb2.Status) -> int:
    return len(status.SerializeToString()) + wire_len(status.message) + TRAILER_OVERHEAD + 1


# -- the table of reasons ---------------------------------------------------------------


def test_a_second_class_claiming_a_reason_fails_at_class_creation() -> None:
    with pytest.raises(TypeError, match="'TOKEN_MISSING' .* already claimed by .*TokenMissing"):

        class Duplicate(Unauthenticated):
            reason = "TOKEN_MISSING"

    assert MeshError.reasons()["TOKEN_MISSING"] is TokenMissing  # the table is unchanged


def test_a_class_of_the_same_name_in_another_module_cannot_claim_a_reason() -> None:
    """Names are not identities: ``NotOwner`` here is not ``meshwright.mesh.policy.NotOwner``."""
    with pytest.raises(TypeError, match="already claimed"):
        # A top-level class of another module: the same __qualname__ as policy.NotOwner.
        type(
            "NotOwner",
            (PermissionDenied,),
            {"reason": "NOT_OWNER", "__qualname__": "NotOwner", "__module__": "elsewhere"},
        )

    assert MeshError.reasons()["NOT_OWNER"].__module__ == "meshwright.mesh.policy"


def _define_twice() -> type[MeshError]:
    class Redefined(NotFound):
        reason = "TEST_ERRORS_TABLE_REDEFINED"

    return Redefined


def test_the_same_class_defined_again_replaces_itself() -> None:
    """A module imported again (a reload) re-creates its classes; that is no duplicate."""
    first, second = _define_twice(), _define_twice()
    assert first is not second
    assert MeshError.reasons()["TEST_ERRORS_TABLE_REDEFINED"] is second


def test_a_subclass_without_its_own_reason_inherits_and_claims_nothing() -> None:
    before = MeshError.reasons()

    class MoreSpecific(TokenMissing):
        pass

    assert MoreSpecific("x").reason == "TOKEN_MISSING"
    assert MeshError.reasons() == before


def _all_subclasses(cls: type[MeshError]) -> list[type[MeshError]]:
    out: list[type[MeshError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def test_reasons_holds_every_reason_of_every_class() -> None:
    for module in ("meshwright.node", "meshwright.gateway"):
        importlib.import_module(module)  # every domain registers its reasons on import
    table = MeshError.reasons()
    # Classes a module defines at its top level (a class refused at creation may
    # linger among __subclasses__ until collected).
    claimed = [
        c
        for c in _all_subclasses(MeshError)
        if "reason" in c.__dict__
        and getattr(sys.modules.get(c.__module__), c.__qualname__, None) is c
    ]
    assert len(claimed) > 30
    for cls in claimed:
        assert table[cls.reason] is cls
    for reason in ("TOKEN_EXPIRED", "RATE_LIMITED", "NOT_OWNER", "REQUEST_UNDECODABLE"):
        assert reason in table
    table.clear()  # a copy: the real table is untouched
    assert MeshError.reasons()


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (InvalidArgument, Code.INVALID_ARGUMENT),
        (NotFound, Code.NOT_FOUND),
        (AlreadyExists, Code.ALREADY_EXISTS),
        (FailedPrecondition, Code.FAILED_PRECONDITION),
        (ResourceExhausted, Code.RESOURCE_EXHAUSTED),
        (PermissionDenied, Code.PERMISSION_DENIED),
        (Unauthenticated, Code.UNAUTHENTICATED),
        (Unavailable, Code.UNAVAILABLE),
        (DeadlineExceeded, Code.DEADLINE_EXCEEDED),
        (Cancelled, Code.CANCELLED),
        (Aborted, Code.ABORTED),
        (OutOfRange, Code.OUT_OF_RANGE),
        (Unimplemented, Code.UNIMPLEMENTED),
        (Internal, Code.INTERNAL),
        (MeshError, Code.INTERNAL),
        # Subclasses take their parent's row.
        (TokenExpired, Code.UNAUTHENTICATED),
        (RateLimited, Code.RESOURCE_EXHAUSTED),
        (NotOwner, Code.PERMISSION_DENIED),
        (RequestUndecodable, Code.INVALID_ARGUMENT),
    ],
)
def test_the_code_table(cls: type[MeshError], code: Code) -> None:
    assert grpc_code_of_class(cls) == code
    assert grpc_code(cls("x")) == code


def test_every_code_class_is_in_the_table() -> None:
    assert set(GRPC_CODES.values()) == {
        Code.INVALID_ARGUMENT,
        Code.NOT_FOUND,
        Code.ALREADY_EXISTS,
        Code.FAILED_PRECONDITION,
        Code.RESOURCE_EXHAUSTED,
        Code.PERMISSION_DENIED,
        Code.UNAUTHENTICATED,
        Code.UNAVAILABLE,
        Code.DEADLINE_EXCEEDED,
        Code.CANCELLED,
        Code.ABORTED,
        Code.OUT_OF_RANGE,
        Code.UNIMPLEMENTED,
        Code.INTERNAL,
    }


def test_mesh_error_fields() -> None:
    err = NotFound("gone", reason="THING_GONE", metadata={"id": "a"})
    assert (err.message, err.reason, err.metadata, err.violations) == (
        "gone",
        "THING_GONE",
        {"id": "a"},
        (),
    )
    assert repr(err) == "NotFound('gone', reason='THING_GONE')"
    assert NotFound("gone").reason == "NOT_FOUND" and NotFound("gone").retry_after_s is None
    one = InvalidArgument.field("name", "is required")
    assert one.message == "name: is required"
    assert one.violations == (FieldViolation("name", "is required"),)


# -- the status an error becomes ------------------------------------------------------------


def test_status_carries_error_info_and_bad_request() -> None:
    err = InvalidArgument(
        "bad", violations=[FieldViolation("a", "is required")], metadata={"k": "v"}
    )
    status = to_status_proto(err)
    assert (status.code, status.message) == (Code.INVALID_ARGUMENT.value[0], "bad")
    got = details(status)
    assert set(got) == {"ErrorInfo", "BadRequest"}
    info = got["ErrorInfo"]
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "INVALID_ARGUMENT",
        ERROR_DOMAIN,
        {"k": "v"},
    )
    assert [(v.field, v.description) for v in got["BadRequest"].field_violations] == [
        ("a", "is required")
    ]


def _violations(n: int, chars: int = 300) -> list[FieldViolation]:
    return [
        FieldViolation(f"{i:04d}" + "f" * (chars - 4), f"{i:04d}" + "d" * (chars - 4))
        for i in range(n)
    ]


def test_a_thousand_long_violations_fit_in_8_kib_with_the_first_20() -> None:
    status = to_status_proto(InvalidArgument("invalid request", violations=_violations(1000)))
    assert len(status.SerializeToString()) < TRAILER_LIMIT
    assert trailer_bytes(status) < TRAILER_LIMIT
    got = details(status)
    sent = got["BadRequest"].field_violations
    assert [v.field[:4] for v in sent] == [f"{i:04d}" for i in range(20)]
    assert [v.description[:4] for v in sent] == [f"{i:04d}" for i in range(20)]
    assert all(len(v.field) <= 150 and v.field.endswith("...") for v in sent)  # clipped
    assert got["ErrorInfo"].metadata["violation_count"] == "1000"
    back = from_status_proto(status)
    assert type(back) is InvalidArgument and len(back.violations) == 20
    assert back.metadata["violation_count"] == "1000"


@pytest.mark.parametrize(("n", "counted"), [(20, False), (21, True)])
def test_violation_count_only_when_some_are_left_out(n: int, counted: bool) -> None:
    got = details(to_status_proto(InvalidArgument("bad", violations=_violations(n, 20))))
    assert len(got["BadRequest"].field_violations) == 20
    assert ("violation_count" in got["ErrorInfo"].metadata) is counted


WORST = InvalidArgument(
    "é€" * 5000 + "%",
    violations=[FieldViolation("字" * 1000, "\n" * 1000) for _ in range(1000)],
    metadata={f"{i}-" + "ключ" * 100: "значение" * 200 for i in range(100)},
    retry_after_s=2.5,
)
"""Everything an error can hold, as large and as expensive on the wire as possible."""


def test_the_worst_error_still_fits_with_its_essentials() -> None:
    status = to_status_proto(WORST)
    assert trailer_bytes(status) < TRAILER_LIMIT
    back = from_status_proto(status)
    assert type(back) is InvalidArgument and back.reason == "INVALID_ARGUMENT"
    assert back.metadata["violation_count"] == "1000"
    assert back.retry_after_s == 2.5
    assert back.violations  # some violations still make it
    assert back.message.startswith("é€")  # clipped on a character boundary


def test_retry_info_round_trips() -> None:
    for delay in (0.001, 1.5, 30.0):
        status = to_status_proto(RateLimited("slow down", retry_after_s=delay))
        assert details(status)["RetryInfo"].retry_delay.ToNanoseconds() == int(delay * 1e9)
        back = from_status_proto(status)
        assert type(back) is RateLimited and back.retry_after_s == pytest.approx(delay)
    assert from_status_proto(to_status_proto(RateLimited("x", retry_after_s=-1))).retry_after_s == 0
    for odd, expected in ((float("nan"), 0.0), (float("inf"), 86_400.0), (1e300, 86_400.0)):
        back = from_status_proto(to_status_proto(RateLimited("x", retry_after_s=odd)))
        assert back.retry_after_s == expected
    assert "RetryInfo" not in details(to_status_proto(RateLimited("x")))
    assert from_status_proto(to_status_proto(RateLimited("x"))).retry_after_s is None


def test_from_status_rebuilds_the_registered_class() -> None:
    back = from_status_proto(to_status_proto(TokenExpired("late")))
    assert type(back) is TokenExpired and back.message == "late"


def test_a_reason_whose_class_has_another_code_falls_back_to_the_code() -> None:
    # NOT_FOUND's class is NotFound, but the status says INVALID_ARGUMENT: trust the code.
    status = to_status_proto(InvalidArgument("x", reason="NOT_FOUND"))
    back = from_status_proto(status)
    assert type(back) is InvalidArgument and back.reason == "NOT_FOUND"


def test_a_status_without_details_is_the_class_of_its_code() -> None:
    back = from_status_proto(status_pb2.Status(code=Code.ABORTED.value[0], message="m"))
    assert type(back) is Aborted and back.message == "m" and back.reason == "ABORTED"
    odd = from_status_proto(status_pb2.Status(code=999, message="m"))
    assert type(odd) is Internal


def test_to_grpc_status_carries_the_details_in_the_trailers() -> None:
    st = to_grpc_status(NotFound("gone"))
    assert st.code == Code.NOT_FOUND and st.details == "gone"
    ((key, value),) = st.trailing_metadata
    assert key == "grpc-status-details-bin"
    assert status_pb2.Status.FromString(value) == to_status_proto(NotFound("gone"))


# -- over a real socket ---------------------------------------------------------------------


class Raising:
    """An AgentService whose ExecuteTask raises the error named by the skill."""

    errors: dict[str, MeshError] = {
        "worst": WORST,
        "many": InvalidArgument("invalid request", violations=_violations(1000)),
        "retry": RateLimited("slow down", retry_after_s=1.25),
    }

    async def GetAgentCard(self, request: Any) -> Any:
        return agent_pb2.GetAgentCardResponse()

    async def ExecuteTask(self, request: Any) -> Any:
        raise self.errors[request.skill]

    async def StreamTask(self, request: Any) -> AsyncIterator[Any]:
        raise self.errors[request.skill]
        yield  # a generator

    async def CancelTask(self, request: Any) -> Any:
        return agent_pb2.CancelTaskResponse()


@pytest.fixture
async def raising() -> AsyncIterator[RemoteServiceClient]:
    server = MeshServer(pipeline=insecure_pipeline())
    server.add(Raising(), SERVICE)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield RemoteServiceClient(channel, SERVICE)
    finally:
        await channel.close()
        await server.stop(0)


async def test_large_errors_arrive_intact_over_grpc(raising: RemoteServiceClient) -> None:
    # Trailers between the 8 KiB soft limit and the hard one are refused at random:
    # several tries make an oversized status show.
    for _ in range(10):
        for skill in ("worst", "many"):
            with pytest.raises(InvalidArgument) as err:
                await raising.call("ExecuteTask", agent_pb2.ExecuteTaskRequest(skill=skill))
            assert err.value.reason == "INVALID_ARGUMENT"
            assert err.value.metadata["violation_count"] == "1000"
    with pytest.raises(InvalidArgument) as streamed:
        async for _ in raising.stream("StreamTask", agent_pb2.StreamTaskRequest(skill="many")):
            pass
    assert len(streamed.value.violations) == 20


async def test_retry_info_arrives_over_grpc(raising: RemoteServiceClient) -> None:
    with pytest.raises(RateLimited) as err:
        await raising.call("ExecuteTask", agent_pb2.ExecuteTaskRequest(skill="retry"))
    assert err.value.retry_after_s == pytest.approx(1.25)


async def test_a_call_without_a_rich_status_becomes_the_class_of_its_code() -> None:
    server = MeshServer(pipeline=insecure_pipeline())
    server.add(Raising(), SERVICE)
    await server.start()
    port = server.port
    await server.stop(0)  # nobody listens there now
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(Unavailable) as err:
            await RemoteServiceClient(channel, SERVICE).call(
                "GetAgentCard", agent_pb2.GetAgentCardRequest(), timeout=5
            )
    assert err.value.reason == "UNAVAILABLE"


async def test_a_status_detail_that_contradicts_the_code_is_not_a_crash() -> None:
    """A hop that replaced the code (a proxy, the transport refusing trailers) leaves a
    details trailer of another code; the client gets a MeshError of the call's code."""
    stale = to_status_proto(InvalidArgument("bad")).SerializeToString()

    async def handler(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        context.set_trailing_metadata((("grpc-status-details-bin", stale),))
        await context.abort(Code.RESOURCE_EXHAUSTED, "too big")
        raise AssertionError("unreachable")

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE.full_name, {"GetAgentCard": grpc.unary_unary_rpc_method_handler(handler)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(ResourceExhausted) as err:
                await RemoteServiceClient(channel, SERVICE).call(
                    "GetAgentCard", agent_pb2.GetAgentCardRequest()
                )
            assert err.value.message == "too big"
            with pytest.raises(grpc.aio.AioRpcError) as raw:
                await channel.unary_unary(f"/{SERVICE.full_name}/GetAgentCard")(b"")
            assert type(from_rpc_error(raw.value)) is ResourceExhausted
            with pytest.raises(ValueError):  # what the client would otherwise have raised
                rpc_status.from_call(raw.value)  # type: ignore[arg-type]
    finally:
        await server.stop(0)
