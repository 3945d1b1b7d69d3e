"""What every ``RegistryBackend`` must do, through the protocol and through ``Registry``.

One suite, parametrized over the backends: memory (on a fake clock, with the
registry's own health prober), the Consul double (real time, Consul's GRPC and
TTL checks run by the double) and a real Consul when ``CONSUL_HTTP_ADDR`` is set.
Every agent registered here points at a real gRPC server that serves
``grpc.health.v1`` (a ``MeshServer``), so both health checkers probe something real.

Time: memory moves its fake clock; Consul waits for Consul (short TTLs, polled with
``eventually``), so ``Env.lapse`` and ``Env.after_retention`` hide which it is.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from meshwright.mesh import MeshServer
from meshwright.mesh.errors import InvalidArgument
from meshwright.mesh.security import insecure_pipeline
from meshwright.registry import (
    AgentNotFound,
    AgentQuery,
    AgentStopped,
    HealthCheckPolicy,
    HistoryTrimmed,
    LeaseMismatch,
    MemoryRegistryBackend,
    Registry,
    RegistryBackend,
)
from meshwright.registry.consul import ConsulRegistryBackend
from meshwright.registry.records import (
    ACTIVE,
    ADDED,
    DRAINING,
    ERROR,
    INACTIVE,
    STARTING,
    STOPPED,
    UPDATED,
    AgentRecord,
)
from meshwright.registry.v1 import registry_pb2
from tests.conftest import eventually
from tests.consul_double import ConsulDouble, ConsulDoubleConfig
from tests.registry.conftest import FakeClock, card

LONG_TTL_S = 30.0
"""Leases that must not lapse during a test (no test heartbeats in the background)."""
SHORT_TTL_S = 1.0
"""The lease of an agent a test lets lapse (the registry's minimum)."""
CHECK_INTERVAL_S = 0.2
RETENTION_S = 0.5


@dataclass
class Env:
    """One backend under test, a registry on it, and how time passes for it."""

    kind: str
    registry: Registry
    endpoint: str
    """A real gRPC server serving health, for agents to register at."""
    clock: Callable[[], float]
    open_backend: Callable[..., RegistryBackend]
    """Another backend on the same store (memory: the same one)."""
    fake: FakeClock | None = None
    extra: list[Registry] = field(default_factory=list)

    @property
    def backend(self) -> RegistryBackend:
        return self.registry.backend

    async def replica(self, **options: Any) -> Registry:
        """Another registry on the same store (its own backend where the store allows)."""
        registry = Registry(
            self.open_backend(**options.pop("backend_options", {})),
            clock=self.clock,
            default_lease_ttl_s=LONG_TTL_S,
            sweep_interval_s=3600,
            stopped_retention_s=options.pop("stopped_retention_s", RETENTION_S),
            health_check=_policy() if self.fake is not None else None,
        )
        await registry.start()
        self.extra.append(registry)
        return registry

    async def register(
        self, agent_id: str, *skills: str, registry: Registry | None = None, **fields: Any
    ) -> registry_pb2.Agent:
        fields.setdefault("lease_ttl_s", LONG_TTL_S)
        return await (registry or self.registry).register(
            fields.pop("card", None) or card("tools", *skills),
            fields.pop("endpoint", self.endpoint),
            agent_id=agent_id,
            **fields,
        )

    async def state(self, agent_id: str, registry: Registry | None = None) -> int:
        return int((await (registry or self.registry).get_agent(agent_id)).state)

    async def running(self, *agent_ids: str, registry: Registry | None = None) -> None:
        """Wait until each agent passed its first health check."""
        for agent_id in agent_ids:
            await eventually(lambda a=agent_id: self._is(a, ACTIVE, registry), timeout=10)

    async def _is(self, agent_id: str, state: int, registry: Registry | None = None) -> bool:
        return await self.state(agent_id, registry) == state

    async def lapse(self, agent_id: str) -> None:
        """Let a SHORT_TTL_S lease run out and the backend notice."""
        if self.fake is not None:
            self.fake.advance(SHORT_TTL_S)
            await self.registry.sweep()
        await eventually(lambda: self._is(agent_id, INACTIVE), timeout=SHORT_TTL_S + 5)

    async def after_retention(self, agent_id: str) -> None:
        """Let a STOPPED agent's retention pass and a sweep remove it."""
        if self.fake is not None:
            self.fake.advance(RETENTION_S)

        async def gone() -> bool:
            await self.registry.sweep()
            return await self.backend.get(agent_id) is None

        await eventually(gone, timeout=RETENTION_S + 5, interval=0.05)


def _policy() -> HealthCheckPolicy:
    return HealthCheckPolicy(interval_s=CHECK_INTERVAL_S, timeout_s=1.0, unhealthy_threshold=1)


def _consul_options() -> dict[str, Any]:
    return {
        "health_check_interval_s": CHECK_INTERVAL_S,
        "health_check_timeout_s": 1.0,
        "deregister_after_s": 60.0,
        "watch_wait_s": 5.0,
        "retry_max_s": 0.5,
    }


@contextlib.asynccontextmanager
async def _agent_server() -> AsyncIterator[MeshServer]:
    server = MeshServer(pipeline=insecure_pipeline(), port=0)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


async def _consul_env(kind: str, host: str, port: int, endpoint: str) -> Env:
    def open_backend(**options: Any) -> RegistryBackend:
        return ConsulRegistryBackend(host, port, **{**_consul_options(), **options})

    registry = Registry(
        open_backend(),
        default_lease_ttl_s=LONG_TTL_S,
        sweep_interval_s=3600,
        stopped_retention_s=RETENTION_S,
    )
    await registry.start()
    return Env(kind, registry, endpoint, clock=registry._clock, open_backend=open_backend)


def _memory_env(endpoint: str) -> Env:
    clock = FakeClock()
    backend = MemoryRegistryBackend()

    def same_backend(**options: Any) -> RegistryBackend:
        # One process's memory is the store: "another backend on it" is the same one,
        # except where a test asks for a different history (then a fresh store).
        return MemoryRegistryBackend(**options) if options else backend

    registry = Registry(
        backend,
        clock=clock,
        default_lease_ttl_s=LONG_TTL_S,
        sweep_interval_s=3600,
        stopped_retention_s=RETENTION_S,
        health_check=_policy(),
    )
    return Env("memory", registry, endpoint, clock, same_backend, fake=clock)


def _real_consul() -> tuple[str, int]:
    addr = os.environ.get("CONSUL_HTTP_ADDR", "")
    parsed = urllib.parse.urlsplit(addr if "//" in addr else f"//{addr}")
    return parsed.hostname or "127.0.0.1", parsed.port or 8500


@pytest.fixture(
    params=[
        "memory",
        "consul-double",
        pytest.param(
            "consul",
            marks=pytest.mark.skipif(
                not os.environ.get("CONSUL_HTTP_ADDR"),
                reason="a real Consul runs these only when CONSUL_HTTP_ADDR is set",
            ),
        ),
    ]
)
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    async with contextlib.AsyncExitStack() as stack:
        agent = await stack.enter_async_context(_agent_server())
        if request.param == "memory":
            made = _memory_env(agent.address)
            await made.registry.start()
        elif request.param == "consul-double":
            # Consul's defaults (output-only changes reach the catalog minutes late),
            # except that checks run at once and as often as a test needs.
            double = ConsulDouble(
                ConsulDoubleConfig(first_check_at_once=True, min_check_interval_s=0.1)
            )
            await double.start()
            stack.push_async_callback(double.stop)
            host, _, port = double.address.rpartition(":")
            made = await _consul_env("consul-double", host, int(port), agent.address)
        else:
            host, port = _real_consul()
            made = await _consul_env("consul", host, port, agent.address)
            stack.push_async_callback(_deregister_everything, made)
        try:
            yield made
        finally:
            for registry in [*made.extra, made.registry]:
                await registry.stop()


async def _deregister_everything(env: Env) -> None:
    """A real Consul outlives the test: leave nothing behind."""
    backend = ConsulRegistryBackend(*_real_consul(), **_consul_options())
    await backend.start()
    try:
        for record in (await backend.list(AgentQuery(now=env.clock()))).records:
            await backend.stop(record.agent_id, now=env.clock(), retain=False)
    finally:
        await backend.close()


async def _raises(call: Awaitable[Any], error: type[BaseException]) -> Any:
    with pytest.raises(error) as caught:
        await call
    return caught.value


# -- registration --------------------------------------------------------------


async def test_a_registration_starts_then_runs_and_reads_back(env: Env) -> None:
    agent = await env.register(
        "a1",
        "text.wordcount",
        "text.upper",
        tags=["gpu", "eu"],
        capacity=4,
        payout_account_id="acct-1",
    )
    assert agent.state == STARTING and agent.lease_id
    # A read right after the write finds it, in this registry and any other on the store.
    got = await env.registry.get_agent("a1")
    assert got.state in (STARTING, ACTIVE)
    await env.running("a1")
    got = await env.registry.get_agent("a1")
    assert got.endpoint == env.endpoint
    assert list(got.tags) == ["gpu", "eu"]
    assert got.capacity == 4 and got.payout_account_id == "acct-1"
    assert [s.id for s in got.card.skills] == ["text.wordcount", "text.upper"]
    assert got.card == card("tools", "text.wordcount", "text.upper")
    assert got.lease_id == agent.lease_id
    assert got.register_time == agent.register_time


async def test_registering_again_replaces_and_issues_a_new_lease(env: Env) -> None:
    first = await env.register("a1", "text.wordcount")
    before = await env.backend.get("a1")
    second = await env.register("a1", "image.resize", tags=["new"])
    assert second.lease_id != first.lease_id
    got = await env.registry.get_agent("a1")
    assert [s.id for s in got.card.skills] == ["image.resize"] and list(got.tags) == ["new"]
    err = await _raises(env.registry.heartbeat("a1", first.lease_id), LeaseMismatch)
    assert err.reason == "LEASE_MISMATCH" and err.metadata == {"agent_id": "a1"}
    assert (await env.registry.heartbeat("a1", second.lease_id)).lease_id == second.lease_id
    # Through the protocol: put returns the registration it replaced.
    assert before is not None
    current = await env.backend.get("a1")
    assert current is not None
    third = AgentRecord.create(
        agent_id="a1",
        card=current.card,
        endpoint=current.endpoint,
        tags=(),
        capacity=0,
        payout_account_id="a1",
        lease_id="third-lease",
        lease_ttl_s=LONG_TTL_S,
        now=env.clock(),
        checked=True,
    )
    replaced = await env.backend.put(third, now=env.clock())
    assert replaced is not None and replaced.lease_id == second.lease_id
    assert (await env.backend.get("a1")).lease_id == "third-lease"  # type: ignore[union-attr]


async def test_heartbeats_of_unknown_agents_and_stale_leases_are_refused(env: Env) -> None:
    err = await _raises(env.registry.heartbeat("ghost", "x"), AgentNotFound)
    assert err.reason == "AGENT_NOT_FOUND"
    agent = await env.register("a1")
    err = await _raises(env.registry.heartbeat("a1", "not-the-lease"), LeaseMismatch)
    assert err.metadata == {"agent_id": "a1"}
    assert (await env.registry.heartbeat("a1", agent.lease_id)).agent_id == "a1"


# -- heartbeats, lapse, errors, drain ------------------------------------------------


async def test_heartbeat_records_load_and_draining(env: Env) -> None:
    agent = await env.register("a1")
    await env.running("a1")
    now = env.clock()
    beat = await env.registry.heartbeat("a1", agent.lease_id, load=3)
    assert beat.load == 3 and beat.state == ACTIVE
    expires = beat.lease_expire_time.ToNanoseconds() / 1e9
    assert now + LONG_TTL_S - 1 <= expires <= env.clock() + LONG_TTL_S + 1
    # This process's reads show its own write at once (even where Consul defers it).
    assert (await env.registry.get_agent("a1")).load == 3

    assert (await env.registry.heartbeat("a1", agent.lease_id, draining=True)).state == DRAINING
    assert await env.state("a1") == DRAINING  # a state change is visible at once
    listed = await env.registry.list_agents(state=DRAINING)
    assert [a.agent_id for a in listed] == ["a1"]
    assert (await env.registry.heartbeat("a1", agent.lease_id)).state == ACTIVE
    assert await env.state("a1") == ACTIVE


async def test_a_health_detail_shows_without_changing_the_state_until_cleared(env: Env) -> None:
    agent = await env.register("a1", "llm.chat")
    await env.running("a1")
    detail = "DEGRADED: model server unreachable"
    beat = await env.registry.heartbeat("a1", agent.lease_id, load=1, health_detail=detail)
    assert beat.state == ACTIVE and beat.health_detail == detail and beat.state_reason == ""
    got = await env.registry.get_agent("a1")
    assert got.state == ACTIVE and got.health_detail == detail and got.load == 1
    # Still offered work: discovery by skill and by state finds it.
    found = await env.registry.list_agents(skill="llm.chat", state=ACTIVE)
    assert [(a.agent_id, a.health_detail) for a in found] == [("a1", detail)]
    # With an error too, both show; the error alone decides the state.
    beat = await env.registry.heartbeat("a1", agent.lease_id, error="boom", health_detail=detail)
    assert beat.state == ERROR and beat.health_detail == detail
    beat = await env.registry.heartbeat("a1", agent.lease_id, health_detail=detail)
    assert beat.state == ACTIVE and beat.health_detail == detail
    # A heartbeat without it clears it.
    assert (await env.registry.heartbeat("a1", agent.lease_id)).health_detail == ""
    got = await env.registry.get_agent("a1")
    assert got.state == ACTIVE and got.health_detail == ""


async def test_another_registry_on_the_store_reads_the_health_detail(env: Env) -> None:
    other = await env.replica()
    agent = await env.register("a1")
    await env.running("a1")
    await env.running("a1", registry=other)
    detail = "DEGRADED: model missing"
    # Draining changes the lease check's status, which every store shares at once (Consul
    # writes an output-only change back late); the detail travels with it.
    await other.heartbeat("a1", agent.lease_id, draining=True, health_detail=detail)

    async def shows_it() -> bool:
        got = await env.registry.get_agent("a1")
        return got.state == DRAINING and got.health_detail == detail

    await eventually(shows_it)


async def test_a_health_detail_is_at_most_1024_characters(env: Env) -> None:
    agent = await env.register("a1")
    await env.running("a1")
    at_limit = "D" * 1024
    beat = await env.registry.heartbeat("a1", agent.lease_id, health_detail=at_limit)
    assert beat.health_detail == at_limit
    err = await _raises(
        env.registry.heartbeat("a1", agent.lease_id, health_detail=at_limit + "D"),
        InvalidArgument,
    )
    assert [v.field for v in err.violations] == ["health_detail"]
    assert (await env.registry.get_agent("a1")).health_detail == at_limit


async def test_a_lapsed_lease_reads_inactive_until_the_next_heartbeat(env: Env) -> None:
    agent = await env.register("a1", lease_ttl_s=SHORT_TTL_S)
    await env.lapse("a1")
    got = await env.registry.get_agent("a1")
    assert got.state == INACTIVE and got.state_reason == "lease expired"
    assert [a.agent_id for a in await env.registry.list_agents(state=INACTIVE)] == ["a1"]
    assert (await env.registry.heartbeat("a1", agent.lease_id)).state in (ACTIVE, STARTING)
    assert await env.state("a1") != INACTIVE


async def test_an_error_reads_error_until_a_heartbeat_without_it(env: Env) -> None:
    agent = await env.register("a1")
    await env.running("a1")
    beat = await env.registry.heartbeat("a1", agent.lease_id, error="disk full")
    assert beat.state == ERROR and beat.state_reason == "disk full"
    got = await env.registry.get_agent("a1")
    assert got.state == ERROR and got.state_reason == "disk full"
    assert (await env.registry.heartbeat("a1", agent.lease_id)).state == ACTIVE
    assert await env.state("a1") == ACTIVE

    failed = await env.registry.report_failure("a1", "exited with code 1")
    assert failed.state == ERROR and failed.state_reason == "exited with code 1"
    got = await env.registry.get_agent("a1")
    assert got.state == ERROR and got.state_reason == "exited with code 1"
    assert (await env.registry.heartbeat("a1", agent.lease_id)).state == ACTIVE
    await _raises(env.registry.report_failure("ghost", "x"), AgentNotFound)


# -- stop ----------------------------------------------------------------------------


async def test_a_stopped_agent_reads_stopped_then_is_removed(env: Env) -> None:
    agent = await env.register("a1")
    await env.running("a1")
    was = await env.registry.deregister("a1")
    assert was.state == ACTIVE  # as it was
    got = await env.registry.get_agent("a1")
    assert got.state == STOPPED and got.state_reason == "deregistered"
    err = await _raises(env.registry.heartbeat("a1", agent.lease_id), AgentStopped)
    assert err.reason == "AGENT_STOPPED"
    await _raises(env.registry.deregister("a1"), AgentStopped)
    await _raises(env.registry.report_failure("a1", "x"), AgentStopped)
    assert [a.agent_id for a in await env.registry.list_agents(state=STOPPED)] == ["a1"]
    live = await env.backend.list(AgentQuery(now=env.clock(), stopped=False))
    assert live.records == []
    await env.after_retention("a1")
    await _raises(env.registry.get_agent("a1"), AgentNotFound)


async def test_without_retention_a_stop_removes_at_once(env: Env) -> None:
    other = await env.replica(stopped_retention_s=0)
    await env.register("a1", registry=other)
    await other.deregister("a1")
    await _raises(other.get_agent("a1"), AgentNotFound)
    await eventually(lambda: _gone(env.registry, "a1"))


async def _gone(registry: Registry, agent_id: str) -> bool:
    return await registry.backend.get(agent_id) is None


# -- reads ---------------------------------------------------------------------------


async def test_list_filters_by_skill_tag_and_state_in_id_order_with_pages(env: Env) -> None:
    await env.register("c", "text.wordcount", tags=["eu"])
    b = await env.register("b", "image.resize", card=card("g", "image.resize", skill_tags=["gpu"]))
    await env.register("a", "text.wordcount", "image.resize")
    await env.register("d", "Text.WordCount")
    await env.running("a", "b", "c", "d")
    await env.registry.heartbeat("b", b.lease_id, draining=True)

    def ids(agents: list[registry_pb2.Agent]) -> list[str]:
        return [a.agent_id for a in agents]

    assert ids(await env.registry.list_agents()) == ["a", "b", "c", "d"]
    assert ids(await env.registry.list_agents(skill="text.wordcount")) == ["a", "c", "d"]
    assert ids(await env.registry.list_agents(tag="gpu")) == ["b"]
    assert ids(await env.registry.list_agents(tag="eu")) == ["c"]
    assert ids(await env.registry.list_agents(state=ACTIVE)) == ["a", "c", "d"]
    assert ids(await env.registry.list_agents(state=DRAINING)) == ["b"]

    page = await env.registry.list_page(page_size=3)
    assert ids(page.agents) == ["a", "b", "c"] and page.next_page_token
    rest = await env.registry.list_page(page_size=3, page_token=page.next_page_token)
    assert ids(rest.agents) == ["d"] and rest.next_page_token == ""
    query = AgentQuery(now=env.clock(), skill="image.resize", after="a", limit=1)
    assert [r.agent_id for r in (await env.backend.list(query)).records] == ["b"]
    assert (await env.backend.list(AgentQuery(now=env.clock(), limit=0))).records == []


# -- watches and history --------------------------------------------------------------


def _seen(events: list[Any]) -> list[tuple[int, str, int]]:
    return [(e.type, e.record.agent_id, e.state) for e in events]


async def test_watch_sees_changes_in_revision_order_and_history_replays_them(env: Env) -> None:
    a = await env.register("a")
    await env.register("b")
    await env.running("a", "b")
    watch = env.registry.watch()
    snapshot = [await anext(watch), await anext(watch)]
    assert _seen(snapshot) == [(ADDED, "a", ACTIVE), (ADDED, "b", ACTIVE)]
    start = snapshot[0].revision
    assert snapshot[1].revision == start

    # State changes only: on Consul a heartbeat that changes only the load may reach
    # other readers minutes late (Consul defers output-only changes).
    await env.registry.heartbeat("a", a.lease_id, load=2, draining=True)
    await env.registry.deregister("b")
    await env.registry.heartbeat("a", a.lease_id, load=2, error="oom")
    await env.registry.heartbeat("a", a.lease_id, load=1)
    live = [await anext(watch) for _ in range(4)]
    assert _seen(live) == [
        (UPDATED, "a", DRAINING),
        (UPDATED, "b", STOPPED),
        (UPDATED, "a", ERROR),
        (UPDATED, "a", ACTIVE),
    ]
    assert live[0].record.load == 2 and live[2].record.error == "oom"
    revisions = [e.revision for e in live]
    assert revisions == sorted(set(revisions)) and revisions[0] > start

    replayed = env.backend.changes_since(start)
    assert [(c.kind, c.record.agent_id) for c in replayed] == [
        (e.type, e.record.agent_id) for e in live
    ]
    assert [c.revision for c in replayed] == revisions
    assert env.backend.changes_since(revisions[-1]) == []
    assert env.backend.revision >= revisions[-1]
    resumed = env.registry.watch(after_revision=revisions[1])
    assert _seen([await anext(resumed), await anext(resumed)]) == _seen(live[2:])
    await watch.aclose()
    await resumed.aclose()


async def test_changes_since_refuses_what_it_no_longer_keeps(env: Env) -> None:
    small = await env.replica(backend_options={"history_size": 2})
    agent = await env.register("h0", registry=small)
    await env.running("h0", registry=small)
    start = small.backend.revision
    assert small.backend.changes_since(start) == []
    for draining in (True, False, True):
        await small.heartbeat("h0", agent.lease_id, draining=draining)
    assert small.backend.revision > start
    with pytest.raises(HistoryTrimmed) as err:
        small.backend.changes_since(start)
    assert err.value.reason == "WATCH_HISTORY_TRIMMED"
    with pytest.raises(HistoryTrimmed):
        small.backend.changes_since(small.backend.revision + 1)
    kept = small.backend.changes_since(small.backend.revision - 1)
    assert [(c.kind, c.record.draining) for c in kept] == [(UPDATED, True)]


async def _state_is(registry: Registry, agent_id: str, state: int) -> bool:
    return (await registry.get_agent(agent_id)).state == state


async def test_two_registries_on_one_store_serve_the_same_agents(env: Env) -> None:
    other = await env.replica()
    agent = await env.register("a1", "text.wordcount")
    await env.running("a1")
    # The other registry reads, watches and heartbeats what this one registered.
    await env.running("a1", registry=other)
    watch = other.watch(skill="text.wordcount")
    assert _seen([await anext(watch)]) == [(ADDED, "a1", ACTIVE)]
    assert (await other.heartbeat("a1", agent.lease_id, draining=True)).state == DRAINING
    assert _seen([await anext(watch)]) == [(UPDATED, "a1", DRAINING)]
    await eventually(lambda: env._is("a1", DRAINING))
    await env.register("a2", "text.wordcount")
    event = await anext(watch)
    assert (event.type, event.record.agent_id) == (ADDED, "a2")
    await other.deregister("a1")
    await eventually(lambda: env._is("a1", STOPPED))
    await _raises(env.registry.heartbeat("a1", agent.lease_id), AgentStopped)
    await watch.aclose()


async def test_an_agent_failing_its_health_check_reads_inactive_until_it_serves(
    env: Env,
) -> None:
    async with _agent_server() as server:
        port = server.port
        await env.register("a1", endpoint=server.address)
        await env.running("a1")
    # Its gRPC server is gone: the health check fails.
    await eventually(lambda: env._is("a1", INACTIVE), timeout=10)
    got = await env.registry.get_agent("a1")
    assert got.state_reason.startswith("health check failing")
    again = MeshServer(pipeline=insecure_pipeline(), port=port)
    await again.start()
    try:
        await env.running("a1")
    finally:
        await again.stop(0)
