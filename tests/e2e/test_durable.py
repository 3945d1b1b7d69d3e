"""Durable workflows across real processes on a real redis-server.

Registry + economy in one `meshwright serve` process, one or two workflow
replicas (`serve --services workflow --store redis://...`) in others, two
counting agent processes. Workflow processes are SIGKILLed and SIGTERMed
mid-run; the checks: the run resumes and succeeds, a watcher that reconnects
with its last sequence sees no gap and no duplicate, each task is paid once,
and no skill side effect happens twice (the agents count them in a file).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from google.protobuf import json_format

from meshwright.agent.supervisor import AgentSupervisor
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.client import ChannelPool, RemoteServiceClient
from meshwright.mesh.errors import MeshError
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.redis_store import RedisWorkflowStore
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import eventually
from tests.e2e._proc import serve
from tests.e2e.conftest import wait_active
from tests.support_auth import TestKeys, test_keys

W = workflow_pb2
WORKFLOW = W.DESCRIPTOR.services_by_name["WorkflowService"]
ECONOMY = economy_pb2.DESCRIPTOR.services_by_name["EconomyService"]
REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
LEASE_TTL_S = 2.0

pytestmark = pytest.mark.timeout(120)


@dataclass
class Cluster:
    redis_url: str
    core: str
    effects: Path
    keys: TestKeys
    pools: list[ChannelPool]
    replicas: dict[str, tuple[asyncio.subprocess.Process, str]] = field(default_factory=dict)
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def start_replica(self, name: str) -> str:
        proc, addr = await serve(
            "--services",
            "workflow",
            "--registry-target",
            self.core,
            "--economy-target",
            self.core,
            "--auth-public-key",
            str(self.keys.public_key_file),
            "--store",
            self.redis_url,
            "--workflow-lease-ttl",
            f"{LEASE_TTL_S}s",
            env={"MESHWRIGHT_TOKEN": self.keys.token("service", f"workflow-{name}")},
            drain=True,
        )
        self.replicas[name] = (proc, addr)
        self.procs.append(proc)
        return addr

    def pool(self, role: str, subject: str) -> ChannelPool:
        pool = ChannelPool(token=self.keys.token(role, subject))
        self.pools.append(pool)
        return pool

    def workflows(self, name: str) -> RemoteServiceClient:
        return self.pool("client", "payer").client(self.replicas[name][1], WORKFLOW)

    @property
    def admin_economy(self) -> RemoteServiceClient:
        return self.pool("admin", "ops").client(self.core, ECONOMY)

    async def kill(self, name: str) -> None:
        proc, _ = self.replicas.pop(name)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    async def terminate(self, name: str) -> int:
        proc, _ = self.replicas.pop(name)
        proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(proc.wait(), 30)

    def effects_count(self) -> Counter[str]:
        if not self.effects.exists():
            return Counter()
        return Counter(self.effects.read_text().split())

    async def balance(self, account: str) -> tuple[int, int]:
        reply = await self.admin_economy.call(
            "GetAccount", economy_pb2.GetAccountRequest(account_id=account)
        )
        return reply.account.balance, reply.account.escrowed

    async def agent_payouts(self) -> int:
        registry = self.pool("admin", "ops").client(self.core, REGISTRY)
        page = await registry.call("ListAgents", registry_pb2.ListAgentsRequest())
        total = 0
        for agent in page.agents:
            total += (await self.balance(agent.payout_account_id or agent.agent_id))[0]
        return total


@pytest.fixture
async def cluster(redis_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    keys = test_keys()
    core, core_addr = await serve(
        "--services",
        "registry,economy",
        "--auth-public-key",
        str(keys.public_key_file),
        env={},
        drain=True,
    )
    c = Cluster(redis_url, core_addr, tmp_path / "effects.txt", keys, [])
    c.procs.append(core)
    try:
        async with AgentSupervisor(
            core_addr,
            issuer=keys.issuer(),
            auth_public_key=str(keys.public_key_file),
            env={"MW_TEST_EFFECTS": str(c.effects), "PYTHONPATH": os.getcwd()},
        ) as sup:
            await sup.start("tests.e2e._counting_agent:agent", name="counter-a")
            await sup.start("tests.e2e._counting_agent:agent", name="counter-b")
            await wait_active(c.pool("admin", "ops").client(core_addr, REGISTRY), 2)
            await c.admin_economy.call(
                "CreateAccount",
                economy_pb2.CreateAccountRequest(
                    account_id="payer", initial_balance=1000, owner="client:payer"
                ),
            )
            yield c
    finally:
        for proc in c.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for pool in c.pools:
            await pool.close()


def fanout(width: int, seconds: float, budget: int) -> W.WorkflowDefinition:
    """root -> ``width`` tasks of ``seconds`` -> join."""
    tasks: list[dict[str, object]] = [{"id": "root", "skill": "test.work"}]
    middle = [f"m{i}" for i in range(width)]
    tasks += [
        {"id": m, "skill": "test.work", "dependsOn": ["root"], "input": {"seconds": seconds}}
        for m in middle
    ]
    tasks.append({"id": "join", "skill": "test.work", "dependsOn": middle})
    return json_format.ParseDict(
        {"tasks": tasks, "budget": budget, "payerAccountId": "payer"}, W.WorkflowDefinition()
    )


async def create(client: RemoteServiceClient, definition: W.WorkflowDefinition) -> str:
    reply = await client.call("CreateWorkflow", W.CreateWorkflowRequest(definition=definition))
    return str(reply.workflow.workflow_id)


async def watch_until(
    client: RemoteServiceClient, wf_id: str, after: int, stop: int
) -> list[W.WorkflowEvent]:
    """Events after ``after`` until ``stop`` TASK_STARTED events of the middle were seen."""
    out: list[W.WorkflowEvent] = []
    started = 0
    async for r in client.stream(
        "WatchWorkflow", W.WatchWorkflowRequest(workflow_id=wf_id, after_sequence=after)
    ):
        out.append(r.event)
        if r.event.type == W.WORKFLOW_EVENT_TYPE_TASK_STARTED and r.event.task_id.startswith("m"):
            started += 1
            if started == stop:
                break
    return out


async def watch_rest(client: RemoteServiceClient, wf_id: str, after: int) -> list[W.WorkflowEvent]:
    """Reconnect with the last sequence seen, retrying while the replica comes up."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return [
                r.event
                async for r in client.stream(
                    "WatchWorkflow", W.WatchWorkflowRequest(workflow_id=wf_id, after_sequence=after)
                )
            ]
        except MeshError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def check_log(events: list[W.WorkflowEvent]) -> None:
    seqs = [e.sequence for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), seqs  # no gap, no duplicate
    assert events[-1].type == W.WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED, events[-1]
    assert not any(e.type == W.WORKFLOW_EVENT_TYPE_WORKFLOW_CANCELLED for e in events)
    succeeded = Counter(e.task_id for e in events if e.type == W.WORKFLOW_EVENT_TYPE_TASK_SUCCEEDED)
    assert set(succeeded.values()) == {1}, succeeded  # each task recorded once


