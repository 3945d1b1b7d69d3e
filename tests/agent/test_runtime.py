"""An agent started in-process against a real registry server."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pytest

from meshwright.agent import SERVICE, Agent, TaskContext
from meshwright.agent.v1 import agent_pb2
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh import RemoteServiceClient
from meshwright.registry.v1 import registry_pb2
from tests.agent.conftest import Mesh, start_mesh
from tests.conftest import eventually, free_port

pytestmark = pytest.mark.timeout(20)

ACTIVE = registry_pb2.AGENT_STATE_ACTIVE
DRAINING = registry_pb2.AGENT_STATE_DRAINING


def make_agent() -> Agent:
    agent = Agent("runtime-test", version="1.2.3", capacity=4, tags=["test"])

    @agent.skill("text.upper", price=1, tags=["text"])
    async def upper(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"text": str(input.get("text", "")).upper()}

    @agent.skill("demo.sleep", price=0)
    async def sleep(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        await asyncio.sleep(float(input.get("seconds", 0.1)))
        return {"slept": True}

    return agent


async def test_registers_active_with_skills_and_payout_account(mesh: Mesh) -> None:
    runtime = await make_agent().start(mesh.address, lease_ttl_s=1.0, insecure_no_auth=True)
    try:
        assert runtime.registered  # the first attempt happens inside start()
        agent = await mesh.agent(runtime.agent_id)
        assert agent.state == ACTIVE
        assert agent.endpoint == runtime.address == runtime.endpoint
        assert agent.card.name == "runtime-test" and agent.card.version == "1.2.3"
        assert {s.id: s.price for s in agent.card.skills} == {"text.upper": 1, "demo.sleep": 0}
        assert list(agent.tags) == ["test"] and agent.capacity == 4
        assert agent.payout_account_id == runtime.agent_id
        assert runtime.agent_id.startswith("runtime-test-")

        async def account_exists() -> bool:
            reply = await mesh.economy_client.call(
                "GetAccount", economy_pb2.GetAccountRequest(account_id=runtime.agent_id)
            )
            return reply.account.account_id == runtime.agent_id

        await eventually(account_exists)

        # The registered endpoint serves the agent.
        channel = grpc.aio.insecure_channel(agent.endpoint)
        try:
            client = RemoteServiceClient(channel, SERVICE)
            reply = await client.call(
                "ExecuteTask", agent_pb2.ExecuteTaskRequest(task_id="t", skill="text.upper")
            )
            assert reply.task.status.state == agent_pb2.TASK_STATE_COMPLETED
        finally:
            await channel.close()
    finally:
        await runtime.stop()


async def test_heartbeats_report_load(mesh: Mesh) -> None:
    runtime = await make_agent().start(
        mesh.address, lease_ttl_s=1.0, agent_id="beater", insecure_no_auth=True
    )
    try:
        assert runtime.registration is not None
        first = (await mesh.agent("beater")).last_heartbeat_time.ToNanoseconds()
        await eventually(lambda: runtime.registration.heartbeats >= 2)  # type: ignore[union-attr]
        assert (await mesh.agent("beater")).last_heartbeat_time.ToNanoseconds() > first

        request = agent_pb2.ExecuteTaskRequest(task_id="busy", skill="demo.sleep")
        request.input.update({"seconds": 1.0})
        busy = asyncio.create_task(runtime.servicer.ExecuteTask(request))

        async def load_reported() -> bool:
            return (await mesh.agent("beater")).load == 1

        await eventually(load_reported, timeout=3)
        await busy
        # Well past the 1 s lease: heartbeats kept it alive.
        assert (await mesh.agent("beater")).state == ACTIVE
    finally:
        await runtime.stop()


async def test_registers_again_after_the_registry_forgets_it(mesh: Mesh) -> None:
    runtime = await make_agent().start(mesh.address, lease_ttl_s=1.0, insecure_no_auth=True)
    try:
        registration = runtime.registration
        assert registration is not None
        assert registration.registrations == 1
        # No NotFound check right after: a heartbeat may already have brought it back.
        await mesh.registry.deregister(runtime.agent_id)

        async def back() -> bool:
            return registration.registrations == 2 and await mesh.state(runtime.agent_id) == ACTIVE

        await eventually(back, timeout=5)
    finally:
        await runtime.stop()


async def test_a_reported_error_holds_across_heartbeats_until_cleared(mesh: Mesh) -> None:
    runtime = await make_agent().start(mesh.address, lease_ttl_s=1.0, insecure_no_auth=True)
    try:
        registration = runtime.registration
        assert registration is not None
        await runtime.report_error("model server unreachable")
        agent = await mesh.agent(runtime.agent_id)
        assert (agent.state, agent.state_reason) == (
            registry_pb2.AGENT_STATE_ERROR,
            "model server unreachable",
        )
        beats = registration.heartbeats
        await eventually(lambda: registration.heartbeats >= beats + 2, timeout=3)
        assert (await mesh.agent(runtime.agent_id)).state == registry_pb2.AGENT_STATE_ERROR
        await runtime.report_error("")
        assert await mesh.state(runtime.agent_id) == ACTIVE
    finally:
        await runtime.stop()


async def test_stop_drains_finishes_in_flight_and_deregisters(mesh: Mesh) -> None:
    runtime = await make_agent().start(
        mesh.address, lease_ttl_s=1.0, grace_s=5.0, insecure_no_auth=True
    )
    channel = grpc.aio.insecure_channel(runtime.address)
    try:
        client = RemoteServiceClient(channel, SERVICE)
        request = agent_pb2.ExecuteTaskRequest(task_id="late", skill="demo.sleep")
        request.input.update({"seconds": 0.6})
        in_flight = asyncio.create_task(client.call("ExecuteTask", request))
        await eventually(lambda: runtime.load == 1)
        stopping = asyncio.create_task(runtime.stop())

        async def draining() -> bool:
            return (await mesh.agent(runtime.agent_id)).state == DRAINING

        await eventually(draining, timeout=3)
        reply = await in_flight
        assert reply.task.status.state == agent_pb2.TASK_STATE_COMPLETED
        await stopping
        assert (await mesh.agent(runtime.agent_id)).state == registry_pb2.AGENT_STATE_STOPPED
    finally:
        await channel.close()
        await runtime.stop()


async def test_keeps_serving_while_the_registry_is_down(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="meshwright.agent")
    port = free_port()
    address = f"127.0.0.1:{port}"
    runtime = await make_agent().start(address, lease_ttl_s=1.0, insecure_no_auth=True)
    server = None
    try:
        assert not runtime.registered
        channel = grpc.aio.insecure_channel(runtime.address)
        try:
            reply = await RemoteServiceClient(channel, SERVICE).call(
                "GetAgentCard", agent_pb2.GetAgentCardRequest()
            )
            assert reply.card.name == "runtime-test"
        finally:
            await channel.close()
        # A registry without an economy: the payout account fails, registration does not.
        server, registry = await start_mesh(port, economy=False)
        await runtime.wait_registered(timeout=5)
        assert (await registry.get_agent(runtime.agent_id)).state == ACTIVE
        await eventually(lambda: "could not create payout account" in caplog.text)
    finally:
        await runtime.stop()
        if server is not None:
            await registry.stop()
            await server.stop(0)
