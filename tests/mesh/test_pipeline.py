"""The one call pipeline, over real gRPC (MeshServer on port 0) and in-process.

A tiny AgentService records what its handlers see (the per-call context) and
makes outgoing calls through RemoteServiceClient / LocalServiceClient, so the
tests show what a call carries on (trace context, request id, deadline) and
what it never does (the caller's credentials).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from meshwright.agent.v1 import agent_pb2 as A
from meshwright.economy.v1 import economy_pb2 as E
from meshwright.mesh import LocalServiceClient, MeshServer, RemoteServiceClient
from meshwright.mesh._descriptors import methods_of
from meshwright.mesh.auth import (
    ANONYMOUS_ADMIN,
    Principal,
    Role,
    TokenExpired,
    TokenInvalid,
    TokenMalformed,
    TokenMissing,
)
from meshwright.mesh.client import ServiceClient, outgoing
from meshwright.mesh.context import (
    PROPAGATED_KEYS,
    CallContext,
    caller,
    current_call,
    detached,
    enter,
    serving,
)
from meshwright.mesh.errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    MeshError,
    NotFound,
)
from meshwright.mesh.limits import RateLimit, RateLimited, RateLimiter
from meshwright.mesh.pipeline import Endpoint, Pipeline
from meshwright.mesh.policy import (
    ACCOUNT,
    AGENT,
    ESCROW,
    PRINCIPAL,
    WORKFLOW,
    Authorizer,
    NotOwner,
    PrivilegedField,
    RoleNotAllowed,
    declared,
    field_value,
    policy_of,
)
from meshwright.mesh.security import insecure_pipeline
from meshwright.mesh.server import RequestUndecodable
from tests.conftest import eventually
from tests.support_auth import test_keys

SERVICE = A.DESCRIPTOR.services_by_name["AgentService"]
ECONOMY = E.DESCRIPTOR.services_by_name["EconomyService"]
EXECUTE = f"/{SERVICE.full_name}/ExecuteTask"
STREAM = f"/{SERVICE.full_name}/StreamTask"
Code = grpc.StatusCode


def token(role: str, subject: str) -> str:
    return test_keys().token(role, subject)


def bearer(role: str = "service", subject: str = "mesh") -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token(role, subject)}")]


def auth_pipeline(**kw: Any) -> Pipeline:
    return Pipeline(verifier=test_keys().verifier(), **kw)


def inputs(**values: Any) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


class Recorder:
    """An AgentService whose handlers record the call context they run in."""

    def __init__(self, downstream: ServiceClient | None = None) -> None:
        self.calls: list[CallContext | None] = []
        self.events: list[str] = []
        self.downstream = downstream

    async def GetAgentCard(self, request: Any) -> A.GetAgentCardResponse:
        self.calls.append(current_call())
        return A.GetAgentCardResponse(card=A.AgentCard(name="recorder"))

    async def ExecuteTask(self, request: Any) -> A.ExecuteTaskResponse:
        self.calls.append(current_call())
        skill = request.skill
        if skill == "crash":
            raise RuntimeError("secret detail")
        if skill == "slow":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.events.append("cancelled")
                raise
        if skill == "forward":
            assert self.downstream is not None
            timeout = request.input["timeout"] if "timeout" in request.input else None
            return await self.downstream.call(  # type: ignore[no-any-return]
                "ExecuteTask",
                A.ExecuteTaskRequest(task_id="inner", skill="record"),
                timeout=timeout,
                metadata=[("x-extra", "e")],
            )
        if skill == "detach":
            ctx = detached()
            self.calls.append(ctx.run(current_call))
            _, capped = outgoing((), 100.0, None)
            _, free = ctx.run(outgoing, (), 100.0, None)
            self.events.append(f"capped={round(capped or 0)} free={free}")
        return A.ExecuteTaskResponse(task=A.Task(task_id=request.task_id, skill=skill))

    async def StreamTask(self, request: Any) -> AsyncIterator[A.StreamTaskResponse]:
        n = int(request.input["n"]) if "n" in request.input else 3
        try:
            for i in range(n):
                self.calls.append(current_call())
                yield A.StreamTaskResponse(status_update=A.TaskStatus(message=str(i)))
                if request.skill == "fail-mid" and i == 1:
                    raise NotFound("lost the task")
                if request.skill == "crash-mid" and i == 1:
                    raise RuntimeError("secret detail")
            if request.skill == "hang":
                await asyncio.Event().wait()
            self.calls.append(current_call())
            yield A.StreamTaskResponse(final=True)
        finally:
            self.events.append("stream-closed")

    async def CancelTask(self, request: Any) -> A.CancelTaskResponse:
        return A.CancelTaskResponse()


@contextlib.asynccontextmanager
async def serve(
    servicer: object, pipeline: Pipeline, *, mesh: bool = False
) -> AsyncIterator[tuple[MeshServer, grpc.aio.Channel]]:
    server = MeshServer(pipeline=pipeline, port=0)
    server.add(servicer, SERVICE, mesh=mesh)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield server, channel
    finally:
        await channel.close()
        await server.stop(0)


def reason_of(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for d in status.details:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
            return info.reason
    raise AssertionError("no ErrorInfo")


async def raw_call(
    channel: grpc.aio.Channel, request: bytes, metadata: Any = None, path: str = EXECUTE
) -> grpc.aio.AioRpcError:
    """The error a raw unary call (bytes in, bytes out) ends with."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await channel.unary_unary(path)(request, metadata=metadata, timeout=5)
    return err.value


# -- authentication ----------------------------------------------------------------------------


