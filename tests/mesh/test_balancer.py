"""BalancedClient over real replicas: picking, breakers, endpoint changes, deadlines, metadata.

Each replica is a real MeshServer (port 0) serving a scripted RegistryService
(GetAgent, WatchAgents) that a test makes fail, hold its calls, or never
answer; the channels come from a real ChannelPool with a fast retry policy.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from meshwright.mesh import MeshServer
from meshwright.mesh.auth import Role
from meshwright.mesh.balancer import (
    BREAKER_OUTCOMES,
    BalancedClient,
    BalancerOptions,
    Endpoints,
    NoHealthyEndpoint,
    Outcome,
    StaticEndpoints,
    outcome_of,
)
from meshwright.mesh.breaker import BreakerPolicy, BreakerState
from meshwright.mesh.client import ChannelPool, RemoteServiceClient, RetryPolicy
from meshwright.mesh.context import CallContext, current_call, serving
from meshwright.mesh.errors import (
    GRPC_CODES,
    Cancelled,
    DeadlineExceeded,
    InvalidArgument,
    MeshError,
    NotFound,
    PermissionDenied,
    Unavailable,
    Unimplemented,
)
from meshwright.mesh.pipeline import Pipeline
from meshwright.mesh.security import insecure_pipeline
from meshwright.registry.v1 import registry_pb2
from tests.conftest import eventually, free_port
from tests.support_auth import test_keys

R = registry_pb2
REGISTRY = R.DESCRIPTOR.services_by_name["RegistryService"]
RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.01)
"""The channel's own retries: 3 attempts at most 10 ms apart (tests count them)."""


class Replica:
    """A scripted RegistryService: answers GetAgent/WatchAgents, fails or holds on command."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.attempts = 0
        """Calls that reached this replica (the channel's retries included)."""
        self.fail_with: MeshError | None = None
        self.gate: asyncio.Event | None = None
        """When set, calls wait for it before answering."""
        self.waiting = 0
        self.seen: list[CallContext] = []

    async def GetAgent(self, request: R.GetAgentRequest) -> R.GetAgentResponse:
        await self._enter()
        return R.GetAgentResponse(agent=R.Agent(agent_id=request.agent_id, endpoint=self.name))

    async def WatchAgents(self, request: R.WatchAgentsRequest) -> AsyncIterator[Any]:
        await self._enter(hold=False)
        for i in range(3):
            yield R.WatchAgentsResponse(agent=R.Agent(agent_id=f"{self.name}-{i}"))
        await self._hold()

    async def _enter(self, *, hold: bool = True) -> None:
        self.attempts += 1
        call = current_call()
        assert call is not None
        self.seen.append(call)
        if self.fail_with is not None:
            raise self.fail_with
        if hold:
            await self._hold()

    async def _hold(self) -> None:
        if self.gate is None:
            return
        self.waiting += 1
        try:
            await self.gate.wait()
        finally:
            self.waiting -= 1

    def __getattr__(self, name: str) -> Callable[[Any], Awaitable[Any]]:
        if not name[:1].isupper():
            raise AttributeError(name)

        async def unimplemented(request: Any) -> Any:
            raise Unimplemented(f"{name} is not scripted")

        return unimplemented


class RecordingPool(ChannelPool):
    """A real pool that remembers which channels were discarded."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.discarded: list[str] = []

    async def discard(self, target: str) -> None:
        self.discarded.append(target)
        await super().discard(target)


class Clock:
    """Monotonic seconds for the breakers, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Cluster:
    """Replicas on real ports, one pool, and the clients a test made (all stopped at the end)."""

    replica_type: type[Replica] = Replica
    """What ``start`` serves (a subclass may serve another replica)."""

    def __init__(self, pipeline: Pipeline, pool: RecordingPool) -> None:
        self.pipeline = pipeline
        self.pool = pool
        self.replicas: dict[str, Replica] = {}
        self.servers: list[MeshServer] = []
        self.clients: list[BalancedClient] = []
        self.clock = Clock()

    async def start(self, *names: str) -> list[str]:
        """Start a replica per name; their addresses."""
        out = []
        for name in names:
            replica = self.replica_type(name)
            server = MeshServer(pipeline=self.pipeline, port=0, grace_s=0)
            server.add(replica, REGISTRY)
            await server.start()
            self.servers.append(server)
            self.replicas[server.address] = replica
            out.append(server.address)
        return out

    def client(
        self,
        endpoints: Endpoints,
        *,
        seed: int = 7,
        threshold: int = 3,
        open_s: float = 10.0,
        probes: int = 1,
        **options: Any,
    ) -> BalancedClient:
        breaker = BreakerPolicy(
            failure_threshold=threshold, open_s=open_s, half_open_max_probes=probes
        )
        client = BalancedClient(
            REGISTRY,
            endpoints,
            self.pool,
            BalancerOptions(breaker=breaker, **options),
            clock=self.clock,
            rng=random.Random(seed),
        )
        self.clients.append(client)
        return client

    async def stop(self) -> None:
        for replica in self.replicas.values():
            if replica.gate is not None:
                replica.gate.set()
        for client in self.clients:
            await client.close()
        await self.pool.close()
        for server in self.servers:
            await server.stop(0)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster(insecure_pipeline(), RecordingPool(retry=RETRY))
    try:
        yield c
    finally:
        await c.stop()


async def get(client: Any, **options: Any) -> Any:
    return await client.call("GetAgent", R.GetAgentRequest(agent_id="a"), **options)


async def outcome(client: BalancedClient) -> MeshError | None:
    try:
        await get(client)
    except MeshError as err:
        return err
    return None


def stats(client: BalancedClient, address: str) -> Any:
    return client.endpoint_stats()[address]


# -- the breaker table ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls", sorted(GRPC_CODES, key=lambda c: c.__name__), ids=lambda c: c.__name__
)
def test_only_unavailable_and_deadline_count_against_an_endpoint(cls: type[MeshError]) -> None:
    expected = {Unavailable: Outcome.FAILURE, DeadlineExceeded: Outcome.FAILURE}.get(
        cls, Outcome.NEUTRAL if cls is Cancelled else Outcome.SUCCESS
    )
    assert outcome_of(cls("x")) is expected
    assert outcome_of(NoHealthyEndpoint("x")) is Outcome.FAILURE  # a subclass, same code
    assert set(BREAKER_OUTCOMES) == {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
    }


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
@pytest.mark.parametrize("name", ["default_timeout_s", "default_stream_timeout_s"])
def test_options_out_of_range_are_refused(name: str, value: float) -> None:
    with pytest.raises(ValueError):
        BalancerOptions(**{name: value})


