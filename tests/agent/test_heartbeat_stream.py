"""``HeartbeatStream`` and ``Registration`` over a real registry on a real port.

The registry is a ``Registry`` (memory backend) behind a ``MeshServer`` on port 0,
or, for an older registry that does not serve ``StreamHeartbeats`` (or one whose
stream ends at once), a plain grpc.aio server with hand-picked method handlers in
front of the same ``RegistryServicer``: a method it lacks answers UNIMPLEMENTED, as
gRPC does for any unknown method.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from meshwright.agent.heartbeats import DEFAULT_MAX_AGE_S, HeartbeatStream
from meshwright.agent.registration import Registration
from meshwright.mesh import LocalServiceClient, MeshServer, RemoteServiceClient
from meshwright.mesh._descriptors import methods_of
from meshwright.mesh.client import ServiceClient
from meshwright.mesh.context import CallContext
from meshwright.mesh.errors import (
    DeadlineExceeded,
    MeshError,
    Unavailable,
    Unimplemented,
    to_grpc_status,
)
from meshwright.mesh.pipeline import Endpoint, Pipeline
from meshwright.mesh.security import insecure_pipeline
from meshwright.registry import MemoryRegistryBackend, Registry, RegistryServicer
from meshwright.registry.errors import AgentNotFound, AgentStopped, LeaseMismatch
from meshwright.registry.v1 import registry_pb2 as R
from tests.conftest import eventually
from tests.registry.conftest import register_request

REGISTRY = R.DESCRIPTOR.services_by_name["RegistryService"]
TIMEOUT_S = 5.0
"""How long a beat that should be answered may take."""
TRANSPORTS = ["grpc", "local"]


def hb(agent_id: str, lease_id: str, *, load: int = 0) -> R.HeartbeatRequest:
    return R.HeartbeatRequest(agent_id=agent_id, lease_id=lease_id, load=load)


class Methods:
    """A pipeline observer counting calls (and stream messages) per method name."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def finished(
        self, call: CallContext | None, method: str, error: MeshError | None, seconds: float
    ) -> None:
        self.seen.append(method.rsplit("/", 1)[-1])

    def count(self, name: str) -> int:
        return self.seen.count(name)