async def test_no_token_is_unauthenticated_token_missing() -> None:
    rec = Recorder()
    async with serve(rec, auth_pipeline()) as (_, channel):
        err = await raw_call(channel, A.ExecuteTaskRequest(task_id="t").SerializeToString())
        assert err.code() == Code.UNAUTHENTICATED and reason_of(err) == "TOKEN_MISSING"
        with pytest.raises(TokenMissing):
            await RemoteServiceClient(channel, SERVICE).call(
                "GetAgentCard", A.GetAgentCardRequest()
            )
    assert rec.calls == []  # no handler ran


async def test_each_bad_token_has_its_reason() -> None:
    keys = test_keys()
    expired = jwt.encode(
        {"aud": "meshwright", "sub": "a", "role": "admin", "exp": int(time.time()) - 100},
        keys.private_pem,
        algorithm="ES256",
    )
    other = Recorder()  # tokens minted by a key nobody trusts here
    from meshwright.mesh.auth import TokenIssuer, generate_key_pair

    foreign = TokenIssuer(generate_key_pair()[0]).issue("admin", "root")
    async with serve(other, auth_pipeline()) as (_, channel):
        for value, cls in [
            ("Basic abc", TokenMalformed),
            (f"Bearer {expired}", TokenExpired),
            (f"Bearer {foreign}", TokenInvalid),
            ("Bearer not-a-jwt", TokenInvalid),
        ]:
            client = RemoteServiceClient(channel, SERVICE)
            with pytest.raises(cls):
                await client.call(
                    "GetAgentCard", A.GetAgentCardRequest(), metadata=[("authorization", value)]
                )
    assert other.calls == []


async def test_auth_off_serves_everyone_as_the_anonymous_admin() -> None:
    rec = Recorder()
    async with serve(rec, insecure_pipeline()) as (_, channel):
        client = RemoteServiceClient(channel, SERVICE)
        await client.call("GetAgentCard", A.GetAgentCardRequest())
        await client.call(
            "GetAgentCard", A.GetAgentCardRequest(), metadata=[("authorization", "junk")]
        )
    assert [c.principal if c else None for c in rec.calls] == [ANONYMOUS_ADMIN] * 2


# -- the per-call context ----------------------------------------------------------------------


async def test_handler_sees_the_call_context() -> None:
    rec = Recorder()
    async with serve(rec, auth_pipeline()) as (server, channel):
        client = RemoteServiceClient(channel, SERVICE, token=token("admin", "root"))
        await client.call(
            "ExecuteTask",
            A.ExecuteTaskRequest(task_id="t", skill="record"),
            timeout=5,
            metadata=[("x-request-id", "r-1"), ("x-custom", "c")],
        )
        # Recorded during the call, so the time left is at most the client's timeout.
        (call,) = rec.calls
        assert call is not None
        assert call.principal == Principal(Role.ADMIN, "root")
        assert call.method == EXECUTE
        md = dict(call.metadata)
        assert md["x-request-id"] == "r-1" and md["x-custom"] == "c"
        assert "authorization" not in md  # credentials never reach domain code
        assert call.peer.startswith(("ipv4:127.0.0.1:", "ipv6:"))
        assert call.deadline is not None

        await client.call("GetAgentCard", A.GetAgentCardRequest())
        assert rec.calls[-1] is not None and rec.calls[-1].deadline is None  # no timeout


async def test_the_deadline_matches_the_clients_timeout() -> None:
    seen: list[float | None] = []

    class Timed(Recorder):
        async def ExecuteTask(self, request: Any) -> A.ExecuteTaskResponse:
            call = current_call()
            assert call is not None
            seen.append(call.time_remaining())
            return A.ExecuteTaskResponse()

    async with serve(Timed(), auth_pipeline()) as (_, channel):
        client = RemoteServiceClient(channel, SERVICE, token=token("service", "mesh"))
        await client.call("ExecuteTask", A.ExecuteTaskRequest(), timeout=5)
        await client.call("ExecuteTask", A.ExecuteTaskRequest(), timeout=0.8)
    # gRPC rounds the timeout it puts on the wire up to a coarser unit (seen in CI: 5 s
    # arriving as 5.0094 s); allow it 1 % and 10 ms, far below any wrong deadline.
    assert seen[0] is not None and 4.0 < seen[0] <= 5.0 * 1.01 + 0.01
    assert seen[1] is not None and 0.0 < seen[1] <= 0.8 * 1.01 + 0.01


def test_context_outside_any_call() -> None:
    assert current_call() is None and caller() is None
    assert detached().run(current_call) is None


def test_serving_sets_and_resets_the_call() -> None:
    who = Principal(Role.CLIENT, "alice")
    call = CallContext(method="/m", principal=who, deadline=None)
    with serving(call) as inside:
        assert inside is call and current_call() is call and caller() == who
    assert current_call() is None


def test_enter_makes_a_call_current_for_good_in_its_context() -> None:
    import contextvars

    call = CallContext(method="/m", principal=ANONYMOUS_ADMIN, deadline=None)
    ctx = contextvars.copy_context()
    ctx.run(enter, call)
    assert ctx.run(current_call) is call
    assert current_call() is None  # the caller's context is untouched


def test_time_remaining_is_never_negative() -> None:
    past = CallContext(method="/m", principal=ANONYMOUS_ADMIN, deadline=time.monotonic() - 5)
    assert past.time_remaining() == 0.0
    future = CallContext(method="/m", principal=ANONYMOUS_ADMIN, deadline=time.monotonic() + 5)
    remaining = future.time_remaining()
    assert remaining is not None and 4.0 < remaining <= 5.0
    assert (
        CallContext(method="/m", principal=ANONYMOUS_ADMIN, deadline=None).time_remaining() is None
    )


def test_only_trace_context_and_request_id_propagate() -> None:
    md = tuple((k, "v") for k in sorted(PROPAGATED_KEYS)) + (("x-custom", "c"), ("cookie", "s"))
    call = CallContext(method="/m", principal=ANONYMOUS_ADMIN, deadline=None, metadata=md)
    assert {k for k, _ in call.propagated()} == {
        "traceparent",
        "tracestate",
        "baggage",
        "x-request-id",
    }