async def check_money_and_effects(c: Cluster, wf_id: str, tasks: int, budget: int) -> None:
    effects = c.effects_count()
    mine = {k: v for k, v in effects.items() if k.startswith(wf_id + ".")}
    assert len(mine) == tasks, mine
    assert set(mine.values()) == {1}, mine  # no side effect twice
    assert await c.balance("payer") == (1000 - tasks, 0)  # each task paid once, rest refunded
    assert await c.agent_payouts() == tasks


async def test_the_only_workflow_process_killed_mid_run_resumes_after_restart(
    cluster: Cluster,
) -> None:
    await cluster.start_replica("one")
    wf_id = await create(cluster.workflows("one"), fanout(4, 3.0, budget=20))
    first = await watch_until(cluster.workflows("one"), wf_id, 0, stop=4)
    await cluster.kill("one")  # SIGKILL while the four 3 s tasks run
    await cluster.start_replica("two")
    rest = await watch_rest(cluster.workflows("two"), wf_id, first[-1].sequence)
    check_log(first + rest)
    await check_money_and_effects(cluster, wf_id, tasks=6, budget=20)


async def test_the_other_replica_takes_over_a_killed_owner_within_the_lease(
    cluster: Cluster,
) -> None:
    await cluster.start_replica("a")
    await cluster.start_replica("b")
    wf_id = await create(cluster.workflows("a"), fanout(4, 3.0, budget=20))
    first = await watch_until(cluster.workflows("a"), wf_id, 0, stop=4)
    store = RedisWorkflowStore.from_url(cluster.redis_url)
    try:
        holder = await store.lease_holder(wf_id)
        killed_at = time.monotonic()
        await cluster.kill("a")

        async def taken_over() -> bool:
            return await store.lease_holder(wf_id) not in ("", holder)

        await eventually(taken_over, timeout=LEASE_TTL_S + 5)
        took = time.monotonic() - killed_at
        assert took <= LEASE_TTL_S + 1.0, took
    finally:
        await store.close()
    rest = await watch_rest(cluster.workflows("b"), wf_id, first[-1].sequence)
    check_log(first + rest)
    await check_money_and_effects(cluster, wf_id, tasks=6, budget=20)