def test_option_defaults() -> None:
    options = BalancerOptions()
    assert options.default_timeout_s == 10.0 and options.default_stream_timeout_s is None
    assert options.breaker == BreakerPolicy()
    assert BalancerOptions(default_timeout_s=None).default_timeout_s is None


# -- StaticEndpoints -----------------------------------------------------------------------


def test_static_endpoints_notify_on_change_only() -> None:
    source = StaticEndpoints(["a:1", "b:2", "a:1"])
    assert source.current() == ("a:1", "b:2")
    seen: list[tuple[str, ...]] = []

    def broken(endpoints: Any) -> None:
        raise RuntimeError("a broken listener")

    source.subscribe(broken)
    unsubscribe = source.subscribe(lambda e: seen.append(tuple(e)))
    source.update(["b:2", "a:1"])  # the same set
    assert seen == []
    source.update(["c:3"])
    assert seen == [("c:3",)] and source.current() == ("c:3",)
    unsubscribe()
    unsubscribe()  # twice is harmless
    source.update([])
    assert seen == [("c:3",)] and source.current() == ()


# -- picking -------------------------------------------------------------------------------


async def test_p2c_keeps_new_calls_off_the_loaded_endpoint(cluster: Cluster) -> None:
    a, b, c = await cluster.start("a", "b", "c")
    source = StaticEndpoints([a])
    client = cluster.client(source)
    held = cluster.replicas[a]
    held.gate = asyncio.Event()
    calls = [asyncio.create_task(get(client)) for _ in range(5)]
    await eventually(lambda: held.waiting == 5, timeout=5)
    assert stats(client, a).in_flight == 5

    source.update([a, b, c])
    for _ in range(30):
        reply = await get(client)
        assert reply.agent.endpoint in ("b", "c")
    # Every pair that drew a lost to the other: it got nothing new.
    assert held.attempts == 5
    got = (cluster.replicas[b].attempts, cluster.replicas[c].attempts)
    assert sum(got) == 30 and min(got) > 0, got
    assert (stats(client, b).calls, stats(client, c).calls) == got

    held.gate.set()
    await asyncio.gather(*calls)
    assert stats(client, a).in_flight == 0 and stats(client, a).calls == 5