async def test_detached_drops_the_deadline_but_keeps_the_principal() -> None:
    rec = Recorder()
    async with serve(rec, auth_pipeline()) as (_, channel):
        admin = RemoteServiceClient(channel, SERVICE, token=token("admin", "root"))
        await admin.call(
            "ExecuteTask",
            A.ExecuteTaskRequest(skill="detach"),
            timeout=5,
            metadata=[("traceparent", "00-abc-def-01")],
        )
    inside, outlives = rec.calls
    assert inside is not None and outlives is not None
    assert inside.deadline is not None and outlives.deadline is None
    assert outlives.principal == inside.principal == Principal(Role.ADMIN, "root")
    assert outlives.metadata == inside.metadata and outlives.method == inside.method
    # Outgoing calls are capped by the call's deadline, but not from the detached context.
    assert rec.events == ["capped=5 free=100.0"]


# -- outgoing calls made while serving one -----------------------------------------------------


INCOMING = [
    ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ("x-request-id", "req-42"),
    ("x-custom", "not-propagated"),
]


@contextlib.asynccontextmanager
async def two_hops(
    remote: bool, downstream_token: str | None
) -> AsyncIterator[tuple[grpc.aio.Channel, Recorder]]:
    """A front server whose ExecuteTask(skill=forward) calls a back servicer; yields the
    channel to the front and the back's recorder."""
    back = Recorder()
    async with serve(back, auth_pipeline()) as (_, back_channel):
        downstream: ServiceClient
        if remote:
            downstream = RemoteServiceClient(back_channel, SERVICE, token=downstream_token)
        else:
            downstream = LocalServiceClient(back, SERVICE, auth_pipeline(), token=downstream_token)
        async with serve(Recorder(downstream), auth_pipeline()) as (_, front_channel):
            yield front_channel, back


@pytest.mark.parametrize("remote", [True, False], ids=["remote", "local"])
async def test_outgoing_call_carries_trace_and_request_id_not_credentials(remote: bool) -> None:
    async with two_hops(remote, token("service", "front")) as (channel, back):
        caller_client = RemoteServiceClient(channel, SERVICE, token=token("admin", "root"))
        t0 = time.monotonic()
        reply = await caller_client.call(
            "ExecuteTask",
            A.ExecuteTaskRequest(skill="forward", input=inputs(timeout=60)),
            timeout=3,
            metadata=INCOMING,
        )
    assert reply.task.task_id == "inner"
    (inner,) = back.calls
    assert inner is not None
    # The downstream is called as the front service, never as the front's caller.
    assert inner.principal == Principal(Role.SERVICE, "front")
    md = dict(inner.metadata)
    assert md["traceparent"] == INCOMING[0][1]
    assert md["x-request-id"] == "req-42"
    assert md["x-extra"] == "e"  # what the outgoing call itself adds
    assert "x-custom" not in md and "authorization" not in md
    # Asked for 60 s, capped by the 3 s the front call had left.
    assert inner.deadline is not None and inner.deadline <= t0 + 3.0 + 0.05
    assert (inner.peer == "local") is not remote


@pytest.mark.parametrize("remote", [True, False], ids=["remote", "local"])
async def test_outgoing_call_without_a_timeout_gets_the_remaining_deadline(remote: bool) -> None:
    async with two_hops(remote, token("service", "front")) as (channel, back):
        client = RemoteServiceClient(channel, SERVICE, token=token("admin", "root"))
        t0 = time.monotonic()
        await client.call("ExecuteTask", A.ExecuteTaskRequest(skill="forward"), timeout=2)
    (inner,) = back.calls
    assert inner is not None and inner.deadline is not None
    assert t0 < inner.deadline <= t0 + 2.0 + 0.05


@pytest.mark.parametrize("remote", [True, False], ids=["remote", "local"])
async def test_the_callers_token_is_not_forwarded(remote: bool) -> None:
    """A downstream client without a token of its own calls with none: the caller's
    authorization stays behind, so the back server refuses the call."""
    async with two_hops(remote, None) as (channel, back):
        client = RemoteServiceClient(channel, SERVICE, token=token("admin", "root"))
        with pytest.raises(TokenMissing):
            await client.call("ExecuteTask", A.ExecuteTaskRequest(skill="forward"), timeout=5)
    assert back.calls == []


def test_outgoing_outside_a_call() -> None:
    md, timeout = outgoing([("x-a", "1"), ("authorization", "Bearer theirs")], 7.0, "mine")
    assert md == [("x-a", "1"), ("authorization", "Bearer mine")]  # own token replaces theirs
    assert timeout == 7.0
    assert outgoing([("authorization", "Bearer theirs")], None, None) == (
        [("authorization", "Bearer theirs")],
        None,
    )


def test_outgoing_inside_a_call() -> None:
    call = CallContext(
        method="/m",
        principal=ANONYMOUS_ADMIN,
        deadline=time.monotonic() + 2,
        metadata=(("x-request-id", "incoming"), ("traceparent", "tp"), ("x-custom", "c")),
    )
    with serving(call):
        md, timeout = outgoing([("x-request-id", "given")], 60.0, None)
        assert md == [("x-request-id", "given"), ("traceparent", "tp")]  # given ones win
        assert timeout is not None and 1.0 < timeout <= 2.0
        _, shorter = outgoing([], 0.5, None)
        assert shorter == 0.5


