"""Bidirectional streams through the one pipeline: ``StreamHeartbeats`` end to end.

A real ``Registry`` (memory backend) behind a real ``MeshServer`` on port 0, called
over gRPC (``RemoteServiceClient``) and in-process (``LocalServiceClient`` over the
same pipeline): one answer per message in order, per-message errors with their
``google.rpc.Status`` details, authentication at open and again per message, rate
limits and input limits per message, the stream's deadline, what ``service_handler``
refuses to serve, observers, and ``BalancedClient.exchange``'s breaker book-keeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import types
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from meshwright.mesh import LocalServiceClient, MeshServer, RemoteServiceClient
from meshwright.mesh.auth import TokenVerifier
from meshwright.mesh.balancer import BalancedClient, StaticEndpoints
from meshwright.mesh.breaker import BreakerState
from meshwright.mesh.client import ServiceClient
from meshwright.mesh.context import CallContext
from meshwright.mesh.errors import (
    DeadlineExceeded,
    MeshError,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from meshwright.mesh.limits import InputLimits, RateLimit, RateLimiter
from meshwright.mesh.pipeline import Pipeline
from meshwright.mesh.security import insecure_pipeline
from meshwright.mesh.server import service_handler
from meshwright.mesh.v1 import policy_pb2
from meshwright.registry import MemoryRegistryBackend, Registry, RegistryServicer
from meshwright.registry.v1 import registry_pb2 as R
from tests.conftest import eventually, free_port
from tests.mesh.test_balancer import RETRY, Cluster, RecordingPool, Replica
from tests.registry.conftest import register_request
from tests.support_auth import test_keys

REGISTRY = R.DESCRIPTOR.services_by_name["RegistryService"]
METHOD = "StreamHeartbeats"
PATH = f"/{REGISTRY.full_name}/{METHOD}"
Code = grpc.StatusCode
TRANSPORTS = ["grpc", "local"]
STEP_S = 5.0
"""The longest any one answer may take before a test gives up."""


# -- helpers ---------------------------------------------------------------------------------


class Feed:
    """The request side of a stream: messages the test sends one at a time, then a close."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()

    def send(self, *messages: Any) -> None:
        for m in messages:
            self._queue.put_nowait(m)

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[Any]:
        while (item := await self._queue.get()) is not None:
            yield item


def beat(
    agent_id: str, lease_id: str, *, load: int = 0, **fields: Any
) -> R.StreamHeartbeatsRequest:
    return R.StreamHeartbeatsRequest(
        heartbeat=R.HeartbeatRequest(agent_id=agent_id, lease_id=lease_id, load=load, **fields)
    )


async def answer(answers: AsyncIterator[Any]) -> Any:
    async with asyncio.timeout(STEP_S):
        return await anext(answers)


