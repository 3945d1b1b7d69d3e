"""Heartbeats, lease lapse, the sweeper and deregister-after."""

from __future__ import annotations

import grpc
import pytest

from meshwright.mesh import (
    FailedPrecondition,
    NotFound,
    RemoteServiceClient,
    ServiceClient,
)
from meshwright.registry import SERVICE, LeaseMismatch, MemoryRegistryBackend, Registry
from meshwright.registry.v1 import registry_pb2
from tests.conftest import eventually
from tests.registry.conftest import Collector, FakeClock, register_request, serving

ACTIVE = registry_pb2.AGENT_STATE_ACTIVE
DRAINING = registry_pb2.AGENT_STATE_DRAINING
INACTIVE = registry_pb2.AGENT_STATE_INACTIVE


async def _register(client: ServiceClient, agent_id: str = "a1") -> registry_pb2.Agent:
    return (await client.call("RegisterAgent", register_request(agent_id))).agent


def _beat(agent: registry_pb2.Agent, **fields: object) -> registry_pb2.HeartbeatRequest:
    return registry_pb2.HeartbeatRequest(
        agent_id=agent.agent_id,
        lease_id=agent.lease_id,
        **fields,  # type: ignore[arg-type]
    )


async def _state(client: ServiceClient, agent_id: str = "a1") -> int:
    reply = await client.call("GetAgent", registry_pb2.GetAgentRequest(agent_id=agent_id))
    return int(reply.agent.state)


async def test_heartbeat_renews_the_lease_and_records_load(
    client: ServiceClient, clock: FakeClock
) -> None:
    agent = await _register(client)
    clock.advance(7)
    renewed = (await client.call("Heartbeat", _beat(agent, load=3))).agent
    assert renewed.lease_id == agent.lease_id
    assert renewed.load == 3 and renewed.state == ACTIVE
    assert renewed.last_heartbeat_time.ToNanoseconds() == int(clock.now * 1e9)
    assert renewed.lease_expire_time.ToNanoseconds() == int((clock.now + 10) * 1e9)
    clock.advance(9)  # past the first lease, inside the renewed one
    assert await _state(client) == ACTIVE


async def test_heartbeat_with_a_stale_lease_is_a_mismatch(client: ServiceClient) -> None:
    agent = await _register(client)
    stale = registry_pb2.HeartbeatRequest(agent_id="a1", lease_id="not-the-lease")
    with pytest.raises(LeaseMismatch) as err:
        await client.call("Heartbeat", stale)
    assert isinstance(err.value, FailedPrecondition)
    assert err.value.reason == "LEASE_MISMATCH"
    assert err.value.metadata == {"agent_id": "a1"}
    # The current lease still works.
    assert (await client.call("Heartbeat", _beat(agent))).agent.state == ACTIVE


async def test_heartbeat_of_an_unknown_agent_is_not_found(client: ServiceClient) -> None:
    with pytest.raises(NotFound) as err:
        await client.call(
            "Heartbeat", registry_pb2.HeartbeatRequest(agent_id="ghost", lease_id="x")
        )
    assert err.value.reason == "AGENT_NOT_FOUND"


async def test_draining_and_back(client: ServiceClient) -> None:
    agent = await _register(client)
    assert (await client.call("Heartbeat", _beat(agent, draining=True))).agent.state == DRAINING
    assert await _state(client) == DRAINING
    assert (await client.call("Heartbeat", _beat(agent))).agent.state == ACTIVE


async def test_lapsed_lease_reads_inactive_before_any_sweep(
    client: ServiceClient, clock: FakeClock
) -> None:
    agent = await _register(client)
    clock.advance(9.999)
    assert await _state(client) == ACTIVE
    clock.advance(0.001)
    assert await _state(client) == INACTIVE
    inactive = await client.call("ListAgents", registry_pb2.ListAgentsRequest(state=INACTIVE))
    assert [a.agent_id for a in inactive.agents] == ["a1"]
    active = await client.call("ListAgents", registry_pb2.ListAgentsRequest(state=ACTIVE))
    assert not active.agents
    # A heartbeat with the still-current lease brings it back.
    assert (await client.call("Heartbeat", _beat(agent, load=1))).agent.state == ACTIVE
    assert await _state(client) == ACTIVE


async def test_sweep_marks_lapsed_once_then_removes_after_deregister_after(
    registry: Registry, remote: RemoteServiceClient, clock: FakeClock
) -> None:
    agent = await _register(remote, "a1")
    await _register(remote, "a2")
    clock.advance(5)
    await remote.call("Heartbeat", _beat(agent))  # a1 now lapses 5 s after a2
    clock.advance(5)
    result = await registry.sweep()
    assert [r.agent_id for r in result.lapsed] == ["a2"] and not result.removed
    assert not (await registry.sweep()).lapsed  # announced once

    clock.advance(5)
    assert [r.agent_id for r in (await registry.sweep()).lapsed] == ["a1"]

    clock.advance(55)  # a2 lapsed 60 s ago: deregister_after_s
    result = await registry.sweep()
    assert [r.agent_id for r in result.removed] == ["a2"]
    with pytest.raises(NotFound):
        await _state(remote, "a2")
    assert await _state(remote, "a1") == INACTIVE

    # A heartbeat re-activates a lapsed agent; it is not removed later.
    await remote.call("Heartbeat", _beat(agent))
    clock.advance(5)
    result = await registry.sweep()
    assert not result.lapsed and not result.removed
    assert await _state(remote, "a1") == ACTIVE


async def test_sweeper_task_announces_lapse_and_removal_to_watchers(clock: FakeClock) -> None:
    registry = Registry(
        MemoryRegistryBackend(), clock=clock, sweep_interval_s=0.01, deregister_after_s=30.0
    )
    await registry.start()
    async with serving(registry) as server:
        channel = grpc.aio.insecure_channel(server.address)
        client = RemoteServiceClient(channel, SERVICE)
        watch = Collector(client.stream("WatchAgents", registry_pb2.WatchAgentsRequest()))
        try:
            await _register(client, "a1")
            await eventually(lambda: watch.seen() == [("ADDED", "a1")])
            clock.advance(10)
            await eventually(lambda: watch.seen()[1:] == [("UPDATED", "a1")])
            assert watch.events[-1].agent.state == INACTIVE
            clock.advance(30)
            await eventually(lambda: watch.seen()[2:] == [("REMOVED", "a1")])
            assert not (await client.call("ListAgents", registry_pb2.ListAgentsRequest())).agents
        finally:
            await watch.close()
            await channel.close()


async def test_real_clock_lease_lapses() -> None:
    """With the system clock, a 1 s lease reads INACTIVE about a second later."""
    registry = Registry(MemoryRegistryBackend())
    agent = await registry.register(
        register_request("a1").card, "h:1", agent_id="a1", lease_ttl_s=1.0
    )
    assert agent.state == ACTIVE

    async def lapsed() -> bool:
        return (await registry.get_agent("a1")).state == INACTIVE

    await eventually(lapsed, timeout=3.0)
    await registry.stop()