# -- bad requests and failing handlers ---------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xff\xff", b"\x0a\x01\xff", b"\x0a\x05ab", b"\x0a\x02\xc3\x28"],
    ids=["garbage", "string-not-utf8", "truncated", "invalid-utf8-pair"],
)
async def test_undecodable_request_is_invalid_argument(raw: bytes) -> None:
    rec = Recorder()
    async with serve(rec, auth_pipeline()) as (_, channel):
        for path in (EXECUTE, STREAM):
            if path == EXECUTE:
                err = await raw_call(channel, raw, metadata=bearer())
            else:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    async for _ in channel.unary_stream(path)(raw, metadata=bearer(), timeout=5):
                        pass
                err = caught.value
            assert err.code() == Code.INVALID_ARGUMENT, err
            assert reason_of(err) == "REQUEST_UNDECODABLE"
            assert "meshwright.agent.v1" in (err.details() or "")
    assert rec.calls == []


async def test_an_anonymous_caller_sending_garbage_is_unauthenticated() -> None:
    # Authentication comes before decoding: without a token, bytes tell nothing back.
    rec = Recorder()
    async with serve(rec, auth_pipeline()) as (_, channel):
        err = await raw_call(channel, b"\xff\xff\xff")
        assert err.code() == Code.UNAUTHENTICATED and reason_of(err) == "TOKEN_MISSING"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in channel.unary_stream(STREAM)(b"\xff\xff\xff", timeout=5):
                pass
        assert caught.value.code() == Code.UNAUTHENTICATED
    assert rec.calls == []


async def test_a_valid_raw_request_is_served() -> None:
    async with serve(Recorder(), auth_pipeline()) as (_, channel):
        raw = A.ExecuteTaskRequest(task_id="t", skill="x").SerializeToString()
        reply = await channel.unary_unary(EXECUTE)(raw, metadata=bearer(), timeout=5)
        assert A.ExecuteTaskResponse.FromString(reply).task.task_id == "t"


async def test_handler_bug_is_internal_without_detail(caplog: pytest.LogCaptureFixture) -> None:
    async with serve(Recorder(), auth_pipeline()) as (_, channel):
        with caplog.at_level(logging.ERROR, logger="meshwright.mesh.pipeline"):
            err = await raw_call(
                channel,
                A.ExecuteTaskRequest(skill="crash").SerializeToString(),
                metadata=bearer(),
            )
    assert err.code() == Code.INTERNAL and err.details() == "internal error"
    assert reason_of(err) == "INTERNAL"
    assert "secret" not in str(err.trailing_metadata())
    assert "secret detail" in caplog.text  # logged on the server side only


async def test_handler_past_its_deadline_is_deadline_exceeded_and_cancelled() -> None:
    rec = Recorder()
    async with serve(rec, auth_pipeline()) as (_, channel):
        client = RemoteServiceClient(channel, SERVICE, token=token("service", "mesh"))
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await client.call("ExecuteTask", A.ExecuteTaskRequest(skill="slow"), timeout=0.3)
        assert time.monotonic() - t0 < 2
        await eventually(lambda: rec.events == ["cancelled"], timeout=5)


async def test_in_process_deadline_is_the_pipelines_own() -> None:
    rec = Recorder()
    local = LocalServiceClient(rec, SERVICE, auth_pipeline(), token=token("service", "mesh"))
    with pytest.raises(DeadlineExceeded, match="ExecuteTask exceeded its 0.200s deadline"):
        await local.call("ExecuteTask", A.ExecuteTaskRequest(skill="slow"), timeout=0.2)
    assert rec.events == ["cancelled"]
    with pytest.raises(Internal, match="^internal error$"):
        await local.call("ExecuteTask", A.ExecuteTaskRequest(skill="crash"))


async def test_input_limits_apply_before_the_handler() -> None:
    rec = Recorder()
    async with serve(rec, auth_pipeline()) as (_, channel):
        client = RemoteServiceClient(channel, SERVICE, token=token("service", "mesh"))
        with pytest.raises(InvalidArgument) as err:
            await client.call("ExecuteTask", A.ExecuteTaskRequest(task_id="x" * 4097))
        assert [v.field for v in err.value.violations] == ["task_id"]
        bad_input = A.ExecuteTaskRequest(input=inputs(n=1))
        bad_input.input.fields["n"].number_value = float("nan")
        with pytest.raises(InvalidArgument) as nan:
            await client.call("ExecuteTask", bad_input)
        assert [v.field for v in nan.value.violations] == ["input.n"]
    assert rec.calls == []


# -- access policy and rate limits in the pipeline ---------------------------------------------


@pytest.mark.parametrize(
    ("mesh", "role", "allowed"),
    [
        (False, "admin", True),
        (False, "service", True),
        (False, "agent", False),
        (False, "client", False),
        (True, "agent", True),
        (True, "client", True),
    ],
)
async def test_the_declared_policy_decides_who_is_served(
    mesh: bool, role: str, allowed: bool
) -> None:
    """An agent process (``access``) serves only the mesh and admins; the mesh's router
    (``mesh_access``) serves every role."""
    rec = Recorder()
    async with serve(rec, auth_pipeline(), mesh=mesh) as (_, channel):
        client = RemoteServiceClient(channel, SERVICE, token=token(role, "x1"))
        if allowed:
            await client.call("ExecuteTask", A.ExecuteTaskRequest(task_id="t"))
            assert len(rec.calls) == 1
        else:
            with pytest.raises(RoleNotAllowed) as err:
                await client.call("ExecuteTask", A.ExecuteTaskRequest(task_id="t"))
            assert err.value.metadata == {"role": role}
            assert rec.calls == []


async def test_input_limits_come_before_authorization() -> None:
    async with serve(Recorder(), auth_pipeline()) as (_, channel):
        client = RemoteServiceClient(channel, SERVICE, token=token("client", "alice"))
        with pytest.raises(InvalidArgument):
            await client.call("ExecuteTask", A.ExecuteTaskRequest(task_id="x" * 4097))
        with pytest.raises(RoleNotAllowed):
            await client.call("ExecuteTask", A.ExecuteTaskRequest(task_id="x"))