class SlowServicer(RegistryServicer):
    """A registry that never answers a heartbeat of agent ``slow`` (until released)."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry)
        self.release = asyncio.Event()
        self.waiting = 0
        """Slow heartbeats waiting now."""

    async def StreamHeartbeats(self, request: R.StreamHeartbeatsRequest) -> Any:
        if request.heartbeat.agent_id == "slow":
            self.waiting += 1
            try:
                await self.release.wait()
            finally:
                self.waiting -= 1
        return await super().StreamHeartbeats(request)


@dataclass
class Served:
    """A registry served on a real port (again on the same port after ``restart``)."""

    registry: Registry
    servicer: RegistryServicer
    pipeline: Pipeline
    server: MeshServer
    channel: grpc.aio.Channel
    methods: Methods = field(default_factory=Methods)

    def client(self, transport: str = "grpc") -> ServiceClient:
        if transport == "grpc":
            return RemoteServiceClient(self.channel, REGISTRY)
        return LocalServiceClient(self.servicer, REGISTRY, self.pipeline)

    async def register(self, agent_id: str) -> str:
        reply = await self.client("local").call(
            "RegisterAgent", register_request(agent_id), timeout=TIMEOUT_S
        )
        return str(reply.agent.lease_id)

    async def stop_server(self) -> None:
        await self.server.stop(0)

    async def restart_server(self) -> None:
        server = MeshServer(pipeline=self.pipeline, port=self.server.port, grace_s=0)
        server.add(self.servicer, REGISTRY)
        await server.start()
        self.server = server


@contextlib.asynccontextmanager
async def served(
    servicer: Callable[[Registry], RegistryServicer] = RegistryServicer,
) -> AsyncIterator[Served]:
    registry = Registry(MemoryRegistryBackend(), default_lease_ttl_s=60.0)
    pipeline = insecure_pipeline()
    methods = Methods()
    pipeline.observers.append(methods)
    impl = servicer(registry)
    server = MeshServer(pipeline=pipeline, port=0, grace_s=0)
    server.add(impl, REGISTRY)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    s = Served(registry, impl, pipeline, server, channel, methods)
    try:
        yield s
    finally:
        if isinstance(s.servicer, SlowServicer):
            s.servicer.release.set()
        await channel.close()
        await registry.stop()
        await s.server.stop(0)


# -- HeartbeatStream -------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_beats_go_over_one_stream_and_errors_keep_it_open(transport: str) -> None:
    async with served() as s:
        lease = await s.register("a1")
        stream = HeartbeatStream(s.client(transport))
        assert (stream.opened, stream.is_open, stream.unsupported) == (0, False, False)
        try:
            for load in (1, 2, 3):
                reply = await stream.beat(hb("a1", lease, load=load), timeout=TIMEOUT_S)
                assert isinstance(reply, R.HeartbeatResponse)
                assert (reply.agent.agent_id, reply.agent.load) == ("a1", load)
            assert (stream.opened, stream.is_open) == (1, True)

            with pytest.raises(AgentNotFound) as missing:
                await stream.beat(hb("ghost", "l"), timeout=TIMEOUT_S)
            assert type(missing.value) is AgentNotFound
            assert missing.value.reason == "AGENT_NOT_FOUND"
            with pytest.raises(LeaseMismatch) as stale:
                await stream.beat(hb("a1", "stale"), timeout=TIMEOUT_S)
            assert stale.value.reason == "LEASE_MISMATCH"
            with pytest.raises(MeshError) as bad:
                await stream.beat(hb("a1", ""), timeout=TIMEOUT_S)
            assert bad.value.reason == "INVALID_ARGUMENT"
            assert [v.field for v in bad.value.violations] == ["heartbeat.lease_id"]
            assert stream.is_open

            reply = await stream.beat(hb("a1", lease, load=4), timeout=TIMEOUT_S)
            assert reply.agent.load == 4
            assert stream.opened == 1  # the error answers did not close it
            assert s.methods.count("StreamHeartbeats") == 7
            assert s.methods.count("Heartbeat") == 0
        finally:
            await stream.close()
        assert not stream.is_open
        await stream.close()  # twice is harmless
        # A closed stream opens again on the next beat.
        assert (await stream.beat(hb("a1", lease), timeout=TIMEOUT_S)).agent.agent_id == "a1"
        assert stream.opened == 2
        await stream.close()


async def test_a_stream_broken_by_a_restart_raises_then_opens_again() -> None:
    async with served() as s:
        lease = await s.register("a1")
        stream = HeartbeatStream(s.client())
        try:
            await stream.beat(hb("a1", lease), timeout=TIMEOUT_S)
            assert stream.opened == 1
            await s.stop_server()
            with pytest.raises(Unavailable):
                await stream.beat(hb("a1", lease), timeout=TIMEOUT_S)
            assert not stream.is_open and stream.opened == 1 and not stream.unsupported
            await s.restart_server()  # the same port, the same registry
            reply = await stream.beat(hb("a1", lease, load=9), timeout=TIMEOUT_S)
            assert reply.agent.load == 9
            assert (stream.opened, stream.is_open) == (2, True)
        finally:
            await stream.close()


async def test_a_beat_while_the_registry_is_down_raises_unavailable() -> None:
    async with served() as s:
        lease = await s.register("a1")
        await s.stop_server()
        stream = HeartbeatStream(s.client())
        try:
            with pytest.raises(Unavailable):
                await stream.beat(hb("a1", lease), timeout=TIMEOUT_S)
            assert (stream.opened, stream.is_open) == (1, False)
        finally:
            await stream.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_unanswered_beat_times_out_and_the_next_opens_a_new_stream(
    transport: str,
) -> None:
    async with served(SlowServicer) as s:
        lease = await s.register("a1")
        stream = HeartbeatStream(s.client(transport))
        try:
            await stream.beat(hb("a1", lease), timeout=TIMEOUT_S)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(DeadlineExceeded, match="no heartbeat answer within 0.2s"):
                await stream.beat(hb("slow", "l"), timeout=0.2)
            assert 0.2 <= loop.time() - started < 2.0
            assert (stream.is_open, stream.opened) == (False, 1)
            reply = await stream.beat(hb("a1", lease, load=2), timeout=TIMEOUT_S)
            assert reply.agent.load == 2
            assert (stream.is_open, stream.opened) == (True, 2)
        finally:
            await stream.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_cancelled_beat_forgets_the_stream_and_the_next_opens_another(
    transport: str,
) -> None:
    async with served(SlowServicer) as s:
        lease = await s.register("a1")
        stream = HeartbeatStream(s.client(transport))
        try:
            await stream.beat(hb("a1", lease), timeout=TIMEOUT_S)
            task = asyncio.create_task(stream.beat(hb("slow", "l"), timeout=TIMEOUT_S))
            slow = s.servicer
            assert isinstance(slow, SlowServicer)
            await eventually(lambda: slow.waiting == 1, timeout=TIMEOUT_S)  # under way
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (stream.is_open, stream.opened) == (False, 1)
            # The server side gave up on the abandoned message too.
            await eventually(lambda: slow.waiting == 0, timeout=TIMEOUT_S)
            reply = await stream.beat(hb("a1", lease, load=3), timeout=TIMEOUT_S)
            assert reply.agent.load == 3 and stream.opened == 2
        finally:
            await stream.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_concurrent_beats_each_get_their_own_answer(transport: str) -> None:
    async with served() as s:
        leases = {f"a{i}": await s.register(f"a{i}") for i in range(5)}
        stream = HeartbeatStream(s.client(transport))
        try:
            replies = await asyncio.gather(
                *(
                    stream.beat(hb(agent_id, lease, load=i), timeout=TIMEOUT_S)
                    for i, (agent_id, lease) in enumerate(leases.items())
                )
            )
            got = [(r.agent.agent_id, r.agent.load) for r in replies]
            assert got == [(f"a{i}", i) for i in range(5)]
            assert stream.opened == 1
        finally:
            await stream.close()


async def test_max_age_retires_an_old_stream() -> None:
    now = [0.0]
    async with served() as s:
        lease = await s.register("a1")
        stream = HeartbeatStream(s.client(), max_age_s=10.0, clock=lambda: now[0])
        try:
            await stream.beat(hb("a1", lease), timeout=TIMEOUT_S)
            now[0] = 9.99
            await stream.beat(hb("a1", lease), timeout=TIMEOUT_S)
            assert stream.opened == 1
            now[0] = 10.0  # exactly max_age_s old: retired
            await stream.beat(hb("a1", lease), timeout=TIMEOUT_S)
            assert (stream.opened, stream.is_open) == (2, True)
            now[0] = 19.99  # the new one's age counts from its own opening
            await stream.beat(hb("a1", lease), timeout=TIMEOUT_S)
            assert stream.opened == 2
            now[0] = 20.0
            await stream.beat(hb("a1", lease), timeout=TIMEOUT_S)
            assert stream.opened == 3
        finally:
            await stream.close()


@pytest.mark.parametrize("max_age_s", [0.0, -1.0, math.nan])
def test_max_age_must_be_positive(max_age_s: float) -> None:
    client: Any = object()
    with pytest.raises(ValueError, match="max_age_s must be > 0"):
        HeartbeatStream(client, max_age_s=max_age_s)


def test_a_tiny_max_age_is_accepted() -> None:
    client: Any = object()
    assert not HeartbeatStream(client, max_age_s=1e-9).is_open
    assert DEFAULT_MAX_AGE_S == 600.0


# -- an older registry: no StreamHeartbeats, or a stream that ends at once -------------------


@dataclass
class OldRegistry:
    """A grpc.aio server with only some RegistryService methods, over a real registry."""

    registry: Registry
    server: grpc.aio.Server
    channel: grpc.aio.Channel
    calls: list[str] = field(default_factory=list)

    def client(self) -> RemoteServiceClient:
        return RemoteServiceClient(self.channel, REGISTRY)


def _unary(
    pipeline: Pipeline, servicer: RegistryServicer, name: str, calls: list[str]
) -> grpc.RpcMethodHandler:
    info = methods_of(REGISTRY)[name]
    endpoint = Endpoint.of(info)

    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        calls.append(name)
        try:
            return await pipeline.unary(endpoint, getattr(servicer, name), request)
        except MeshError as err:
            await context.abort_with_status(to_grpc_status(err))

    return grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=info.request_type.FromString,
        response_serializer=info.response_type.SerializeToString,
    )


async def _ends_at_once(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
    """A StreamHeartbeats that reads one message and ends the stream (OK) unanswered."""
    await anext(aiter(requests))
    return
    yield  # an async generator: a stream of no answers


class _Unknown(grpc.GenericRpcHandler):
    """Consulted last: records each method nobody serves (gRPC then answers UNIMPLEMENTED)."""

    def __init__(self, calls: list[str]) -> None:
        self._calls = calls

    def service(self, handler_call_details: Any) -> None:
        self._calls.append("unknown:" + handler_call_details.method.rsplit("/", 1)[-1])
        return None


@contextlib.asynccontextmanager
async def old_registry(
    *, stream: Callable[..., AsyncIterator[Any]] | None = None
) -> AsyncIterator[OldRegistry]:
    registry = Registry(MemoryRegistryBackend(), default_lease_ttl_s=60.0)
    servicer = RegistryServicer(registry)
    pipeline = insecure_pipeline()
    calls: list[str] = []
    handlers = {
        name: _unary(pipeline, servicer, name, calls)
        for name in ("RegisterAgent", "Heartbeat", "DeregisterAgent", "GetAgent")
    }
    if stream is not None:

        async def counted(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            calls.append("StreamHeartbeats")
            async for item in stream(requests, context):
                yield item

        handlers["StreamHeartbeats"] = grpc.stream_stream_rpc_method_handler(
            counted,
            request_deserializer=R.StreamHeartbeatsRequest.FromString,
            response_serializer=R.StreamHeartbeatsResponse.SerializeToString,
        )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REGISTRY.full_name, handlers), _Unknown(calls))
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield OldRegistry(registry, server, channel, calls)
    finally:
        await channel.close()
        await registry.stop()
        await server.stop(0)


async def register_on(client: ServiceClient, agent_id: str) -> str:
    reply = await client.call("RegisterAgent", register_request(agent_id), timeout=TIMEOUT_S)
    return str(reply.agent.lease_id)


async def test_a_registry_without_the_stream_is_unsupported() -> None:
    async with old_registry() as old:
        client = old.client()
        lease = await register_on(client, "a1")
        stream = HeartbeatStream(client)
        try:
            with pytest.raises(Unimplemented):
                await stream.beat(hb("a1", lease), timeout=TIMEOUT_S)
            assert stream.unsupported and not stream.is_open and stream.opened == 1
            assert old.calls == ["RegisterAgent", "unknown:StreamHeartbeats"]
        finally:
            await stream.close()


async def test_a_stream_the_registry_ends_unanswered_raises_unavailable() -> None:
    async with old_registry(stream=_ends_at_once) as old:
        client = old.client()
        lease = await register_on(client, "a1")
        stream = HeartbeatStream(client)
        try:
            with pytest.raises(Unavailable, match="the registry ended the heartbeat stream"):
                await stream.beat(hb("a1", lease), timeout=TIMEOUT_S)
            assert (stream.is_open, stream.unsupported) == (False, False)
            with pytest.raises(Unavailable):
                await stream.beat(hb("a1", lease), timeout=TIMEOUT_S)
            assert stream.opened == 2 and old.calls.count("StreamHeartbeats") == 2
        finally:
            await stream.close()


# -- Registration ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def registered(
    client: ServiceClient, agent_id: str = "a1", **options: Any
) -> AsyncIterator[Registration]:
    """A started Registration with a 1 s lease (a heartbeat every third of a second)."""
    registration = Registration(
        client, register_request(agent_id, ttl_s=1.0), load=lambda: 0, **options
    )
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await registration.start()
        yield registration
    finally:
        await registration.close()


async def at_least(what: Callable[[], int], n: int) -> None:
    await eventually(lambda: what() >= n, timeout=TIMEOUT_S)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_registration_heartbeats_over_the_stream(transport: str) -> None:
    async with served() as s, registered(s.client(transport)) as reg:
        assert reg.registrations == 1 and reg.streaming
        await at_least(lambda: reg.heartbeats, 3)
        assert reg.streaming
        assert s.methods.count("StreamHeartbeats") >= 3
        assert s.methods.count("Heartbeat") == 0


@pytest.mark.parametrize("forget", ["deregister", "register-again"])
async def test_registration_registers_again_when_the_stream_says_forgotten(forget: str) -> None:
    async with served() as s, registered(s.client()) as reg:
        await at_least(lambda: reg.heartbeats, 1)
        first_lease = reg.lease_id
        if forget == "deregister":  # the next beat answers AGENT_STOPPED
            await s.registry.deregister("a1")
        else:  # someone took the id: the next beat answers LEASE_MISMATCH
            await s.register("a1")
        await at_least(lambda: reg.registrations, 2)
        assert reg.lease_id and reg.lease_id != first_lease
        beats = reg.heartbeats
        await at_least(lambda: reg.heartbeats, beats + 2)
        assert reg.streaming
        assert s.methods.count("Heartbeat") == 0  # every heartbeat went over a stream
        agent = await s.registry.get_agent("a1")
        assert agent.lease_id == reg.lease_id


def test_a_stopped_agent_is_a_forgotten_one() -> None:
    # What the test above relies on: AGENT_STOPPED is a NotFound (register again).
    assert issubclass(AgentStopped, AgentNotFound)


async def test_registration_without_stream_heartbeats_by_calls() -> None:
    async with served() as s, registered(s.client(), stream=False) as reg:
        assert not reg.streaming
        await at_least(lambda: reg.heartbeats, 3)
        assert s.methods.count("StreamHeartbeats") == 0
        assert s.methods.count("Heartbeat") >= 3


async def test_registration_over_a_client_without_exchange_heartbeats_by_calls() -> None:
    class UnaryOnly:
        """A registry client that can only call (an older client)."""

        def __init__(self, inner: ServiceClient) -> None:
            self.call: Callable[..., Awaitable[Any]] = inner.call
            self.stream = inner.stream

    async with served() as s:
        client: Any = UnaryOnly(s.client())
        async with registered(client) as reg:
            assert not reg.streaming
            await at_least(lambda: reg.heartbeats, 2)
            assert s.methods.count("StreamHeartbeats") == 0


async def test_registration_falls_back_to_calls_for_good_on_unimplemented() -> None:
    async with old_registry() as old, registered(old.client()) as reg:
        await at_least(lambda: reg.heartbeats, 4)
        assert not reg.streaming
        # The registry was asked for the stream once; every heartbeat went as a call.
        assert old.calls.count("unknown:StreamHeartbeats") == 1
        assert old.calls.count("Heartbeat") - reg.heartbeats in (0, 1)  # (0, 1): one under way


async def test_registration_sends_a_beat_as_a_call_when_the_stream_breaks() -> None:
    async with old_registry(stream=_ends_at_once) as old, registered(old.client()) as reg:
        await at_least(lambda: reg.heartbeats, 3)
        # Each beat tried a fresh stream, found it ended (Unavailable), and went as a call.
        assert reg.streaming and reg.registrations == 1
        beats = reg.heartbeats
        assert old.calls.count("Heartbeat") - beats in (0, 1)  # (0, 1): one under way
        assert old.calls.count("StreamHeartbeats") - beats in (0, 1)
        assert "unknown:StreamHeartbeats" not in old.calls