async def end(answers: AsyncIterator[Any]) -> None:
    aclose = getattr(answers, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(MeshError):
            await aclose()


@dataclass
class Failure:
    """The ``google.rpc.Status`` of one answer, unpacked."""

    code: grpc.StatusCode
    message: str
    reason: str
    metadata: dict[str, str]
    fields: list[str]
    retry_s: float | None


def failure(reply: R.StreamHeartbeatsResponse) -> Failure:
    assert reply.WhichOneof("result") == "error", reply
    status: status_pb2.Status = reply.error
    reason, metadata, fields, retry_s = "", {}, [], None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.domain == "meshwright.dev"
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_s = retry.retry_delay.ToNanoseconds() / 1e9
    code = next(c for c in Code if c.value[0] == status.code)
    return Failure(code, status.message, reason, metadata, fields, retry_s)


def renewed(reply: R.StreamHeartbeatsResponse) -> R.Agent:
    assert reply.WhichOneof("result") == "heartbeat", reply
    return reply.heartbeat.agent


class Clock:
    """Seconds that move only when a test says so (token expiry, rate-limit refill)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Stack:
    """One registry, served over gRPC and callable in-process through the same pipeline."""

    registry: Registry
    servicer: RegistryServicer
    pipeline: Pipeline
    server: MeshServer
    channel: grpc.aio.Channel

    def client(self, transport: str, token: str | None = None) -> ServiceClient:
        if transport == "grpc":
            return RemoteServiceClient(self.channel, REGISTRY, token=token)
        return LocalServiceClient(self.servicer, REGISTRY, self.pipeline, token=token)

    async def register(self, agent_id: str, token: str | None = None) -> str:
        """Register ``agent_id`` (in-process, as ``token``'s holder); its lease id."""
        reply = await self.client("local", token).call(
            "RegisterAgent", register_request(agent_id), timeout=STEP_S
        )
        return str(reply.agent.lease_id)


@contextlib.asynccontextmanager
async def stack(
    pipeline: Pipeline | None = None, servicer: type[RegistryServicer] = RegistryServicer
) -> AsyncIterator[Stack]:
    registry = Registry(MemoryRegistryBackend(), default_lease_ttl_s=60.0)
    pipeline = pipeline or insecure_pipeline()
    server = MeshServer(pipeline=pipeline, port=0, grace_s=0)
    served = servicer(registry)
    server.add(served, REGISTRY)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield Stack(registry, served, pipeline, server, channel)
    finally:
        await channel.close()
        await registry.stop()
        await server.stop(0)


# -- one stream, one answer per message, in order --------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_each_message_is_answered_in_order_and_an_error_does_not_end_the_stream(
    transport: str,
) -> None:
    async with stack() as s:
        lease = await s.register("a1")
        feed = Feed()
        answers = s.client(transport).exchange(METHOD, aiter(feed))
        try:
            # All three are sent before any answer is read: the answers still come in order.
            feed.send(
                beat("a1", lease, load=1), beat("a1", "not-the-lease"), beat("a1", lease, load=3)
            )
            first, second, third = [await answer(answers) for _ in range(3)]
            assert renewed(first).agent_id == "a1" and renewed(first).load == 1
            wrong = failure(second)
            assert (wrong.code, wrong.reason) == (Code.FAILED_PRECONDITION, "LEASE_MISMATCH")
            assert renewed(third).agent_id == "a1" and renewed(third).load == 3
            # One message at a time on the same stream, too.
            feed.send(beat("a1", lease, load=4))
            assert renewed(await answer(answers)).load == 4
            got = await s.registry.get_agent("a1")
            assert got.load == 4
        finally:
            await end(answers)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_closed_request_side_ends_the_stream_cleanly(transport: str) -> None:
    async with stack() as s:
        lease = await s.register("a1")
        feed = Feed()
        feed.send(beat("a1", lease), beat("a1", lease, load=2))
        feed.close()
        async with asyncio.timeout(STEP_S):
            got = [renewed(r).load async for r in s.client(transport).exchange(METHOD, aiter(feed))]
        assert got == [0, 2]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_field_violations_are_named_under_heartbeat(transport: str) -> None:
    async with stack() as s:
        lease = await s.register("a1")
        feed = Feed()
        answers = s.client(transport).exchange(METHOD, aiter(feed))
        try:
            feed.send(R.StreamHeartbeatsRequest())
            missing = failure(await answer(answers))
            assert (missing.code, missing.reason) == (Code.INVALID_ARGUMENT, "INVALID_ARGUMENT")
            assert missing.fields == ["heartbeat"]

            feed.send(beat("", lease))
            no_id = failure(await answer(answers))
            assert (no_id.code, no_id.reason) == (Code.INVALID_ARGUMENT, "INVALID_ARGUMENT")
            assert no_id.fields == ["heartbeat.agent_id"]

            feed.send(beat("a1", "", load=-1))
            several = failure(await answer(answers))
            assert several.code == Code.INVALID_ARGUMENT
            assert several.fields == ["heartbeat.lease_id", "heartbeat.load"]

            feed.send(beat("a1", lease, load=5))
            assert renewed(await answer(answers)).load == 5
        finally:
            await end(answers)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_input_limits_apply_to_each_message(transport: str) -> None:
    async with stack(
        Pipeline(verifier=None, limits=InputLimits(string_overrides={"error": 8}))
    ) as s:
        lease = await s.register("a1")
        feed = Feed()
        answers = s.client(transport).exchange(METHOD, aiter(feed))
        try:
            feed.send(beat("a1", lease, error="x" * 9), beat("a1", lease, error="x" * 8))
            too_long = failure(await answer(answers))
            assert too_long.code == Code.INVALID_ARGUMENT
            # The pipeline's bound (8), named by its path from the stream's message.
            assert too_long.fields == ["heartbeat.error"] and "8" in too_long.message
            assert renewed(await answer(answers)).state_reason == "x" * 8
        finally:
            await end(answers)


class CrashingServicer(RegistryServicer):
    """A registry whose Heartbeat has a bug for one agent id."""

    async def Heartbeat(self, request: R.HeartbeatRequest) -> R.HeartbeatResponse:
        if request.agent_id == "crash":
            raise RuntimeError("secret detail of a bug")
        return await super().Heartbeat(request)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_bug_in_one_message_is_internal_for_it_alone(transport: str) -> None:
    async with stack(servicer=CrashingServicer) as s:
        lease = await s.register("a1")
        feed = Feed()
        answers = s.client(transport).exchange(METHOD, aiter(feed))
        try:
            feed.send(beat("crash", "l"), beat("a1", lease))
            bug = failure(await answer(answers))
            assert (bug.code, bug.reason, bug.message) == (
                Code.INTERNAL,
                "INTERNAL",
                "internal error",
            )
            assert renewed(await answer(answers)).agent_id == "a1"
        finally:
            await end(answers)


async def test_undecodable_bytes_are_answered_as_that_message_and_the_stream_goes_on() -> None:
    async with stack() as s:
        lease = await s.register("a1")
        call = s.channel.stream_stream(PATH)(timeout=STEP_S)  # bytes in, bytes out
        try:
            await call.write(b"\xff\xff")
            bad = failure(R.StreamHeartbeatsResponse.FromString(await call.read()))
            assert (bad.code, bad.reason) == (Code.INVALID_ARGUMENT, "REQUEST_UNDECODABLE")
            assert "meshwright.registry.v1.StreamHeartbeatsRequest" in bad.message
            await call.write(beat("a1", lease, load=7).SerializeToString())
            good = R.StreamHeartbeatsResponse.FromString(await call.read())
            assert renewed(good).load == 7
            await call.done_writing()
            assert await call.read() is grpc.aio.EOF
            assert await call.code() == Code.OK
        finally:
            call.cancel()


# -- authentication and ownership ------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_token_fails_the_stream_at_open_before_anything_is_sent(transport: str) -> None:
    async with stack(Pipeline(verifier=test_keys().verifier())) as s:
        feed = Feed()  # nothing is ever sent
        answers = s.client(transport).exchange(METHOD, aiter(feed))
        with pytest.raises(Unauthenticated) as err:
            await answer(answers)
        assert err.value.reason == "TOKEN_MISSING"


async def test_no_token_aborts_the_grpc_call_unauthenticated() -> None:
    async with stack(Pipeline(verifier=test_keys().verifier())) as s:
        call = s.channel.stream_stream(PATH)(timeout=STEP_S)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call.read()
            assert err.value.code() == Code.UNAUTHENTICATED
            status = rpc_status.from_call(err.value)
            assert status is not None
            assert failure(R.StreamHeartbeatsResponse(error=status)).reason == "TOKEN_MISSING"
        finally:
            call.cancel()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_agent_beating_for_another_is_refused_per_message(transport: str) -> None:
    keys = test_keys()
    async with stack(Pipeline(verifier=keys.verifier())) as s:
        token_a, token_b = keys.token("agent", "a"), keys.token("agent", "b")
        lease_a = await s.register("a", token_a)
        lease_b = await s.register("b", token_b)
        feed = Feed()
        answers = s.client(transport, token_a).exchange(METHOD, aiter(feed))
        try:
            feed.send(beat("b", lease_b), beat("a", lease_a, load=2))
            refused = failure(await answer(answers))
            assert (refused.code, refused.reason) == (Code.PERMISSION_DENIED, "NOT_OWNER")
            assert refused.metadata.get("field") == "heartbeat.agent_id"
            assert renewed(await answer(answers)).load == 2
            assert (await s.registry.get_agent("b")).load == 0  # b's lease untouched
        finally:
            await end(answers)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_stream_ends_unauthenticated_on_the_first_message_after_expiry(
    transport: str,
) -> None:
    keys = test_keys()
    # The verifier's clock decides expiry; tokens carry wall-clock iat/exp, so start there
    # (a second ahead: iat is rounded down).
    clock = Clock(time.time() + 1.0)
    verifier = TokenVerifier(keys.public_pem, algorithms=("ES256",), leeway_s=0.0, clock=clock)
    async with stack(Pipeline(verifier=verifier)) as s:
        admin = keys.token("admin", "ops")
        lease = await s.register("a1", admin)
        token = keys.token("agent", "a1", ttl_s=60)
        feed = Feed()
        answers = s.client(transport, token).exchange(METHOD, aiter(feed))
        try:
            feed.send(beat("a1", lease))
            assert renewed(await answer(answers)).agent_id == "a1"
            clock.now += 30  # still valid (and cached)
            feed.send(beat("a1", lease, load=1))
            assert renewed(await answer(answers)).load == 1
            clock.now += 31  # past exp: the next message ends the stream
            feed.send(beat("a1", lease, load=2))
            with pytest.raises(Unauthenticated) as err:
                await answer(answers)
            assert err.value.reason == "TOKEN_EXPIRED"
            assert (await s.registry.get_agent("a1")).load == 1  # that message was not applied
        finally:
            await end(answers)


# -- rate limit, deadline --------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_rate_limit_is_spent_and_answered_per_message(transport: str) -> None:
    keys = test_keys()
    clock = Clock(100.0)
    limiter = RateLimiter(RateLimit(rate_per_s=1.0, burst=2), clock=clock)
    async with stack(Pipeline(verifier=keys.verifier(), limiter=limiter)) as s:
        token = keys.token("agent", "a1")
        lease = await s.register("a1", token)  # spends one of the two
        clock.now += 1.0  # refilled: two again
        feed = Feed()
        answers = s.client(transport, token).exchange(METHOD, aiter(feed))
        try:
            # Opening the stream spends nothing: exactly `burst` messages pass.
            feed.send(
                beat("a1", lease, load=1), beat("a1", lease, load=2), beat("a1", lease, load=3)
            )
            assert renewed(await answer(answers)).load == 1
            assert renewed(await answer(answers)).load == 2
            limited = failure(await answer(answers))
            assert (limited.code, limited.reason) == (Code.RESOURCE_EXHAUSTED, "RATE_LIMITED")
            assert limited.retry_s is not None and math.isclose(limited.retry_s, 1.0, rel_tol=1e-3)
            clock.now += 1.0  # one more message's worth
            feed.send(beat("a1", lease, load=4), beat("a1", lease, load=5))
            assert renewed(await answer(answers)).load == 4
            assert failure(await answer(answers)).reason == "RATE_LIMITED"
        finally:
            await end(answers)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_timeout_bounds_the_whole_stream(transport: str) -> None:
    async with stack() as s:
        lease = await s.register("a1")
        feed = Feed()
        answers = s.client(transport).exchange(METHOD, aiter(feed), timeout=0.3)
        try:
            feed.send(beat("a1", lease))
            assert renewed(await answer(answers)).agent_id == "a1"
            await asyncio.sleep(0.4)
            feed.send(beat("a1", lease))
            with pytest.raises(DeadlineExceeded):
                await answer(answers)
        finally:
            await end(answers)


@pytest.mark.parametrize("transport", ["grpc", "local"])
async def test_an_idle_stream_ends_at_its_deadline(transport: str) -> None:
    async with stack() as s:
        feed = Feed()  # nothing is sent: the reader waits for an answer that never comes
        answers = s.client(transport).exchange(METHOD, aiter(feed), timeout=0.3)
        try:
            with pytest.raises(DeadlineExceeded):
                async with asyncio.timeout(2.0):  # TimeoutError, not DeadlineExceeded, if not
                    await anext(answers)
        finally:
            await end(answers)


# -- observers -------------------------------------------------------------------------------


class Seen:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, CallContext | None]] = []

    def finished(
        self, call: CallContext | None, method: str, error: MeshError | None, seconds: float
    ) -> None:
        assert seconds >= 0
        self.calls.append((method, None if error is None else error.reason, call))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_observers_are_told_once_per_message(transport: str) -> None:
    async with stack() as s:
        lease = await s.register("a1")
        seen = Seen()
        s.pipeline.observers.append(seen)
        feed = Feed()
        answers = s.client(transport).exchange(METHOD, aiter(feed))
        try:
            feed.send(beat("a1", lease), beat("a1", "stale"), beat("a1", lease))
            for _ in range(3):
                await answer(answers)
            assert [(m, r) for m, r, _ in seen.calls] == [
                (PATH, None),
                (PATH, "LEASE_MISMATCH"),
                (PATH, None),
            ]
            assert all(c is not None and c.method == PATH for _, _, c in seen.calls)
        finally:
            await end(answers)