async def test_rate_limit_per_principal_with_retry_info() -> None:
    frozen = RateLimiter(RateLimit(rate_per_s=1, burst=2), clock=lambda: 0.0)
    async with serve(Recorder(), auth_pipeline(limiter=frozen), mesh=True) as (_, channel):
        alice = RemoteServiceClient(channel, SERVICE, token=token("client", "alice"))
        for _ in range(2):
            await alice.call("GetAgentCard", A.GetAgentCardRequest())
        with pytest.raises(RateLimited) as err:
            await alice.call("GetAgentCard", A.GetAgentCardRequest())
        assert err.value.retry_after_s == pytest.approx(1.0)
        # Checked before the input limits: a spent caller learns nothing more.
        with pytest.raises(RateLimited):
            await alice.call("ExecuteTask", A.ExecuteTaskRequest(task_id="x" * 4097))
        # Another principal has its own bucket; the mesh's services are exempt.
        bob = RemoteServiceClient(channel, SERVICE, token=token("client", "bob"))
        await bob.call("GetAgentCard", A.GetAgentCardRequest())
        mesh = RemoteServiceClient(channel, SERVICE, token=token("service", "mesh"))
        for _ in range(10):
            await mesh.call("GetAgentCard", A.GetAgentCardRequest())
        # Authentication comes first: no token is TOKEN_MISSING, not RATE_LIMITED.
        with pytest.raises(TokenMissing):
            await RemoteServiceClient(channel, SERVICE).call(
                "GetAgentCard", A.GetAgentCardRequest()
            )


# -- streams -----------------------------------------------------------------------------------


async def test_stream_context_is_visible_on_every_item_over_grpc() -> None:
    rec = Recorder()
    async with serve(rec, auth_pipeline()) as (_, channel):
        client = RemoteServiceClient(channel, SERVICE, token=token("admin", "root"))
        items = [
            item
            async for item in client.stream(
                "StreamTask", A.StreamTaskRequest(input=inputs(n=3)), timeout=5
            )
        ]
    assert [i.status_update.message for i in items[:3]] == ["0", "1", "2"] and items[3].final
    assert len(rec.calls) == 4
    for call in rec.calls:
        assert call is not None and call.principal == Principal(Role.ADMIN, "root")
        assert call.method == STREAM and call.deadline is not None
    await eventually(lambda: rec.events == ["stream-closed"])


async def test_stream_context_in_process_stays_with_the_handler() -> None:
    rec = Recorder()
    local = LocalServiceClient(
        rec, SERVICE, auth_pipeline(), token=token("client", "c1"), mesh=True
    )
    seen_by_consumer = []
    async for _ in local.stream("StreamTask", A.StreamTaskRequest(input=inputs(n=2))):
        seen_by_consumer.append(current_call())
    assert seen_by_consumer == [None, None, None]  # the consumer is not serving a call
    assert [c.principal.name if c else None for c in rec.calls] == ["client:c1"] * 3
    assert rec.events == ["stream-closed"]


async def test_closing_a_stream_early_closes_the_handler_over_grpc() -> None:
    rec = Recorder()
    async with serve(rec, auth_pipeline()) as (_, channel):
        client = RemoteServiceClient(channel, SERVICE, token=token("service", "mesh"))
        stream = client.stream("StreamTask", A.StreamTaskRequest(skill="hang", input=inputs(n=1)))
        async with contextlib.aclosing(stream) as items:  # type: ignore[type-var]
            async for item in items:
                assert item.status_update.message == "0"
                break
        await eventually(lambda: rec.events == ["stream-closed"], timeout=5)


async def test_closing_a_stream_early_closes_the_handler_in_process() -> None:
    rec = Recorder()
    local = LocalServiceClient(rec, SERVICE, auth_pipeline(), token=token("service", "mesh"))
    stream = local.stream("StreamTask", A.StreamTaskRequest(input=inputs(n=100)))
    async with contextlib.aclosing(stream) as items:  # type: ignore[type-var]
        async for _ in items:
            break
    assert rec.events == ["stream-closed"]
    assert len(rec.calls) == 1  # nothing was produced after the consumer left


async def test_stream_past_its_deadline() -> None:
    rec = Recorder()
    local = LocalServiceClient(rec, SERVICE, auth_pipeline(), token=token("service", "mesh"))
    got = []
    with pytest.raises(DeadlineExceeded):
        async for item in local.stream(
            "StreamTask", A.StreamTaskRequest(skill="hang", input=inputs(n=1)), timeout=0.2
        ):
            got.append(item)
    assert len(got) == 1 and rec.events == ["stream-closed"]
    async with serve(Recorder(), auth_pipeline()) as (_, channel):
        client = RemoteServiceClient(channel, SERVICE, token=token("service", "mesh"))
        with pytest.raises(DeadlineExceeded):
            async for _ in client.stream(
                "StreamTask", A.StreamTaskRequest(skill="hang", input=inputs(n=1)), timeout=0.3
            ):
                pass


@pytest.mark.parametrize(("skill", "error"), [("fail-mid", NotFound), ("crash-mid", Internal)])
async def test_stream_errors_after_some_items(skill: str, error: type[MeshError]) -> None:
    async with serve(Recorder(), auth_pipeline()) as (_, channel):
        client = RemoteServiceClient(channel, SERVICE, token=token("service", "mesh"))
        got = []
        with pytest.raises(error) as err:
            async for item in client.stream("StreamTask", A.StreamTaskRequest(skill=skill)):
                got.append(item.status_update.message)
        assert got == ["0", "1"]
        assert "secret" not in err.value.message


async def test_stream_refused_before_the_handler_runs() -> None:
    rec = Recorder()
    async with serve(rec, auth_pipeline()) as (_, channel):
        with pytest.raises(TokenMissing):
            async for _ in RemoteServiceClient(channel, SERVICE).stream(
                "StreamTask", A.StreamTaskRequest()
            ):
                pass
    assert rec.calls == [] and rec.events == []


