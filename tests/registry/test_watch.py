"""WatchAgents: snapshot, live events in order, filters, overflow, shutdown."""

from __future__ import annotations

import contextlib

import grpc
import pytest

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import MeshServer, RemoteServiceClient, ServiceClient, Unavailable
from meshwright.registry import (
    SERVICE,
    MemoryRegistryBackend,
    Registry,
    RegistryStopped,
    WatchOverflow,
)
from meshwright.registry.v1 import registry_pb2
from tests.conftest import eventually
from tests.registry.conftest import Collector, FakeClock, card, register_request, serving

INACTIVE = registry_pb2.AGENT_STATE_INACTIVE
DRAINING = registry_pb2.AGENT_STATE_DRAINING
STOPPED = registry_pb2.AGENT_STATE_STOPPED


def _watch(client: ServiceClient, **filters: str) -> Collector:
    return Collector(client.stream("WatchAgents", registry_pb2.WatchAgentsRequest(**filters)))


async def test_snapshot_then_live_events_in_order(
    client: ServiceClient, registry: Registry, clock: FakeClock
) -> None:
    await client.call("RegisterAgent", register_request("b"))
    a = (await client.call("RegisterAgent", register_request("a"))).agent
    watch = _watch(client)
    try:
        await eventually(lambda: watch.seen() == [("ADDED", "a"), ("ADDED", "b")])
        await eventually(lambda: registry.watcher_count == 1)

        await client.call("RegisterAgent", register_request("c"))
        await client.call(
            "Heartbeat", registry_pb2.HeartbeatRequest(agent_id="a", lease_id=a.lease_id, load=2)
        )
        await client.call(
            "Heartbeat",
            registry_pb2.HeartbeatRequest(agent_id="a", lease_id=a.lease_id, load=2, draining=True),
        )
        await client.call("DeregisterAgent", registry_pb2.DeregisterAgentRequest(agent_id="b"))
        await client.call("RegisterAgent", register_request("c", "image.resize"))
        clock.advance(10)
        await registry.sweep()

        await eventually(
            lambda: (
                watch.seen()[2:]
                == [
                    ("ADDED", "c"),
                    ("UPDATED", "a"),  # a heartbeat that changed only load and lease
                    ("UPDATED", "a"),
                    ("UPDATED", "b"),  # deregistered: STOPPED
                    ("UPDATED", "c"),  # re-registered
                    ("UPDATED", "a"),  # lapsed
                    ("UPDATED", "c"),
                ]
            )
        )
        live = watch.events[2:]
        assert live[1].agent.load == 2 and live[2].agent.state == DRAINING
        assert live[3].agent.state == STOPPED
        assert [s.id for s in live[4].agent.card.skills] == ["image.resize"]
        assert {e.agent.state for e in live[5:]} == {INACTIVE}
        revisions = [e.revision for e in watch.events]
        assert revisions[0] == revisions[1] and revisions[2:] == sorted(set(revisions[2:]))
        clock.advance(registry.stopped_retention_s)
        await registry.sweep()
        await eventually(lambda: ("REMOVED", "b") in watch.seen()[9:])
    finally:
        await watch.close()
    await eventually(lambda: registry.watcher_count == 0)


async def test_filtered_watch_sees_agents_enter_and_leave(
    client: ServiceClient, registry: Registry
) -> None:
    await client.call("RegisterAgent", register_request("x1", "text.wordcount"))
    await client.call("RegisterAgent", register_request("y1", "image.resize"))
    by_skill = _watch(client, skill="text.wordcount")
    by_tag = _watch(client, tag="gpu")
    try:
        await eventually(lambda: by_skill.seen() == [("ADDED", "x1")])
        await eventually(lambda: registry.watcher_count == 2)

        await client.call("RegisterAgent", register_request("y2", "image.resize"))  # no match
        await client.call("RegisterAgent", register_request("x1", "image.resize"))  # leaves
        await client.call("RegisterAgent", register_request("y1", "text.wordcount"))  # enters
        await client.call(
            "RegisterAgent",
            register_request("g1", card=card("g", "gpu.render", skill_tags=["gpu"])),
        )
        await client.call("RegisterAgent", register_request("x2", "text.wordcount", tags=["gpu"]))

        await eventually(
            lambda: by_skill.seen()[1:] == [("REMOVED", "x1"), ("ADDED", "y1"), ("ADDED", "x2")]
        )
        # Leaving a watch carries the registration that no longer matches.
        assert [s.id for s in by_skill.events[1].agent.card.skills] == ["image.resize"]
        await eventually(lambda: by_tag.seen() == [("ADDED", "g1"), ("ADDED", "x2")])
    finally:
        await by_skill.close()
        await by_tag.close()