async def test_a_failed_call_is_not_resent_and_the_next_goes_elsewhere(cluster: Cluster) -> None:
    a, b = await cluster.start("a", "b")
    client = cluster.client(StaticEndpoints([a, b]), threshold=1)
    cluster.replicas[a].fail_with = Unavailable("replica a is restarting")
    results = [await outcome(client) for _ in range(20)]
    failures = [r for r in results if r is not None]
    assert len(failures) == 1 and isinstance(failures[0], Unavailable)
    # The channel retried on a (RETRY: 3 attempts); the balancer sent it nowhere else.
    assert cluster.replicas[a].attempts == RETRY.max_attempts
    assert stats(client, a).calls == 1 and stats(client, a).failures == 1
    assert stats(client, a).state is BreakerState.OPEN and stats(client, a).times_opened == 1
    assert cluster.replicas[b].attempts == 19


async def test_the_breaker_opens_at_exactly_the_threshold(cluster: Cluster) -> None:
    (a,) = await cluster.start("a")
    client = cluster.client(StaticEndpoints([a]), threshold=3)
    replica = cluster.replicas[a]
    replica.fail_with = Unavailable("down")
    for n in (1, 2):  # threshold - 1: still called
        assert isinstance(await outcome(client), Unavailable)
        assert stats(client, a).state is BreakerState.CLOSED
        assert stats(client, a).consecutive_failures == n
    assert isinstance(await outcome(client), Unavailable)  # the threshold
    assert stats(client, a).state is BreakerState.OPEN
    attempts = replica.attempts
    with pytest.raises(NoHealthyEndpoint) as err:
        await get(client)
    assert replica.attempts == attempts  # nothing was sent
    assert err.value.reason == "NO_HEALTHY_ENDPOINT"
    assert REGISTRY.full_name in err.value.message


async def test_answers_of_a_working_replica_count_as_success(cluster: Cluster) -> None:
    (a,) = await cluster.start("a")
    client = cluster.client(StaticEndpoints([a]), threshold=2)
    replica = cluster.replicas[a]
    replica.fail_with = Unavailable("down")
    await outcome(client)
    for err in (NotFound("no agent a"), InvalidArgument("bad id"), PermissionDenied("no")):
        replica.fail_with = err
        assert type(await outcome(client)) is type(err)  # typed, as the server raised it
        assert stats(client, a).consecutive_failures == 0
    replica.fail_with = Unavailable("down")
    await outcome(client)
    replica.fail_with = Cancelled("the server gave up")  # says nothing: no reset
    assert isinstance(await outcome(client), Cancelled)
    assert stats(client, a).consecutive_failures == 1
    replica.fail_with = Unavailable("down")
    await outcome(client)
    assert stats(client, a).state is BreakerState.OPEN


async def test_all_endpoints_open_is_no_healthy_endpoint(cluster: Cluster) -> None:
    a, b = await cluster.start("a", "b")
    client = cluster.client(StaticEndpoints([a, b]), threshold=1)
    for replica in cluster.replicas.values():
        replica.fail_with = Unavailable("down")
    assert isinstance(await outcome(client), Unavailable)
    assert isinstance(await outcome(client), Unavailable)  # the other one: the first is open
    with pytest.raises(NoHealthyEndpoint) as err:
        await get(client)
    assert isinstance(err.value, Unavailable)
    assert err.value.metadata == {"service": REGISTRY.full_name, "endpoints": "2"}
    assert "all 2 behind open circuit breakers" in err.value.message
    assert [r.attempts for r in cluster.replicas.values()] == [RETRY.max_attempts] * 2


async def test_no_endpoint_at_all_is_no_healthy_endpoint(cluster: Cluster) -> None:
    client = cluster.client(StaticEndpoints([]))
    with pytest.raises(NoHealthyEndpoint) as err:
        await get(client)
    assert "none is known" in err.value.message
    assert client.endpoint_stats() == {}


# -- half-open -----------------------------------------------------------------------------


async def open_it(cluster: Cluster, client: BalancedClient, address: str) -> None:
    cluster.replicas[address].fail_with = Unavailable("down")
    while stats(client, address).state is not BreakerState.OPEN:
        await outcome(client)