# -- open doors: health and reflection ---------------------------------------------------------


async def test_health_and_reflection_answer_without_a_token() -> None:
    async with serve(Recorder(), auth_pipeline()) as (_, channel):
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE.full_name):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        names: set[str] = set()
        async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
            names |= {s.name for s in reply.list_services_response.service}
        assert {SERVICE.full_name, "grpc.health.v1.Health"} <= names


# -- observers ---------------------------------------------------------------------------------


class Observer:
    def __init__(self, fail: bool = False) -> None:
        self.seen: list[tuple[str | None, str, str | None, float]] = []
        self.fail = fail

    def finished(
        self, call: CallContext | None, method: str, error: MeshError | None, seconds: float
    ) -> None:
        self.seen.append(
            (call.principal.name if call else None, method, error and error.reason, seconds)
        )
        if self.fail:
            raise RuntimeError("observer bug")


async def test_observers_hear_of_every_call(caplog: pytest.LogCaptureFixture) -> None:
    pipeline = auth_pipeline()
    good, bad = Observer(), Observer(fail=True)
    pipeline.observers += [bad, good]
    rec = Recorder()
    local = LocalServiceClient(rec, SERVICE, pipeline, token=token("service", "mesh"))
    with caplog.at_level(logging.ERROR, logger="meshwright.mesh.pipeline"):
        await local.call("ExecuteTask", A.ExecuteTaskRequest())  # a failing observer is harmless
    with pytest.raises(Internal):
        await local.call("ExecuteTask", A.ExecuteTaskRequest(skill="crash"))
    with pytest.raises(TokenMissing):
        await local.with_token(None).call("ExecuteTask", A.ExecuteTaskRequest())
    async for _ in local.stream("StreamTask", A.StreamTaskRequest(input=inputs(n=1))):
        pass
    assert [s[:3] for s in good.seen] == [
        ("service:mesh", EXECUTE, None),
        ("service:mesh", EXECUTE, "INTERNAL"),
        (None, EXECUTE, "TOKEN_MISSING"),
        ("service:mesh", STREAM, None),
    ]
    assert all(s[3] >= 0 for s in good.seen)
    assert len(bad.seen) == 4 and "call observer failed" in caplog.text


# -- the clients -------------------------------------------------------------------------------


async def _requests(*requests: Any) -> AsyncIterator[Any]:
    for request in requests:
        yield request


async def test_local_client_checks_its_methods() -> None:
    local = LocalServiceClient(Recorder(), SERVICE, insecure_pipeline())
    with pytest.raises(NotFound, match="has no method Nope"):
        await local.call("Nope", A.ExecuteTaskRequest())
    with pytest.raises(NotFound, match="is a streaming method, not unary"):
        await local.call("StreamTask", A.StreamTaskRequest())
    with pytest.raises(NotFound, match="is a unary method, not streaming"):
        async for _ in local.stream("ExecuteTask", A.ExecuteTaskRequest()):
            pass
    with pytest.raises(NotFound, match="is a unary method, not bidirectional"):
        async for _ in local.exchange("ExecuteTask", _requests(A.ExecuteTaskRequest())):
            pass

    class Partial:
        async def GetAgentCard(self, request: Any) -> Any: ...

    with pytest.raises(TypeError, match="does not implement"):
        LocalServiceClient(Partial(), SERVICE, insecure_pipeline())


async def test_remote_client_checks_its_methods() -> None:
    async with serve(Recorder(), insecure_pipeline()) as (_, channel):
        client = RemoteServiceClient(channel, SERVICE)
        with pytest.raises(NotFound):
            await client.call("StreamTask", A.StreamTaskRequest())
        with pytest.raises(NotFound):
            async for _ in client.stream("ExecuteTask", A.ExecuteTaskRequest()):
                pass


async def test_local_client_with_token_calls_as_another_principal() -> None:
    rec = Recorder()
    local = LocalServiceClient(rec, SERVICE, auth_pipeline(), token=token("admin", "root"))
    await local.call("GetAgentCard", A.GetAgentCardRequest())
    await local.with_token(token("service", "s2")).call("GetAgentCard", A.GetAgentCardRequest())
    assert [c.principal.name for c in rec.calls if c] == ["admin:root", "service:s2"]
    assert [c.peer for c in rec.calls if c] == ["local", "local"]


# -- the server --------------------------------------------------------------------------------


async def test_server_lifecycle() -> None:
    server = MeshServer(pipeline=insecure_pipeline())
    server.add(Recorder(), SERVICE)
    ran: list[str] = []

    async def failing() -> None:
        ran.append("failing")
        raise RuntimeError("hook bug")

    async def fine() -> None:
        ran.append("fine")

    server.on_stop(fine)
    server.on_stop(failing)
    port = await server.start()
    assert port == server.port > 0 and server.address == f"127.0.0.1:{port}"
    assert server.service_names == [SERVICE.full_name]
    with pytest.raises(RuntimeError, match="before start"):
        server.add(Recorder(), SERVICE)
    waiter = asyncio.create_task(server.wait_stopped())
    await server.stop(0)
    await asyncio.wait_for(waiter, 5)
    assert ran == ["failing", "fine"]  # reverse order; a failing hook does not stop the rest
    await server.stop(0)  # a second stop is a no-op
    assert ran == ["failing", "fine"]


def test_request_undecodable_is_an_invalid_argument() -> None:
    assert issubclass(RequestUndecodable, InvalidArgument)
    assert RequestUndecodable("x").reason == "REQUEST_UNDECODABLE"


# -- authorization, with the contract's own policies -------------------------------------------


OWNERS = {"acc-alice": "client:alice", "acc-bob": "client:bob"}


async def _owner_of(account_id: str) -> str | None:
    return OWNERS.get(account_id)


