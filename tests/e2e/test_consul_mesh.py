"""The mesh on Consul, across processes: two registry replicas share one view, the
workflow service finds them (and the economy) through Consul, and a replica or an
agent that dies is routed around.

Consul itself is the HTTP double under tests/ (a child process) that really runs
the GRPC checks and expires TTL checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from meshwright.agent.supervisor import AgentSupervisor
from meshwright.mesh.client import ChannelPool, RemoteServiceClient
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import eventually, run_workflow
from tests.consul_double import ConsulDoubleProcess, consul_client
from tests.e2e._proc import serve
from tests.support_auth import NO_AUTH_ENV

W = workflow_pb2
R = registry_pb2
REGISTRY = R.DESCRIPTOR.services_by_name["RegistryService"]
WORKFLOWS = W.DESCRIPTOR.services_by_name["WorkflowService"]
LEASE_TTL_S = 2.0
CHECK_INTERVAL_S = 0.5
QUIET = {"MESHWRIGHT_LOG_LEVEL": "ERROR"}  # the first line must be the address


@dataclass
class ConsulMesh:
    consul: ConsulDoubleProcess
    registries: list[tuple[asyncio.subprocess.Process, str]]
    flows: str
    supervisor: AgentSupervisor
    pool: ChannelPool

    def registry(self, i: int) -> RemoteServiceClient:
        return self.pool.client(self.registries[i][1], REGISTRY)

    @property
    def workflows(self) -> RemoteServiceClient:
        return self.pool.client(self.flows, WORKFLOWS)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def consul_mesh() -> AsyncIterator[ConsulMesh]:
    consul = ConsulDoubleProcess(args=("--first-check-at-once", "--min-check-interval-s", "0.2"))
    consul.start()
    procs: list[asyncio.subprocess.Process] = []
    pool = ChannelPool()
    try:
        common = (
            "--registry",
            consul.url,
            "--insecure-no-auth",
            "--health-check-interval",
            f"{CHECK_INTERVAL_S}s",
        )
        registries = []
        for _ in range(2):
            proc, address = await serve("--services", "registry", *common, env=QUIET, drain=True)
            procs.append(proc)
            registries.append((proc, address))
        # No --registry-target, no --economy-target: it finds the registry in Consul.
        flows_proc, flows = await serve(
            "--services", "economy,workflow", *common, env=QUIET, drain=True
        )
        procs.append(flows_proc)
        targets = ",".join(address for _, address in registries)
        async with AgentSupervisor(
            targets, economy=flows, lease_ttl_s=LEASE_TTL_S, max_restarts=0, env=NO_AUTH_ENV
        ) as sup:
            await sup.start("meshwright.agent.samples:analyst_agent", name="a1")
            await sup.start("meshwright.agent.samples:analyst_agent", name="a2")
            yield ConsulMesh(consul, registries, flows, sup, pool)
    finally:
        await pool.close()
        for proc in reversed(procs):
            await _stop(proc)
        consul.stop()


async def _states(client: RemoteServiceClient) -> dict[str, int]:
    page = await client.call("ListAgents", R.ListAgentsRequest())
    return {a.agent_id: a.state for a in page.agents}


def _sleeps(n: int) -> dict[str, object]:
    return {
        "tasks": [{"id": f"t{i}", "skill": "demo.sleep", "input": {"seconds": 0}} for i in range(n)]
    }


async def test_two_registries_serve_one_view_and_one_dying_changes_nothing_for_clients(
    consul_mesh: ConsulMesh,
) -> None:
    mesh = consul_mesh
    ids = {mesh.supervisor.status(n).agent_id for n in ("a1", "a2")}

    async def both_active_on_both() -> bool:
        views = [await _states(mesh.registry(i)) for i in (0, 1)]
        return all(v == {i: R.AGENT_STATE_ACTIVE for i in ids} for v in views)

    await eventually(both_active_on_both, timeout=20)
    wf = await run_workflow(mesh.workflows, _sleeps(4))
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED

    os.kill(mesh.registries[0][0].pid, signal.SIGKILL)
    await mesh.registries[0][0].wait()
    survivor = mesh.registry(1)

    # The dead replica leaves Consul's passing set within its check interval.
    consul = consul_client(mesh.consul.address)
    try:

        async def only_the_survivor_passes() -> bool:
            _, entries = await consul.health.service("meshwright-registry", passing=True)
            ports = {e["Service"]["Port"] for e in entries}
            return ports == {int(mesh.registries[1][1].rpartition(":")[2])}

        await eventually(only_the_survivor_passes, timeout=10)
    finally:
        await consul.close()

    # Well past the lease: the agents kept heartbeating through the survivor.
    await asyncio.sleep(LEASE_TTL_S * 1.5)
    assert await _states(survivor) == {i: R.AGENT_STATE_ACTIVE for i in ids}
    # And the workflow service, which found the first replica through Consul, follows
    # the agents through the second one now.
    wf = await run_workflow(mesh.workflows, _sleeps(4))
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED
    assert {t.agent_id for t in wf.tasks} <= ids


async def test_kill_9_an_agent_on_consul_is_inactive_within_ttl_and_an_interval_then_runs_again(
    consul_mesh: ConsulMesh,
) -> None:
    mesh = consul_mesh
    registry = mesh.registry(1)
    victim = mesh.supervisor.status("a2")
    other = mesh.supervisor.status("a1")
    assert victim.pid is not None

    async def active(agent_id: str) -> bool:
        return (await _states(registry)).get(agent_id) == R.AGENT_STATE_ACTIVE

    await eventually(lambda: active(victim.agent_id), timeout=20)
    await eventually(lambda: active(other.agent_id), timeout=20)
    seen: list[R.WatchAgentsResponse] = []

    async def watch() -> None:
        async for change in registry.stream("WatchAgents", R.WatchAgentsRequest()):
            if change.agent.agent_id == victim.agent_id:
                seen.append(change)

    watcher = asyncio.create_task(watch())
    try:
        await eventually(lambda: seen)
        killed = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)

        async def inactive() -> float | None:
            state = (await _states(registry)).get(victim.agent_id)
            return time.monotonic() - killed if state == R.AGENT_STATE_INACTIVE else None

        took = await eventually(inactive, timeout=15, interval=0.05)
        # Consul's GRPC check (every 0.5 s) or its TTL check (2 s) turns critical; the
        # registry follows Consul's blocking query. Slack for the double's scheduling.
        assert took <= LEASE_TTL_S + CHECK_INTERVAL_S + 1.0, took
        await eventually(lambda: any(e.agent.state == R.AGENT_STATE_INACTIVE for e in seen))
        wf = await run_workflow(mesh.workflows, _sleeps(4))
        assert wf.state == W.WORKFLOW_STATE_SUCCEEDED
        assert {t.agent_id for t in wf.tasks} == {other.agent_id}

        await mesh.supervisor.restart("a2")
        await eventually(lambda: active(victim.agent_id), timeout=20)
        await eventually(lambda: seen[-1].agent.state == R.AGENT_STATE_ACTIVE)
    finally:
        watcher.cancel()
        with contextlib.suppress(BaseException):
            await watcher