async def test_half_open_lets_exactly_max_probes_through(cluster: Cluster) -> None:
    (a,) = await cluster.start("a")
    client = cluster.client(StaticEndpoints([a]), threshold=1, open_s=10, probes=2)
    await open_it(cluster, client, a)
    replica = cluster.replicas[a]
    cluster.clock.now += 9.999
    with pytest.raises(NoHealthyEndpoint):
        await get(client)
    cluster.clock.now += 0.001  # exactly open_s
    assert stats(client, a).state is BreakerState.HALF_OPEN
    replica.fail_with, replica.gate = None, asyncio.Event()
    probes = [asyncio.create_task(get(client)) for _ in range(2)]  # the limit
    await eventually(lambda: replica.waiting == 2, timeout=5)
    with pytest.raises(NoHealthyEndpoint):  # one past it
        await get(client)
    assert stats(client, a).in_flight == 2
    replica.gate.set()
    await asyncio.gather(*probes)
    assert stats(client, a).state is BreakerState.CLOSED  # recovered
    replica.gate = None
    assert (await get(client)).agent.endpoint == "a"


async def test_a_failed_probe_reopens_it_for_another_open_s(cluster: Cluster) -> None:
    (a,) = await cluster.start("a")
    client = cluster.client(StaticEndpoints([a]), threshold=1, open_s=10)
    await open_it(cluster, client, a)
    cluster.clock.now += 10
    assert isinstance(await outcome(client), Unavailable)  # the probe
    assert stats(client, a).state is BreakerState.OPEN and stats(client, a).times_opened == 2
    cluster.clock.now += 9.999
    with pytest.raises(NoHealthyEndpoint):
        await get(client)
    cluster.clock.now += 0.001
    cluster.replicas[a].fail_with = None
    assert await outcome(client) is None
    assert stats(client, a).state is BreakerState.CLOSED


async def test_a_probe_the_caller_cancels_frees_its_slot(cluster: Cluster) -> None:
    (a,) = await cluster.start("a")
    client = cluster.client(StaticEndpoints([a]), threshold=1, open_s=10, probes=1)
    await open_it(cluster, client, a)
    cluster.clock.now += 10
    replica = cluster.replicas[a]
    replica.fail_with, replica.gate = None, asyncio.Event()
    probe = asyncio.create_task(get(client))
    await eventually(lambda: replica.waiting == 1, timeout=5)
    with pytest.raises(NoHealthyEndpoint):
        await get(client)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert stats(client, a).state is BreakerState.HALF_OPEN  # judged nothing
    assert stats(client, a).in_flight == 0
    replica.gate = None
    assert await outcome(client) is None
    assert stats(client, a).state is BreakerState.CLOSED


async def test_while_one_is_open_the_healthy_one_takes_everything(cluster: Cluster) -> None:
    a, b = await cluster.start("a", "b")
    client = cluster.client(StaticEndpoints([a, b]), threshold=1, open_s=10)
    await open_it(cluster, client, a)
    before = cluster.replicas[a].attempts
    for _ in range(10):
        assert (await get(client)).agent.endpoint == "b"
    assert cluster.replicas[a].attempts == before
    cluster.clock.now += 10  # half-open: ties go either way, so a gets its probe
    cluster.replicas[a].fail_with = None
    for _ in range(20):
        assert await outcome(client) is None
        if stats(client, a).state is BreakerState.CLOSED:
            break
    assert stats(client, a).state is BreakerState.CLOSED


# -- the endpoint set changing -------------------------------------------------------------


async def test_a_removed_endpoint_has_its_channel_closed_after_its_calls(
    cluster: Cluster,
) -> None:
    a, b, c = await cluster.start("a", "b", "c")
    source = StaticEndpoints([a])
    client = cluster.client(source)
    replica = cluster.replicas[a]
    replica.gate = asyncio.Event()
    held = asyncio.create_task(get(client))
    await eventually(lambda: replica.waiting == 1, timeout=5)
    channel = cluster.pool.get(a)

    source.update([b])
    assert stats(client, a).leaving and stats(client, a).in_flight == 1
    assert cluster.pool.discarded == []  # its call still runs
    assert (await get(client)).agent.endpoint == "b"  # a leaving endpoint is not picked
    replica.gate.set()
    assert (await held).agent.endpoint == "a"
    await eventually(lambda: cluster.pool.discarded == [a], timeout=5)
    assert a not in client.endpoint_stats()
    with pytest.raises(grpc.aio.UsageError):  # closed
        await channel.unary_unary(f"/{REGISTRY.full_name}/GetAgent")(b"", timeout=1)

    source.update([b, c])
    source.update([b])  # c was never called: no channel of ours to close
    await client.close()
    assert cluster.pool.discarded == [a]


