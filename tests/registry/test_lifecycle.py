"""The agent lifecycle on the embedded registry: health probing, reported failures,
graceful stops, the state filter and resumable watches."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from grpc_health.v1 import health_pb2

from meshwright.mesh import InvalidArgument, MeshServer, OutOfRange, ServiceClient
from meshwright.mesh.security import insecure_pipeline
from meshwright.registry import (
    AgentStopped,
    HealthCheckPolicy,
    HistoryTrimmed,
    MemoryRegistryBackend,
    Registry,
)
from meshwright.registry.v1 import registry_pb2
from tests.conftest import eventually
from tests.registry.conftest import Collector, FakeClock, card, register_request

S = registry_pb2
ACTIVE, DRAINING, INACTIVE = S.AGENT_STATE_ACTIVE, S.AGENT_STATE_DRAINING, S.AGENT_STATE_INACTIVE
STARTING, ERROR, STOPPED = S.AGENT_STATE_STARTING, S.AGENT_STATE_ERROR, S.AGENT_STATE_STOPPED
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


def _beat(agent: S.Agent, **fields: object) -> S.HeartbeatRequest:
    return S.HeartbeatRequest(agent_id=agent.agent_id, lease_id=agent.lease_id, **fields)  # type: ignore[arg-type]


async def _get(client: ServiceClient, agent_id: str = "a1") -> S.Agent:
    return (await client.call("GetAgent", S.GetAgentRequest(agent_id=agent_id))).agent


@pytest.fixture
async def health_server() -> AsyncIterator[MeshServer]:
    """A real gRPC server serving grpc.health.v1 (SERVING), as every agent does."""
    srv = MeshServer(pipeline=insecure_pipeline(), port=0)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(0)


@pytest.fixture
async def probed() -> AsyncIterator[Registry]:
    """A registry that probes agents every 50 ms, unhealthy after 2 failures."""
    reg = Registry(
        MemoryRegistryBackend(),
        health_check=HealthCheckPolicy(interval_s=0.05, timeout_s=0.5, unhealthy_threshold=2),
    )
    await reg.start()
    try:
        yield reg
    finally:
        await reg.stop()


async def test_starting_until_the_first_probe_then_running(
    probed: Registry, health_server: MeshServer
) -> None:
    agent = await probed.register(card(), health_server.address, agent_id="a1")
    assert (agent.state, agent.state_reason) == (STARTING, "waiting for the first health check")
    got = await eventually(lambda: _state_is(probed, "a1", ACTIVE))
    assert got.state_reason == ""
    assert got.state_change_time.ToNanoseconds() >= agent.state_change_time.ToNanoseconds()


async def _state_is(reg: Registry, agent_id: str, state: int) -> S.Agent | None:
    agent = await reg.get_agent(agent_id)
    return agent if agent.state == state else None


async def test_failing_probes_make_it_inactive_at_the_threshold_and_a_pass_brings_it_back(
    probed: Registry, health_server: MeshServer
) -> None:
    await probed.register(card(), health_server.address, agent_id="a1")
    await eventually(lambda: _state_is(probed, "a1", ACTIVE))
    await health_server.health.set("", NOT_SERVING)  # the exact threshold: see below
    down = await eventually(lambda: _state_is(probed, "a1", INACTIVE))
    assert down.state_reason == "health check failing: NOT_SERVING"
    await health_server.health.set("", SERVING)
    back = await eventually(lambda: _state_is(probed, "a1", ACTIVE))
    assert back.state_reason == ""


async def test_a_dead_endpoint_is_inactive_with_the_transport_error(probed: Registry) -> None:
    await probed.register(card(), "127.0.0.1:1", agent_id="a1")  # nobody listens there
    down = await eventually(lambda: _state_is(probed, "a1", INACTIVE))
    assert down.state_reason.startswith("health check failing: UNAVAILABLE")


async def test_the_threshold_is_exact(health_server: MeshServer) -> None:
    """With threshold 3 the second failure changes nothing and the third does."""
    clock = FakeClock()
    reg = Registry(
        MemoryRegistryBackend(),
        clock=clock,
        health_check=HealthCheckPolicy(interval_s=3600, unhealthy_threshold=3),
    )
    try:
        await reg.register(card(), health_server.address, agent_id="a1")
        prober = reg.prober
        assert prober is not None
        record = await reg.backend.get("a1")
        assert record is not None
        assert await prober.probe(record) is True
        await health_server.health.set("", NOT_SERVING)
        for _ in range(2):
            assert await prober.probe(record) is False
            assert (await reg.get_agent("a1")).state == ACTIVE
        assert await prober.probe(record) is False
        assert (await reg.get_agent("a1")).state == INACTIVE
    finally:
        await reg.stop()


async def test_a_verdict_about_an_old_lease_changes_nothing(health_server: MeshServer) -> None:
    reg = Registry(MemoryRegistryBackend(), health_check=HealthCheckPolicy(interval_s=3600))
    try:
        await reg.register(card(), "127.0.0.1:1", agent_id="a1")
        old = await reg.backend.get("a1")
        assert old is not None
        await reg.register(card(), health_server.address, agent_id="a1")  # a new process
        prober = reg.prober
        assert prober is not None
        for _ in range(3):
            assert await prober.probe(old) is False
        assert (await reg.get_agent("a1")).state != INACTIVE
    finally:
        await reg.stop()


def test_health_policy_limits() -> None:
    HealthCheckPolicy(unhealthy_threshold=1, concurrency=1)
    for bad in (
        {"interval_s": 0},
        {"timeout_s": 0},
        {"unhealthy_threshold": 0},
        {"concurrency": 0},
    ):
        with pytest.raises(ValueError):
            HealthCheckPolicy(**bad)  # type: ignore[arg-type]


async def test_without_probing_registrations_run_at_once(client: ServiceClient) -> None:
    agent = (await client.call("RegisterAgent", register_request("a1"))).agent
    assert (agent.state, agent.state_reason) == (ACTIVE, "")


# -- reported failures ---------------------------------------------------------------


async def test_a_reported_failure_is_error_until_the_holder_heartbeats_clean(
    client: ServiceClient, clock: FakeClock
) -> None:
    agent = (await client.call("RegisterAgent", register_request("a1"))).agent
    clock.advance(1)
    failed = (
        await client.call(
            "ReportAgentFailure", S.ReportAgentFailureRequest(agent_id="a1", reason="exit 1")
        )
    ).agent
    assert (failed.state, failed.state_reason) == (ERROR, "exit 1")
    assert failed.state_change_time.ToNanoseconds() == int(clock.now * 1e9)
    assert (await _get(client)).state == ERROR
    clock.advance(1)
    back = (await client.call("Heartbeat", _beat(agent))).agent
    assert (back.state, back.state_reason) == (ACTIVE, "")
    assert back.state_change_time.ToNanoseconds() == int(clock.now * 1e9)


async def test_a_heartbeat_error_is_error_while_it_lasts(client: ServiceClient) -> None:
    agent = (await client.call("RegisterAgent", register_request("a1"))).agent
    failing = (await client.call("Heartbeat", _beat(agent, error="model server down"))).agent
    assert (failing.state, failing.state_reason) == (ERROR, "model server down")
    assert (await client.call("Heartbeat", _beat(agent, load=1))).agent.state == ACTIVE


async def test_error_outranks_draining_and_a_lapse(client: ServiceClient, clock: FakeClock) -> None:
    agent = (await client.call("RegisterAgent", register_request("a1"))).agent
    await client.call("Heartbeat", _beat(agent, draining=True, error="boom"))
    assert (await _get(client)).state == ERROR
    clock.advance(11)  # the lease lapsed too
    assert (await _get(client)).state == ERROR
    back = (await client.call("Heartbeat", _beat(agent))).agent
    assert back.state == ACTIVE


async def test_a_lapse_says_so(client: ServiceClient, clock: FakeClock) -> None:
    await client.call("RegisterAgent", register_request("a1"))
    clock.advance(10)
    lapsed = await _get(client)
    assert (lapsed.state, lapsed.state_reason) == (INACTIVE, "lease expired")
    assert lapsed.state_change_time == lapsed.lease_expire_time


async def test_reason_limits(client: ServiceClient) -> None:
    agent = (await client.call("RegisterAgent", register_request("a1"))).agent
    at_limit = "x" * 1024
    ok = await client.call(
        "ReportAgentFailure", S.ReportAgentFailureRequest(agent_id="a1", reason=at_limit)
    )
    assert ok.agent.state_reason == at_limit
    for reason in ("x" * 1025, "", "   "):
        with pytest.raises(InvalidArgument) as err:
            await client.call(
                "ReportAgentFailure", S.ReportAgentFailureRequest(agent_id="a1", reason=reason)
            )
        assert [v.field for v in err.value.violations] == ["reason"]
    assert (await client.call("Heartbeat", _beat(agent, error=at_limit))).agent.state == ERROR
    with pytest.raises(InvalidArgument) as err:
        await client.call("Heartbeat", _beat(agent, error="x" * 1025))
    assert [v.field for v in err.value.violations] == ["error"]


async def test_a_stopped_agent_cannot_be_reported_or_stopped_again(client: ServiceClient) -> None:
    await client.call("RegisterAgent", register_request("a1"))
    await client.call("DeregisterAgent", S.DeregisterAgentRequest(agent_id="a1"))
    with pytest.raises(AgentStopped):
        await client.call(
            "ReportAgentFailure", S.ReportAgentFailureRequest(agent_id="a1", reason="x")
        )
    # Registering again starts a new life.
    again = (await client.call("RegisterAgent", register_request("a1"))).agent
    assert again.state == ACTIVE


async def test_zero_retention_removes_at_once(clock: FakeClock) -> None:
    reg = Registry(MemoryRegistryBackend(), clock=clock, stopped_retention_s=0)
    await reg.register(card(), "127.0.0.1:7000", agent_id="a1")
    await reg.deregister("a1")
    assert await reg.backend.get("a1") is None


# -- watches: state filter, resume, trim -------------------------------------------


async def test_state_filter_sees_agents_enter_and_leave(
    client: ServiceClient, clock: FakeClock, registry: Registry
) -> None:
    a = (await client.call("RegisterAgent", register_request("a"))).agent
    await client.call("RegisterAgent", register_request("b"))
    await client.call("Heartbeat", _beat(a, draining=True))
    watch = Collector(client.stream("WatchAgents", S.WatchAgentsRequest(state=ACTIVE)))
    try:
        await eventually(lambda: watch.seen() == [("ADDED", "b")])
        await client.call("Heartbeat", _beat(a))  # back to ACTIVE: enters the watch
        await client.call(
            "ReportAgentFailure", S.ReportAgentFailureRequest(agent_id="b", reason="x")
        )
        await eventually(lambda: watch.seen()[1:] == [("ADDED", "a"), ("REMOVED", "b")])
        assert watch.events[2].agent.state == ERROR  # it left: the event says why
        clock.advance(10)
        await registry.sweep()  # a lapses: leaves at the lapse event, once
        await eventually(lambda: watch.seen()[3:] == [("REMOVED", "a")])
    finally:
        await watch.close()


async def test_resume_after_a_revision_replays_what_was_missed(
    client: ServiceClient, registry: Registry
) -> None:
    a = (await client.call("RegisterAgent", register_request("a"))).agent
    first = Collector(client.stream("WatchAgents", S.WatchAgentsRequest()))
    await eventually(lambda: first.seen() == [("ADDED", "a")])
    last = first.events[-1].revision
    await first.close()
    # Missed while disconnected:
    await client.call("Heartbeat", _beat(a, load=4))
    await client.call("RegisterAgent", register_request("b", "image.resize"))
    resumed = Collector(client.stream("WatchAgents", S.WatchAgentsRequest(after_revision=last)))
    try:
        await eventually(lambda: resumed.seen() == [("UPDATED", "a"), ("ADDED", "b")])
        assert resumed.events[0].agent.load == 4
        await client.call("DeregisterAgent", S.DeregisterAgentRequest(agent_id="a"))  # live
        await eventually(lambda: resumed.seen()[2:] == [("UPDATED", "a")])
        revisions = [e.revision for e in resumed.events]
        assert revisions == sorted(revisions) and revisions[0] == last + 1
        assert len(set(revisions)) == 3
    finally:
        await resumed.close()
    # Resuming with a filter replays only what concerns it.
    skill = Collector(
        client.stream(
            "WatchAgents", S.WatchAgentsRequest(after_revision=last, skill="image.resize")
        )
    )
    try:
        await eventually(lambda: skill.seen() == [("ADDED", "b")])
    finally:
        await skill.close()


async def test_resume_from_the_current_revision_sends_only_live_changes(
    client: ServiceClient, registry: Registry
) -> None:
    await client.call("RegisterAgent", register_request("a"))
    now = registry.backend.revision
    watch = Collector(client.stream("WatchAgents", S.WatchAgentsRequest(after_revision=now)))
    try:
        await eventually(lambda: registry.watcher_count == 1)
        await client.call("RegisterAgent", register_request("b"))
        await eventually(lambda: watch.seen() == [("ADDED", "b")])
    finally:
        await watch.close()


async def test_a_trimmed_or_foreign_revision_is_out_of_range(clock: FakeClock) -> None:
    backend = MemoryRegistryBackend(history_size=2)
    reg = Registry(backend, clock=clock)
    start = backend.revision
    for agent_id in ("a", "b", "c"):
        await reg.register(card(), "127.0.0.1:7000", agent_id=agent_id)
    # history holds the last two changes: start+2 and start+3
    assert [c.record.agent_id for c in backend.changes_since(start + 1)] == ["b", "c"]
    assert backend.changes_since(start + 3) == []
    for revision in (start, start + 4, 1):
        with pytest.raises(HistoryTrimmed) as err:
            async for _ in reg.watch(after_revision=revision):
                pass
        assert isinstance(err.value, OutOfRange) and err.value.reason == "WATCH_HISTORY_TRIMMED"
    with pytest.raises(InvalidArgument) as bad:
        async for _ in reg.watch(after_revision=-1):
            pass
    assert [v.field for v in bad.value.violations] == ["after_revision"]
    with pytest.raises(ValueError):
        MemoryRegistryBackend(history_size=0)


async def test_a_restarted_registry_refuses_revisions_of_the_old_one(clock: FakeClock) -> None:
    old = MemoryRegistryBackend()
    await Registry(old, clock=clock).register(card(), "127.0.0.1:7000", agent_id="a")
    seen = old.revision
    new = MemoryRegistryBackend()
    reg = Registry(new, clock=clock)
    for _ in range(3):
        await reg.register(card(), "127.0.0.1:7000", agent_id="a")
    with pytest.raises(HistoryTrimmed):
        new.changes_since(seen)


async def test_unknown_state_filter_is_invalid(client: ServiceClient) -> None:
    watch = Collector(client.stream("WatchAgents", S.WatchAgentsRequest(state=99)))  # type: ignore[arg-type]
    await eventually(lambda: watch.error is not None)
    assert isinstance(watch.error, InvalidArgument)
    assert [v.field for v in watch.error.violations] == ["state"]


async def test_listing_messages_are_built_once_per_record_state(clock: FakeClock) -> None:
    from meshwright.registry._convert import shared_agent

    reg = Registry(MemoryRegistryBackend(), clock=clock)
    await reg.register(card(), "127.0.0.1:7000", agent_id="a1")
    record = await reg.backend.get("a1")
    assert record is not None
    first = shared_agent(record, clock.now, lease=False)
    assert shared_agent(record, clock.now, lease=False) is first
    assert first.lease_id == "" and shared_agent(record, clock.now, lease=True).lease_id
    clock.advance(10)  # the lease lapsed: another state, another message
    lapsed = shared_agent(record, clock.now, lease=False)
    assert lapsed is not first and lapsed.state == INACTIVE
    assert dataclasses.replace(record).messages == {}  # a changed record starts empty