def economy_call(
    pipeline: Pipeline,
) -> Callable[[str, Any, str, str], Awaitable[Any]]:
    """Run an EconomyService method through ``pipeline`` with a handler that just answers."""

    async def run(method: str, request: Any, role: str, subject: str) -> Any:
        info = methods_of(ECONOMY)[method]

        async def handler(req: Any) -> Any:
            return info.response_type()

        return await pipeline.unary(
            Endpoint.of(info), handler, request, metadata=bearer(role, subject)
        )

    return run


@pytest.fixture
def economy() -> Callable[[str, Any, str, str], Awaitable[Any]]:
    return economy_call(auth_pipeline(authorizer=Authorizer({ACCOUNT: _owner_of})))


@pytest.mark.parametrize(
    ("role", "subject", "account", "allowed"),
    [
        ("client", "alice", "acc-alice", True),
        ("client", "bob", "acc-alice", False),
        ("client", "alice", "acc-nobody", False),  # missing looks like foreign
        ("client", "alice", "", True),  # nothing named: the RPC itself answers
        ("service", "mesh", "acc-alice", True),  # trusted, not strict
        ("service", "mesh", "acc-nobody", True),  # trusted: the RPC answers NOT_FOUND
        ("admin", "root", "acc-bob", True),
    ],
)
async def test_ownership_of_a_non_strict_field(
    economy: Any, role: str, subject: str, account: str, allowed: bool
) -> None:
    request = E.GetAccountRequest(account_id=account)
    if allowed:
        await economy("GetAccount", request, role, subject)
    else:
        with pytest.raises(NotOwner) as err:
            await economy("GetAccount", request, role, subject)
        assert err.value.metadata == {"field": "account_id"}


@pytest.mark.parametrize(
    ("role", "subject", "allowed"),
    [("client", "alice", True), ("client", "bob", False), ("admin", "root", False)],
)
async def test_a_strict_field_binds_even_admins(
    economy: Any, role: str, subject: str, allowed: bool
) -> None:
    request = E.CastVoteRequest(proposal_id="p", voter_account_id="acc-alice")
    if allowed:
        await economy("CastVote", request, role, subject)
    else:
        with pytest.raises(NotOwner):
            await economy("CastVote", request, role, subject)


@pytest.mark.parametrize(
    ("request_fields", "role", "allowed"),
    [
        ({"initial_balance": 5}, "admin", True),
        ({"initial_balance": 5}, "service", False),  # admin only
        ({"initial_balance": 5}, "client", False),
        ({"initial_balance": 0}, "client", True),  # unset is not set
        ({"initial_gov_balance": 5}, "admin", True),  # minting GOV is minting too
        ({"initial_gov_balance": 5}, "service", False),
        ({"initial_gov_balance": 5}, "client", False),
        ({"owner": "client:x"}, "service", True),  # service only: mesh services may
        ({"owner": "client:x"}, "admin", True),
        ({"owner": "client:x"}, "client", False),
        ({"owner": "client:x"}, "agent", False),
    ],
)
async def test_privileged_fields(
    economy: Any, request_fields: dict[str, Any], role: str, allowed: bool
) -> None:
    request = E.CreateAccountRequest(account_id="new", **request_fields)
    if allowed:
        await economy("CreateAccount", request, role, "x")
    else:
        with pytest.raises(PrivilegedField) as err:
            await economy("CreateAccount", request, role, "x")
        assert err.value.metadata == {"field": next(iter(request_fields))}


async def test_a_role_the_policy_leaves_out(economy: Any) -> None:
    with pytest.raises(RoleNotAllowed):
        await economy("OpenEscrow", E.OpenEscrowRequest(), "client", "alice")
    await economy("OpenEscrow", E.OpenEscrowRequest(), "service", "workflow")


async def test_without_an_owner_lookup_the_check_is_internal() -> None:
    run = economy_call(auth_pipeline())  # no resolvers registered
    with pytest.raises(Internal, match="no owner lookup for OWNER_KIND_ACCOUNT"):
        await run("GetAccount", E.GetAccountRequest(account_id="acc-alice"), "client", "alice")
    authorizer = Authorizer()
    authorizer.register(ACCOUNT, _owner_of)
    run = economy_call(auth_pipeline(authorizer=authorizer))
    await run("GetAccount", E.GetAccountRequest(account_id="acc-alice"), "client", "alice")


async def test_auth_off_applies_no_policy() -> None:
    run = economy_call(Pipeline(verifier=None))
    # Even a field only admins may set, by whoever calls: everyone is the anonymous admin.
    await run("OpenEscrow", E.OpenEscrowRequest(), "client", "alice")


@pytest.mark.parametrize(
    ("who", "allowed"),
    [
        (Principal(Role.AGENT, "a1"), True),
        (Principal(Role.AGENT, "a2"), False),
        (Principal(Role.CLIENT, "a1"), False),  # the same subject, not an agent
        (Principal(Role.SERVICE, "mesh"), True),
        (Principal(Role.ADMIN, "root"), True),
    ],
)
async def test_agents_own_only_their_own_id(who: Principal, allowed: bool) -> None:
    authorizer = Authorizer()
    if allowed:
        await authorizer.require_owner(AGENT, "a1", who, field="agent_id")
    else:
        with pytest.raises(NotOwner, match="agent_id"):
            await authorizer.require_owner(AGENT, "a1", who, field="agent_id")