async def test_an_endpoint_back_before_its_calls_end_keeps_its_channel(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start("a", "b")
    source = StaticEndpoints([a])
    client = cluster.client(source)
    replica = cluster.replicas[a]
    replica.gate = asyncio.Event()
    held = asyncio.create_task(get(client))
    await eventually(lambda: replica.waiting == 1, timeout=5)
    source.update([b])
    source.update([a, b])
    assert not stats(client, a).leaving
    replica.gate.set()
    await held
    await client.close()
    assert cluster.pool.discarded == []
    assert stats(client, a).calls == 1  # the same book-keeping, not a fresh one


async def test_a_channel_another_pool_user_discarded_is_opened_again(cluster: Cluster) -> None:
    (a,) = await cluster.start("a")
    client = cluster.client(StaticEndpoints([a]))
    await get(client)
    await cluster.pool.discard(a)  # e.g. the dispatcher, or another balancer
    assert (await get(client)).agent.endpoint == "a"


async def test_close_stops_following_the_set(cluster: Cluster) -> None:
    a, b = await cluster.start("a", "b")
    source = StaticEndpoints([a])
    client = cluster.client(source)
    await client.close()
    source.update([b])
    assert set(client.endpoint_stats()) == {a}


class SilentEndpoints:
    """An Endpoints source that changes without telling anyone (breaks the contract)."""

    def __init__(self, endpoints: tuple[str, ...]) -> None:
        self.endpoints = endpoints

    def current(self) -> tuple[str, ...]:
        return self.endpoints

    def subscribe(self, listener: Callable[[Any], None]) -> Callable[[], None]:
        return lambda: None


async def test_a_source_that_changes_silently_is_still_followed(cluster: Cluster) -> None:
    a, b = await cluster.start("a", "b")
    source = SilentEndpoints((a,))
    client = cluster.client(source)
    assert (await get(client)).agent.endpoint == "a"
    source.endpoints = (b,)
    assert (await get(client)).agent.endpoint == "b"
    await eventually(lambda: cluster.pool.discarded == [a], timeout=5)


# -- deadlines -----------------------------------------------------------------------------


async def test_a_unary_call_gets_the_default_deadline(cluster: Cluster) -> None:
    (a,) = await cluster.start("a")
    client = cluster.client(StaticEndpoints([a]), default_timeout_s=0.3)
    replica = cluster.replicas[a]
    replica.gate = asyncio.Event()  # never answers
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await get(client)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 3.0, elapsed
    assert stats(client, a).failures == 1  # a deadline counts against the endpoint
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await get(client, timeout=0.05)  # the caller's own wins
    assert time.monotonic() - started < 0.3


async def test_the_server_sees_the_default_deadline(cluster: Cluster) -> None:
    (a,) = await cluster.start("a")
    client = cluster.client(StaticEndpoints([a]))  # 10 s unary, none for streams
    await get(client)
    remaining = cluster.replicas[a].seen[-1].time_remaining()
    assert remaining is not None and 1.0 < remaining <= 10.0
    items = [item async for item in client.stream("WatchAgents", R.WatchAgentsRequest())]
    assert len(items) == 3
    assert cluster.replicas[a].seen[-1].deadline is None


async def test_a_stream_gets_the_default_stream_deadline(cluster: Cluster) -> None:
    (a,) = await cluster.start("a")
    client = cluster.client(StaticEndpoints([a]), default_stream_timeout_s=0.3)
    cluster.replicas[a].gate = asyncio.Event()  # three items, then nothing
    items = []
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        async for item in client.stream("WatchAgents", R.WatchAgentsRequest()):
            items.append(item)
    assert len(items) == 3 and 0.3 <= time.monotonic() - started < 3.0
    # It answered before the deadline: the endpoint worked, the breaker says so.
    assert stats(client, a).failures == 0 and stats(client, a).in_flight == 0


# -- streams -------------------------------------------------------------------------------


async def test_streams_are_balanced_and_judged(cluster: Cluster) -> None:
    (a,) = await cluster.start("a")
    client = cluster.client(StaticEndpoints([a]), threshold=2)
    items = [i.agent.agent_id async for i in client.stream("WatchAgents", R.WatchAgentsRequest())]
    assert items == ["a-0", "a-1", "a-2"]
    cluster.replicas[a].fail_with = Unavailable("down")
    with pytest.raises(Unavailable):
        async for _ in client.stream("WatchAgents", R.WatchAgentsRequest()):
            pass
    assert stats(client, a).consecutive_failures == 1
    cluster.replicas[a].fail_with = None
    stream = client.stream("WatchAgents", R.WatchAgentsRequest())
    async for _ in stream:
        break  # the caller stops reading
    await stream.aclose()  # type: ignore[attr-defined]
    assert stats(client, a).in_flight == 0
    assert stats(client, a).consecutive_failures == 0  # its first item was a success


async def test_unknown_methods_are_refused_before_any_pick(cluster: Cluster) -> None:
    (a,) = await cluster.start("a")
    client = cluster.client(StaticEndpoints([a]))
    with pytest.raises(NotFound):
        await client.call("WatchAgents", R.WatchAgentsRequest())
    with pytest.raises(NotFound):
        async for _ in client.stream("GetAgent", R.GetAgentRequest()):
            pass
    assert stats(client, a).calls == 0 and cluster.replicas[a].attempts == 0


# -- metadata and credentials --------------------------------------------------------------


@pytest.fixture
async def secured() -> AsyncIterator[Cluster]:
    keys = test_keys()
    pool = RecordingPool(retry=RETRY, token=keys.token("admin", "ops"))
    c = Cluster(Pipeline(verifier=keys.verifier()), pool)
    try:
        yield c
    finally:
        await c.stop()


@pytest.mark.parametrize("kind", ["balanced", "remote"])
async def test_metadata_and_token_pass_as_through_a_remote_client(
    secured: Cluster, kind: str
) -> None:
    (a,) = await secured.start("a")
    client: Any = (
        secured.client(StaticEndpoints([a]))
        if kind == "balanced"
        else RemoteServiceClient(secured.pool.get(a), REGISTRY, token=secured.pool.token)
    )
    replica = secured.replicas[a]
    given = (("x-request-id", "req-1"), ("authorization", "Bearer not-a-token"))
    await get(client, metadata=given)
    seen = replica.seen[-1]
    assert (seen.principal.role, seen.principal.subject) == (Role.ADMIN, "ops")  # the pool's
    assert ("x-request-id", "req-1") in seen.metadata

    # While serving a call, an outgoing call carries its trace context and deadline.
    upstream = CallContext(
        method="/up/Call",
        principal=seen.principal,
        deadline=time.monotonic() + 2.0,
        metadata=(("traceparent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01"),),
    )
    with serving(upstream):
        await get(client)
    seen = replica.seen[-1]
    assert dict(seen.metadata)["traceparent"] == upstream.metadata[0][1]
    remaining = seen.time_remaining()
    # The upstream's 2 s, not the 10 s default (gRPC rounds the timeout header up a bit).
    assert remaining is not None and 1.0 < remaining < 3.0, remaining


async def test_a_replica_nobody_listens_at_costs_no_call_a_failure(cluster: Cluster) -> None:
    """A dead process (connection refused): gRPC's TRANSIENT_FAILURE keeps calls away from
    it, and the call that found out is sent once to a live replica instead."""
    (live,) = await cluster.start("live")
    dead = f"127.0.0.1:{free_port()}"
    client = cluster.client(StaticEndpoints([dead, live]), threshold=100)
    for _ in range(30):
        reply = await get(client)
        assert reply.agent.endpoint == "live"
    stats = client.endpoint_stats()
    assert stats[dead].calls <= 2  # found out once (maybe twice while connecting), then skipped
    assert cluster.replicas[live].attempts >= 30


async def test_with_only_unreachable_replicas_the_call_fails_unavailable(cluster: Cluster) -> None:
    dead = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    client = cluster.client(StaticEndpoints(dead), threshold=100)
    with pytest.raises(Unavailable):
        await get(client)