async def test_in_process_watch_overflow_spares_other_watchers() -> None:
    registry = Registry(MemoryRegistryBackend(), watch_queue_size=4)
    agent = await registry.register(card("w"), "h:1", agent_id="a1")
    slow = registry.watch()
    fast = registry.watch()
    try:
        assert (await anext(slow)).type == registry_pb2.AGENT_EVENT_TYPE_ADDED
        assert (await anext(fast)).agent.agent_id == "a1"
        for load in range(1, 9):
            await registry.heartbeat("a1", agent.lease_id, load=load)
            # The fast watcher keeps up; the slow one never reads.
            assert (await anext(fast)).agent.load == load
            assert registry.watcher_count == (2 if load <= 4 else 1)
        with pytest.raises(WatchOverflow) as err:
            await anext(slow)
        assert isinstance(err.value, Unavailable) and err.value.reason == "WATCH_OVERFLOW"
        assert err.value.metadata == {"queue_size": "4"}
    finally:
        await slow.aclose()
        await fast.aclose()
        await registry.stop()
    assert registry.watcher_count == 0


async def test_slow_remote_watcher_is_cut_off_without_slowing_others() -> None:
    registry = Registry(MemoryRegistryBackend(), watch_queue_size=16)
    async with serving(registry) as server:
        channel = grpc.aio.insecure_channel(server.address)
        try:
            await _slow_and_fast_watchers(registry, server, RemoteServiceClient(channel, SERVICE))
        finally:
            await channel.close()


async def _slow_and_fast_watchers(
    registry: Registry, server: MeshServer, remote: RemoteServiceClient
) -> None:
    # Big cards and a client that never grows its flow-control window make the
    # transport push back after a few dozen unread events.
    bulky = agent_pb2.AgentCard(
        name="bulky", skills=[agent_pb2.AgentSkill(id="s", description="d" * 4000)]
    )
    agent = (await remote.call("RegisterAgent", register_request("a1", card=bulky))).agent
    slow_channel = grpc.aio.insecure_channel(server.address, options=[("grpc.http2.bdp_probe", 0)])
    slow = RemoteServiceClient(slow_channel, SERVICE).stream(
        "WatchAgents", registry_pb2.WatchAgentsRequest()
    )
    fast = _watch(remote)
    try:
        assert (await anext(slow)).agent.agent_id == "a1"
        await eventually(lambda: registry.watcher_count == 2 and len(fast.events) == 1)
        sent = 0
        while registry.watcher_count == 2:
            assert sent < 5000, "the slow watcher was never cut off"
            sent += 1
            await remote.call(
                "Heartbeat",
                registry_pb2.HeartbeatRequest(agent_id="a1", lease_id=agent.lease_id, load=sent),
            )
        await eventually(lambda: len(fast.events) == sent + 1)
        assert [e.agent.load for e in fast.events[1:]] == list(range(1, sent + 1))
        assert fast.error is None

        delivered = 0
        with pytest.raises(WatchOverflow):
            async for _ in slow:
                delivered += 1
        assert delivered < sent
    finally:
        await fast.close()
        with contextlib.suppress(Exception):
            await slow.aclose()  # type: ignore[attr-defined]
        await slow_channel.close()


async def test_stop_ends_watches(client: ServiceClient, registry: Registry) -> None:
    await client.call("RegisterAgent", register_request("a1"))
    watch = _watch(client)
    try:
        await eventually(lambda: watch.seen() == [("ADDED", "a1")])
        await registry.stop()
        await eventually(lambda: watch.error is not None)
        assert isinstance(watch.error, RegistryStopped)
        assert watch.error.reason == "REGISTRY_STOPPED"
    finally:
        await watch.close()
