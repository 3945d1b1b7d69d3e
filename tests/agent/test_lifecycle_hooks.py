"""``Agent.on_start``/``on_stop`` and ``report_health_detail`` against a real registry."""

from __future__ import annotations

from typing import Any

import pytest

from meshwright.agent import Agent, AgentRuntime, TaskContext
from meshwright.registry.v1 import registry_pb2
from tests.agent.conftest import Mesh
from tests.conftest import eventually

pytestmark = pytest.mark.timeout(20)

ACTIVE = registry_pb2.AGENT_STATE_ACTIVE


def make_agent(events: list[str]) -> Agent:
    agent = Agent("hooks-test")

    @agent.skill("text.echo")
    async def echo(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return dict(input)

    @agent.on_start
    async def started(runtime: AgentRuntime) -> None:
        # Registered already: the hook may report to the registry at once.
        events.append(f"start registered={runtime.registered}")

    @agent.on_start
    def started_sync(runtime: AgentRuntime) -> None:
        events.append("start sync")

    @agent.on_stop
    def broken(runtime: AgentRuntime) -> None:
        events.append("stop broken")
        raise RuntimeError("a broken stop hook")

    @agent.on_stop
    async def stopped(runtime: AgentRuntime) -> None:
        events.append(f"stop registered={runtime.registered}")

    return agent


async def test_hooks_run_in_order_and_a_broken_stop_hook_does_not_stop_the_stop(
    mesh: Mesh,
) -> None:
    events: list[str] = []
    runtime = await make_agent(events).start(mesh.address, insecure_no_auth=True)
    try:
        assert events == ["start registered=True", "start sync"]
    finally:
        await runtime.stop()
    # Both stop hooks ran, before deregistering, though the first raised.
    assert events[2:] == ["stop broken", "stop registered=True"]
    assert await mesh.state(runtime.agent_id) == registry_pb2.AGENT_STATE_STOPPED


async def test_a_failing_start_hook_fails_the_start_and_stops_the_runtime(mesh: Mesh) -> None:
    agent = Agent("hooks-fail")
    stopped: list[AgentRuntime] = []

    @agent.skill("text.echo")
    async def echo(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return dict(input)

    @agent.on_start
    def fail(runtime: AgentRuntime) -> None:
        raise RuntimeError("dependency missing")

    agent.on_stop(stopped.append)
    with pytest.raises(RuntimeError, match="dependency missing"):
        await agent.start(mesh.address, insecure_no_auth=True)
    assert len(stopped) == 1
    assert await mesh.state(stopped[0].agent_id) == registry_pb2.AGENT_STATE_STOPPED


async def test_a_health_detail_shows_in_the_registry_keeps_it_active_and_clears(
    mesh: Mesh,
) -> None:
    agent = Agent("detail-test")

    @agent.skill("text.echo")
    async def echo(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return dict(input)

    runtime = await agent.start(mesh.address, lease_ttl_s=1.0, insecure_no_auth=True)
    try:
        await runtime.report_health_detail("DEGRADED: model server unreachable")
        got = await mesh.agent(runtime.agent_id)  # sent at once, not at the next beat
        assert got.state == ACTIVE
        assert got.health_detail == "DEGRADED: model server unreachable"
        beats = runtime.registration.heartbeats if runtime.registration else 0

        async def renewed_with_detail() -> bool:
            # Later heartbeats keep carrying it.
            assert runtime.registration is not None
            got = await mesh.agent(runtime.agent_id)
            return runtime.registration.heartbeats > beats and bool(got.health_detail)

        await eventually(renewed_with_detail)
        await runtime.report_health_detail("")
        got = await mesh.agent(runtime.agent_id)
        assert got.state == ACTIVE and got.health_detail == ""
    finally:
        await runtime.stop()
