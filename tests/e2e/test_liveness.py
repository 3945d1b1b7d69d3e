"""Agents that die: a lapsed lease is not offered work, a crash mid-task is retried elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
from google.protobuf import json_format

from meshwright.agent.supervisor import AgentSupervisor
from meshwright.mesh.client import ChannelPool, RemoteServiceClient
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.errors import MeshError
from meshwright.node import start_node
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow import EngineConfig
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import eventually, run_workflow
from tests.e2e.conftest import wait_active
from tests.support_auth import NO_AUTH_ENV

W = workflow_pb2
LEASE_TTL_S = 1.0
HEALTH_INTERVAL_S = 0.5


@pytest.fixture
async def two_analysts() -> AsyncIterator[
    tuple[AgentSupervisor, RemoteServiceClient, RemoteServiceClient]
]:
    config = MeshConfig(
        insecure_no_auth=True,
        grpc_port=0,
        http_port=0,
        lease_ttl_s=1.0,
        sweep_interval_s=0.1,
        health_check_interval_s=HEALTH_INTERVAL_S,
        grace_s=1,
    )
    node = await start_node(
        config, gateway=False, engine_config=EngineConfig(initial_backoff_s=0.05, agent_wait_s=5)
    )
    pool = ChannelPool()
    try:
        async with AgentSupervisor(
            node.grpc_address, lease_ttl_s=1.0, max_restarts=0, env=NO_AUTH_ENV
        ) as sup:
            await sup.start("meshwright.agent.samples:analyst_agent", name="a1")
            await sup.start("meshwright.agent.samples:analyst_agent", name="a2")
            registry = pool.client(
                node.grpc_address, registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
            )
            await wait_active(registry, 2)
            workflows = pool.client(
                node.grpc_address, W.DESCRIPTOR.services_by_name["WorkflowService"]
            )
            yield sup, registry, workflows
    finally:
        await pool.close()
        await node.stop()


run = run_workflow


async def test_an_agent_whose_lease_lapsed_is_not_offered_work(two_analysts) -> None:  # type: ignore[no-untyped-def]
    sup, registry, workflows = two_analysts
    a1, a2 = sup.status("a1"), sup.status("a2")
    assert a2.pid is not None
    os.kill(a2.pid, signal.SIGKILL)

    async def lapsed() -> bool:
        reply = await registry.call("GetAgent", registry_pb2.GetAgentRequest(agent_id=a2.agent_id))
        return reply.agent.state == registry_pb2.AGENT_STATE_INACTIVE

    await eventually(lapsed, timeout=10)
    wf = await run(
        workflows,
        {
            "tasks": [
                {"id": f"t{i}", "skill": "demo.sleep", "input": {"seconds": 0}} for i in range(12)
            ]
        },
    )
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED
    assert {t.agent_id for t in wf.tasks} == {a1.agent_id}
    assert all(t.attempts == 1 for t in wf.tasks)


async def test_a_crash_mid_task_is_retried_on_another_agent(two_analysts) -> None:  # type: ignore[no-untyped-def]
    sup, registry, workflows = two_analysts
    d = json_format.ParseDict(
        {
            "tasks": [
                {
                    "id": "slow",
                    "skill": "demo.sleep",
                    "input": {"seconds": 1.5},
                    "retry": {"maxAttempts": 3, "initialBackoff": "0.01s"},
                }
            ]
        },
        W.WorkflowDefinition(),
    )
    reply = await workflows.call("CreateWorkflow", W.CreateWorkflowRequest(definition=d))
    wf_id = reply.workflow.workflow_id

    async def running_on() -> str:
        got = await workflows.call("GetWorkflow", W.GetWorkflowRequest(workflow_id=wf_id))
        t = got.workflow.tasks[0]
        return t.agent_id if t.state == W.TASK_RUN_STATE_RUNNING else ""

    victim = await eventually(running_on)
    by_id = {s.agent_id: s for s in (sup.status("a1"), sup.status("a2"))}
    pid = by_id[victim].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    events = [
        r.event
        async for r in workflows.stream("WatchWorkflow", W.WatchWorkflowRequest(workflow_id=wf_id))
    ]
    assert events[-1].type == W.WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED
    retry = next(e for e in events if e.type == W.WORKFLOW_EVENT_TYPE_TASK_RETRYING)
    assert retry.agent_id == victim
    assert "UNAVAILABLE" in retry.message
    got = await workflows.call("GetWorkflow", W.GetWorkflowRequest(workflow_id=wf_id))
    task = got.workflow.tasks[0]
    assert task.attempts == 2
    assert task.agent_id != victim


async def test_kill_9_is_inactive_within_ttl_and_one_interval_and_a_restart_runs_again(
    two_analysts,
) -> None:  # type: ignore[no-untyped-def]
    sup, registry, workflows = two_analysts
    victim = sup.status("a2")
    assert victim.pid is not None
    seen: list[registry_pb2.WatchAgentsResponse] = []

    async def watch() -> None:
        request = registry_pb2.WatchAgentsRequest()
        async for change in registry.stream("WatchAgents", request):
            if change.agent.agent_id == victim.agent_id:
                seen.append(change)

    watcher = asyncio.create_task(watch())
    try:
        await eventually(lambda: seen)  # the snapshot reached us: the watch is live
        killed = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)

        async def inactive() -> float | None:
            reply = await registry.call(
                "GetAgent", registry_pb2.GetAgentRequest(agent_id=victim.agent_id)
            )
            ok = reply.agent.state == registry_pb2.AGENT_STATE_INACTIVE
            return time.monotonic() - killed if ok else None

        took = await eventually(inactive, timeout=10, interval=0.01)
        # The lease (1 s) or the health probe (every 0.5 s, two failures) catches it;
        # the bound is TTL + one interval, plus this test's polling and the sweep.
        assert took <= LEASE_TTL_S + HEALTH_INTERVAL_S + 0.3, took
        await eventually(
            lambda: any(e.agent.state == registry_pb2.AGENT_STATE_INACTIVE for e in seen)
        )
        wf = await run(
            workflows,
            {
                "tasks": [
                    {"id": f"t{i}", "skill": "demo.sleep", "input": {"seconds": 0}}
                    for i in range(6)
                ]
            },
        )
        assert wf.state == W.WORKFLOW_STATE_SUCCEEDED
        assert victim.agent_id not in {t.agent_id for t in wf.tasks}

        await sup.restart("a2")  # same agent id, a new process

        async def running() -> bool:
            reply = await registry.call(
                "GetAgent", registry_pb2.GetAgentRequest(agent_id=victim.agent_id)
            )
            return reply.agent.state == registry_pb2.AGENT_STATE_ACTIVE

        await eventually(running, timeout=15)
        await eventually(lambda: seen[-1].agent.state == registry_pb2.AGENT_STATE_ACTIVE)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, MeshError):
            await watcher