# -- what service_handler serves -------------------------------------------------------------


def odd_services() -> dict[str, Any]:
    """Services in a fresh descriptor pool: one method each, of the kinds to check."""
    pool = descriptor_pool.DescriptorPool()
    for file in (descriptor_pb2, any_pb2, status_pb2, policy_pb2):
        pool.AddSerializedFile(file.DESCRIPTOR.serialized_pb)
    f = descriptor_pb2.FileDescriptorProto(
        name="odd/v1/odd.proto",
        package="odd.v1",
        syntax="proto3",
        dependency=["google/rpc/status.proto", "meshwright/mesh/v1/policy.proto"],
    )
    T = descriptor_pb2.FieldDescriptorProto

    def msg(name: str, *fields: tuple[str, Any, str]) -> None:
        m = f.message_type.add(name=name)
        for number, (field_name, kind, type_name) in enumerate(fields, start=1):
            fd = m.field.add(name=field_name, number=number, label=T.LABEL_OPTIONAL, type=kind)
            if type_name:
                fd.type_name = type_name

    msg("Req", ("x", T.TYPE_STRING, ""))
    msg("Answer", ("y", T.TYPE_STRING, ""), ("error", T.TYPE_MESSAGE, ".google.rpc.Status"))
    msg("NoError", ("y", T.TYPE_STRING, ""))
    msg("TextError", ("y", T.TYPE_STRING, ""), ("error", T.TYPE_STRING, ""))
    kinds = {
        "Upload": ("Answer", True, False),  # client streaming only
        "Download": ("Answer", False, True),  # server streaming: fine
        "Chat": ("NoError", True, True),  # bidi, no error field
        "Talk": ("TextError", True, True),  # bidi, `error` not a google.rpc.Status
        "Beat": ("Answer", True, True),  # bidi with a google.rpc.Status error: fine
    }
    for name, (output, client_streaming, server_streaming) in kinds.items():
        svc = f.service.add(name=f"{name}Service")
        method = svc.method.add(
            name=name,
            input_type=".odd.v1.Req",
            output_type=f".odd.v1.{output}",
            client_streaming=client_streaming,
            server_streaming=server_streaming,
        )
        # A served method must declare who may call it (else it is refused for that).
        access: Any = policy_pb2.access
        method.options.Extensions[access].roles.append(policy_pb2.ROLE_ADMIN)
    pool.Add(f)
    out = {name: pool.FindServiceByName(f"odd.v1.{name}Service") for name in kinds}
    for name in ("Req", "Answer"):  # the classes build (what methods_of needs)
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"odd.v1.{name}"))
    return out