@pytest.mark.parametrize(
    ("role", "subject", "owner", "allowed"),
    [
        ("client", "alice", "client:alice", True),
        ("client", "alice", "client:bob", False),
        ("client", "alice", "agent:alice", False),  # the same subject, another role
        ("agent", "a1", "agent:a1", True),
        ("agent", "a1", "client:a1", False),
        ("client", "alice", "", True),  # nothing named: the servicer scopes it to the caller
        ("service", "mesh", "client:bob", True),  # trusted, not strict
        ("admin", "root", "client:bob", True),
    ],
)
async def test_a_principal_field_must_name_the_caller(
    economy: Any, role: str, subject: str, owner: str, allowed: bool
) -> None:
    request = E.ListAccountsRequest(owner=owner)
    if allowed:
        await economy("ListAccounts", request, role, subject)
    else:
        with pytest.raises(NotOwner) as err:
            await economy("ListAccounts", request, role, subject)
        assert err.value.metadata == {"field": "owner"}


@pytest.mark.parametrize(
    ("who", "allowed"),
    [
        (Principal(Role.CLIENT, "alice"), True),
        (Principal(Role.CLIENT, "bob"), False),
        # A strict principal field binds the trusted too: only their own name passes.
        (Principal(Role.ADMIN, "root"), False),
        (Principal(Role.SERVICE, "mesh"), False),
    ],
)
async def test_a_principal_is_owned_by_that_principal_alone(who: Principal, allowed: bool) -> None:
    authorizer = Authorizer()  # no resolver needed: the value is the owner
    if allowed:
        await authorizer.require_owner(PRINCIPAL, "client:alice", who, field="owner")
    else:
        with pytest.raises(NotOwner, match="owner"):
            await authorizer.require_owner(PRINCIPAL, "client:alice", who, field="owner")


async def test_escrow_ownership_comes_from_its_resolver() -> None:
    async def escrow_owner(escrow_id: str) -> str | None:
        return {"esc-alice": "client:alice"}.get(escrow_id)

    run = economy_call(auth_pipeline(authorizer=Authorizer({ESCROW: escrow_owner})))
    await run("GetEscrow", E.GetEscrowRequest(escrow_id="esc-alice"), "client", "alice")
    for escrow_id in ("esc-alice", "esc-nobody"):
        with pytest.raises(NotOwner):
            await run("GetEscrow", E.GetEscrowRequest(escrow_id=escrow_id), "client", "bob")
    await run("GetEscrow", E.GetEscrowRequest(escrow_id="esc-nobody"), "service", "mesh")
    with pytest.raises(Internal, match="no owner lookup for OWNER_KIND_ESCROW"):
        await economy_call(auth_pipeline())(
            "GetEscrow", E.GetEscrowRequest(escrow_id="esc-alice"), "client", "alice"
        )


def test_policies_read_from_the_contract() -> None:
    execute = SERVICE.methods_by_name["ExecuteTask"]
    assert declared(execute) and declared(execute, mesh=True)
    assert policy_of(execute).roles == {Role.ADMIN, Role.SERVICE}
    assert policy_of(execute, mesh=True).roles == set(Role)
    assert policy_of(execute).method == EXECUTE
    vote = policy_of(ECONOMY.methods_by_name["CastVote"])
    assert [(o.path, o.kind, o.strict) for o in vote.owned] == [
        (("voter_account_id",), ACCOUNT, True)
    ]
    create = policy_of(ECONOMY.methods_by_name["CreateAccount"])
    assert create.admin_only == (("initial_balance",), ("initial_gov_balance",))
    assert create.service_only == (("owner",),)
    assert create.allows_role(Role.CLIENT) and not policy_of(
        ECONOMY.methods_by_name["OpenEscrow"]
    ).allows_role(Role.CLIENT)
    listing = policy_of(ECONOMY.methods_by_name["ListAccounts"])
    assert [(o.path, o.kind, o.strict) for o in listing.owned] == [(("owner",), PRINCIPAL, False)]
    escrow = policy_of(ECONOMY.methods_by_name["GetEscrow"])
    assert [(o.path, o.kind) for o in escrow.owned] == [(("escrow_id",), ESCROW)]
    assert len({ACCOUNT, AGENT, WORKFLOW, ESCROW, PRINCIPAL}) == 5


def test_field_value_follows_paths() -> None:
    req = A.StreamTaskResponse(status_update=A.TaskStatus(message="m"))
    assert field_value(req, ("status_update", "message")) == "m"
    assert field_value(A.StreamTaskResponse(), ("task", "task_id")) is None  # unset on the way
    assert field_value(req, ("final",)) is False


async def test_signature_checks_per_remote_peer_are_rate_limited() -> None:
    # Forged tokens each cost a signature check: a peer gets `burst` of them, then
    # RATE_LIMITED; a token verified before (cached) still passes from that peer.
    limiter = RateLimiter(RateLimit(rate_per_s=0.001, burst=3))
    good = bearer("service", "mesh")
    async with serve(Recorder(), auth_pipeline(verify_limiter=limiter)) as (_, channel):
        request = A.GetAgentCardRequest().SerializeToString()
        path = "/meshwright.agent.v1.AgentService/GetAgentCard"
        await channel.unary_unary(path)(request, metadata=good, timeout=5)  # 1: verified
        forged = [bearer("admin", f"x{i}")[0][1][:-4] + "AAAA" for i in range(3)]
        codes = []
        for header in forged:
            err = await raw_call(channel, request, [("authorization", header)], path=path)
            codes.append((err.code(), reason_of(err)))
        assert codes == [
            (Code.UNAUTHENTICATED, "TOKEN_INVALID"),
            (Code.UNAUTHENTICATED, "TOKEN_INVALID"),
            (Code.RESOURCE_EXHAUSTED, "RATE_LIMITED"),
        ]
        await channel.unary_unary(path)(request, metadata=good, timeout=5)  # cached: passes


def test_in_process_calls_spend_no_signature_budget() -> None:
    limiter = RateLimiter(RateLimit(rate_per_s=0.001, burst=1))
    pipeline = auth_pipeline(verify_limiter=limiter)
    for i in range(3):  # three fresh tokens in-process: never limited
        pipeline.authenticate(bearer("client", f"c{i}"))