async def test_sigterm_hands_a_replicas_runs_off_without_cancelling(cluster: Cluster) -> None:
    await cluster.start_replica("a")
    await cluster.start_replica("b")
    wf_id = await create(cluster.workflows("a"), fanout(4, 1.0, budget=20))
    first = await watch_until(cluster.workflows("a"), wf_id, 0, stop=4)
    assert await cluster.terminate("a") == 0  # attempts under way finish, then hand-off
    rest = await watch_rest(cluster.workflows("b"), wf_id, first[-1].sequence)
    check_log(first + rest)
    await check_money_and_effects(cluster, wf_id, tasks=6, budget=20)


async def test_a_cancel_sent_to_the_non_owner_cancels_and_both_watchers_see_it(
    cluster: Cluster,
) -> None:
    await cluster.start_replica("a")
    await cluster.start_replica("b")
    wf_id = await create(cluster.workflows("a"), fanout(2, 30.0, budget=20))
    await watch_until(cluster.workflows("a"), wf_id, 0, stop=2)
    watchers = [
        asyncio.create_task(watch_rest(cluster.workflows(name), wf_id, 0)) for name in ("a", "b")
    ]
    reply = await cluster.workflows("b").call(
        "CancelWorkflow", W.CancelWorkflowRequest(workflow_id=wf_id, reason="stop it")
    )
    assert reply.workflow.state == W.WORKFLOW_STATE_CANCELLED
    for events in await asyncio.wait_for(asyncio.gather(*watchers), 20):
        assert events[-1].type == W.WORKFLOW_EVENT_TYPE_WORKFLOW_CANCELLED
        assert events[-1].message == "stop it"
    assert await cluster.balance("payer") == (999, 0)  # the root's 1 spent, the rest back


async def test_up_runs_its_demo_on_a_redis_store(redis_url: str, tmp_path: Path) -> None:
    from tests.e2e._proc import cli_env, meshwright

    rc, out = await meshwright(
        "up",
        "--demo",
        "--exit-after-demo",
        "--grpc-port",
        "0",
        "--http-port",
        "0",
        "--store",
        redis_url,
        env=cli_env(tmp_path / "config"),
        timeout=90,
    )
    assert rc == 0, out
    assert "WORKFLOW_SUCCEEDED" in out, out
    store = RedisWorkflowStore.from_url(redis_url)
    try:
        page, _ = await store.list_workflows(state=0, after_key=None, limit=10)
    finally:
        await store.close()
    assert [w.state for w in page] == [W.WORKFLOW_STATE_SUCCEEDED]  # kept after up exited
    assert len(page[0].tasks) == 4


async def test_an_unknown_store_scheme_is_refused_by_name(tmp_path: Path) -> None:
    from tests.e2e._proc import cli_env, meshwright

    rc, out = await meshwright(
        "serve", "--grpc-port", "0", "--no-gateway", "--insecure-no-auth", "--store",
        "mongodb://127.0.0.1/x", env=cli_env(tmp_path / "config"),
    )  # fmt: skip
    assert rc != 0
    assert "store_url='mongodb://127.0.0.1/x'" in out, out
    assert "redis://" in out and "Traceback" not in out, out