@pytest.mark.parametrize("name", ["Upload", "Chat", "Talk"])
def test_service_handler_refuses_streams_it_cannot_answer_per_message(name: str) -> None:
    service = odd_services()[name]

    async def handler(request: Any) -> Any:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match=f"/odd.v1.{name}Service/{name}: only bidirectional"):
        service_handler(types.SimpleNamespace(**{name: handler}), service, insecure_pipeline())


@pytest.mark.parametrize("name", ["Download", "Beat"])
def test_service_handler_serves_server_streams_and_answering_bidi_streams(name: str) -> None:
    service = odd_services()[name]

    async def handler(request: Any) -> Any:
        raise AssertionError("never called")

    got = service_handler(types.SimpleNamespace(**{name: handler}), service, insecure_pipeline())
    assert isinstance(got, grpc.GenericRpcHandler)


# -- method kinds on every client ------------------------------------------------------------


async def test_clients_refuse_a_method_of_the_wrong_kind() -> None:
    async with stack() as s:
        remote = s.client("grpc")
        local = s.client("local")
        feed = Feed()
        with pytest.raises(NotFound, match="has no bidirectional method Heartbeat"):
            await answer(remote.exchange("Heartbeat", aiter(feed)))
        with pytest.raises(NotFound, match="has no bidirectional method Nope"):
            await answer(remote.exchange("Nope", aiter(feed)))
        with pytest.raises(NotFound, match="has no streaming method StreamHeartbeats"):
            await answer(remote.stream(METHOD, R.StreamHeartbeatsRequest()))
        with pytest.raises(NotFound, match="has no unary method StreamHeartbeats"):
            await remote.call(METHOD, R.StreamHeartbeatsRequest())

        with pytest.raises(NotFound, match=r"\.Heartbeat is a unary method, not bidirectional"):
            await answer(local.exchange("Heartbeat", aiter(feed)))
        with pytest.raises(NotFound, match=r"\.WatchAgents is a streaming method, not bidir"):
            await answer(local.exchange("WatchAgents", aiter(feed)))
        with pytest.raises(NotFound, match=r"\.StreamHeartbeats is a bidirectional method, not un"):
            await local.call(METHOD, R.StreamHeartbeatsRequest())
        with pytest.raises(NotFound, match=r"\.StreamHeartbeats is a bidirectional method, not st"):
            await answer(local.stream(METHOD, R.StreamHeartbeatsRequest()))


# -- BalancedClient.exchange -----------------------------------------------------------------


class HeartbeatReplica(Replica):
    """A scripted replica that also answers StreamHeartbeats (each message, naming itself)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.beats = 0

    async def StreamHeartbeats(self, request: R.StreamHeartbeatsRequest) -> Any:
        self.beats += 1
        await self._enter(hold=False)
        agent = R.Agent(agent_id=request.heartbeat.agent_id, endpoint=self.name)
        return R.StreamHeartbeatsResponse(heartbeat=R.HeartbeatResponse(agent=agent))


class BeatCluster(Cluster):
    replica_type = HeartbeatReplica

    def beats_of(self, address: str) -> int:
        replica = self.replicas[address]
        assert isinstance(replica, HeartbeatReplica)
        return replica.beats

    def balanced(self, endpoints: list[str], **options: Any) -> BalancedClient:
        return self.client(StaticEndpoints(endpoints), threshold=3, **options)


@pytest.fixture
async def beats() -> AsyncIterator[BeatCluster]:
    c = BeatCluster(insecure_pipeline(), RecordingPool(retry=RETRY))
    try:
        yield c
    finally:
        await c.stop()


def stats(client: BalancedClient, address: str) -> Any:
    return client.endpoint_stats()[address]


async def test_balanced_exchange_refuses_other_methods_before_any_pick(beats: BeatCluster) -> None:
    (a,) = await beats.start("a")
    client = beats.balanced([a])
    feed = Feed()
    for method in ("Heartbeat", "WatchAgents", "Nope"):
        with pytest.raises(NotFound, match=f"has no bidirectional method {method}"):
            await answer(client.exchange(method, aiter(feed)))
    with pytest.raises(NotFound, match="has no streaming method StreamHeartbeats"):
        await answer(client.stream(METHOD, R.StreamHeartbeatsRequest()))
    with pytest.raises(NotFound, match="has no unary method StreamHeartbeats"):
        await client.call(METHOD, R.StreamHeartbeatsRequest())
    assert stats(client, a).calls == 0 and beats.replicas[a].attempts == 0


async def fail_once(beats: BeatCluster, client: BalancedClient, address: str) -> None:
    """One unary call that counts against ``address`` (consecutive_failures 1)."""
    replica = beats.replicas[address]
    replica.fail_with = Unavailable("down")
    with pytest.raises(Unavailable):
        await client.call("GetAgent", R.GetAgentRequest(agent_id="x"))
    replica.fail_with = None
    assert stats(client, address).consecutive_failures == 1


async def test_balanced_exchange_delivers_answers_and_its_first_answer_is_a_success(
    beats: BeatCluster,
) -> None:
    (a,) = await beats.start("a")
    client = beats.balanced([a])
    await fail_once(beats, client, a)
    feed = Feed()
    answers = client.exchange(METHOD, aiter(feed))
    try:
        feed.send(beat("x1", "l"), beat("x2", "l"))
        first = renewed(await answer(answers))
        assert (first.agent_id, first.endpoint) == ("x1", "a")
        assert stats(client, a).consecutive_failures == 0
        assert stats(client, a).in_flight == 1  # the open stream
        assert renewed(await answer(answers)).agent_id == "x2"
        assert beats.beats_of(a) == 2
    finally:
        await end(answers)
    s = stats(client, a)
    assert (s.in_flight, s.calls, s.failures, s.state) == (0, 2, 1, BreakerState.CLOSED)


async def test_balanced_exchange_per_message_errors_show_the_replica_up(
    beats: BeatCluster,
) -> None:
    (a,) = await beats.start("a")
    client = beats.balanced([a])
    await fail_once(beats, client, a)
    beats.replicas[a].fail_with = Unavailable("this message's dependency is down")
    feed = Feed()
    answers = client.exchange(METHOD, aiter(feed))
    try:
        feed.send(beat("x1", "l"))
        # An answer (even one carrying UNAVAILABLE) came from a working replica.
        assert failure(await answer(answers)).code == Code.UNAVAILABLE
        assert stats(client, a).consecutive_failures == 0
    finally:
        await end(answers)


async def test_balanced_exchange_to_nobody_listening_counts_a_failure(beats: BeatCluster) -> None:
    dead = f"127.0.0.1:{free_port()}"
    client = beats.balanced([dead])
    feed = Feed()
    feed.send(beat("x1", "l"))
    with pytest.raises(Unavailable):
        await answer(client.exchange(METHOD, aiter(feed)))
    s = stats(client, dead)
    assert (s.calls, s.failures, s.consecutive_failures, s.in_flight) == (1, 1, 1, 0)


async def test_balanced_exchange_the_caller_stops_reading(beats: BeatCluster) -> None:
    (a,) = await beats.start("a")
    client = beats.balanced([a])
    feed = Feed()
    feed.send(beat("x1", "l"), beat("x2", "l"))
    answers = client.exchange(METHOD, aiter(feed))
    async for reply in answers:
        assert renewed(reply).agent_id == "x1"
        break
    await answers.aclose()  # type: ignore[attr-defined]
    s = stats(client, a)
    assert (s.in_flight, s.failures, s.consecutive_failures) == (0, 0, 0)


async def test_balanced_exchange_given_up_before_any_answer_judges_nothing(
    beats: BeatCluster,
) -> None:
    (a,) = await beats.start("a")
    client = beats.balanced([a], probes=1)
    await fail_once(beats, client, a)
    feed = Feed()  # nothing is sent: no answer comes
    answers = client.exchange(METHOD, aiter(feed))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await anext(answers)
    await end(answers)
    s = stats(client, a)
    # Neither reset by a success nor counted as another failure; the permit is back.
    assert (s.in_flight, s.failures, s.consecutive_failures) == (0, 1, 1)
    assert s.state is BreakerState.CLOSED


async def test_balanced_exchange_stays_on_the_endpoint_it_opened_on(beats: BeatCluster) -> None:
    a, b = await beats.start("a", "b")
    client = beats.balanced([a, b])
    feed = Feed()
    answers = client.exchange(METHOD, aiter(feed))
    try:
        feed.send(beat("x0", "l"))
        where = renewed(await answer(answers)).endpoint
        for i in range(1, 6):
            feed.send(beat(f"x{i}", "l"))
            assert renewed(await answer(answers)).endpoint == where
        counts = sorted(beats.beats_of(x) for x in (a, b))
        assert counts == [0, 6]
    finally:
        await end(answers)
    await eventually(lambda: all(stats(client, x).in_flight == 0 for x in (a, b)), timeout=2)
