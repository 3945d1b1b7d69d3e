"""The engine's side of the economy, through the real engine and the in-memory ledger:
a task is paid once whatever replays its capture (another replica, another agent), a
workflow's escrow lives as long as the workflow (renewed past its ttl, released by the
economy once nobody renews it), and an agent's failures restart its streak."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from google.protobuf import json_format

from meshwright.agent import Agent, TaskContext, TaskFailed
from meshwright.economy import Economy, EconomyServicer, MemoryLedgerStore
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh import MeshServer
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.security import insecure_pipeline
from meshwright.node import Node, start_node
from meshwright.workflow import EngineConfig, MemoryWorkflowStore, WorkflowStore
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import eventually
from tests.workflow.conftest import Running
from tests.workflow.test_replicas import config

W = workflow_pb2
E = economy_pb2

TTL_S = 1.0
"""The escrow ttl of these tests: a workflow of a few seconds outlives it many times."""


def gated(name: str, *, price: int, capacity: int = 4) -> tuple[Agent, asyncio.Event, list[str]]:
    """``x.work`` waits for the gate, then records the task id it ran (its side effect)."""
    agent = Agent(name, capacity=capacity)
    gate = asyncio.Event()
    ran: list[str] = []

    @agent.skill("x.work", price=price)
    async def work(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        await gate.wait()
        ran.append(ctx.task_id)
        return {"by": name}

    return agent, gate, ran


async def create(node: Node, tasks: list[dict[str, Any]], *, budget: int, payer: str) -> str:
    d = json_format.ParseDict(
        {"tasks": tasks, "budget": budget, "payerAccountId": payer}, W.WorkflowDefinition()
    )
    reply = await node.clients["workflow"].call(
        "CreateWorkflow", W.CreateWorkflowRequest(definition=d)
    )
    return str(reply.workflow.workflow_id)


def work(*ids: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"id": i, "skill": "x.work", **extra} for i in ids]


async def account(node: Node, account_id: str) -> E.Account:
    reply = await node.clients["economy"].call(
        "GetAccount", E.GetAccountRequest(account_id=account_id)
    )
    return reply.account


async def open_account(node: Node, account_id: str, balance: int = 0) -> None:
    await node.clients["economy"].call(
        "CreateAccount", E.CreateAccountRequest(account_id=account_id, initial_balance=balance)
    )


async def running_on(node: Node, wf_id: str, agent_id: str) -> W.Workflow | None:
    """The workflow once all its tasks run on ``agent_id`` (None before)."""
    assert node.engine is not None
    wf = await node.engine.get_workflow(wf_id)
    ok = all(t.state == W.TASK_RUN_STATE_RUNNING and t.agent_id == agent_id for t in wf.tasks)
    return wf if ok else None


async def ended(node: Node, wf_id: str) -> W.Workflow:
    assert node.engine is not None
    return await asyncio.wait_for(node.engine.wait(wf_id), 20)


# -- a task is paid once ---------------------------------------------------------------


async def test_a_task_paid_before_counts_as_paid_and_is_not_paid_again(
    node: Node, agents: Running
) -> None:
    """Regression: a capture replayed with another payee failed the task (the economy
    refused it) although the work was done and paid. It is TASK_ALREADY_PAID now: the task
    succeeds, nobody is paid twice, and the workflow counts what the escrow really paid."""
    agent, gate, ran = gated("worker", price=3)
    worker = await agents.start(agent, node)
    await open_account(node, "payer", 10)
    await open_account(node, "earlier")
    wf_id = await create(node, work("t0"), budget=10, payer="payer")
    wf = await eventually(lambda: running_on(node, wf_id, worker))
    # As a replica that ran t0 on another agent, paid it and died before recording it.
    await node.clients["economy"].call(
        "CaptureEscrow",
        E.CaptureEscrowRequest(
            escrow_id=wf.escrow_id, payee_account_id="earlier", amount=2, task_id="t0"
        ),
    )
    gate.set()
    done = await ended(node, wf_id)
    assert done.state == W.WORKFLOW_STATE_SUCCEEDED, done.error
    assert ran == [f"{wf_id}.t0.1"]
    assert (done.spent, done.tasks[0].cost) == (2, 2)  # the earlier payment, not 3
    assert (await account(node, "earlier")).balance == 2
    assert (await account(node, worker)).balance == 0
    payer = await account(node, "payer")
    assert (payer.balance, payer.escrowed) == (8, 0)


@dataclass
class Replicas:
    """Replica A (registry, economy, workflow) and, once the test starts it, a workflow
    replica B sharing A's workflow store."""

    store: WorkflowStore
    a: Node
    b: Node | None = None

    async def start_b(self) -> Node:
        self.b = await start_node(
            MeshConfig(insecure_no_auth=True, grpc_port=0, grace_s=0),
            services=("workflow",),
            registry_target=self.a.grpc_address,
            economy_target=self.a.grpc_address,
            gateway=False,
            engine_config=config("B"),
            workflow_store=self.store,
        )
        return self.b


@pytest.fixture(params=["memory", "redis"])
async def replicas(request: pytest.FixtureRequest, agents: Running) -> AsyncIterator[Replicas]:
    store: WorkflowStore
    if request.param == "memory":
        store = MemoryWorkflowStore()
    else:
        from meshwright.workflow.redis_store import RedisWorkflowStore

        store = RedisWorkflowStore.from_url(request.getfixturevalue("redis_url"))
    a = await start_node(
        MeshConfig(insecure_no_auth=True, grpc_port=0, grace_s=0),
        gateway=False,
        engine_config=config("A"),
        workflow_store=store,
    )
    world = Replicas(store, a)
    try:
        yield world
    finally:
        await agents.stop()
        agents.runtimes.clear()
        if world.b is not None:
            await world.b.stop()
        await a.stop()
        await store.close()


async def test_a_takeover_that_runs_a_paid_task_on_another_agent_pays_it_once(
    replicas: Replicas, agents: Running
) -> None:
    """A runs t0 on X and is fenced off (it stalled: another replica claimed the lease)
    after X finished: A's capture lands, its record of the success does not. X leaves;
    B adopts the run and, X gone, runs t0 on Y. Its capture is TASK_ALREADY_PAID: t0
    succeeds, X keeps its pay, Y gets none, the payer pays once."""
    pair = replicas
    a = pair.a.engine
    assert a is not None
    first, first_gate, _ = gated("first", price=3)
    x = await agents.start(first, pair.a)
    await open_account(pair.a, "payer", 10)
    wf_id = await create(pair.a, work("t0"), budget=10, payer="payer")
    await eventually(lambda: running_on(pair.a, wf_id, x))
    await a.leases.stop()  # A stalls: it keeps running but renews no lease

    async def fenced() -> int | None:
        # C claims it (which fences A off) and holds it until the test lets go.
        if wf_id not in await pair.store.orphans(10):
            return None
        return await pair.store.claim(wf_id, "C", 60)

    c_token = await eventually(fenced)
    first_gate.set()
    await eventually(lambda: wf_id not in a._runs)  # its write was refused: it let go
    assert (await account(pair.a, x)).balance == 3  # but X was paid
    await agents.runtimes.pop(0).stop()
    second, second_gate, ran_y = gated("second", price=5)
    second_gate.set()
    y = await agents.start(second, pair.a)
    await pair.store.release(wf_id, c_token)
    b = await pair.start_b()  # adopts it at once
    done = await ended(b, wf_id)
    assert done.state == W.WORKFLOW_STATE_SUCCEEDED, done.tasks
    assert done.tasks[0].agent_id == y and len(ran_y) == 1
    assert (done.spent, done.tasks[0].cost) == (3, 3)
    assert (await account(pair.a, x)).balance == 3
    assert (await account(pair.a, y)).balance == 0
    payer = await account(pair.a, "payer")
    assert (payer.balance, payer.escrowed) == (7, 0)


# -- escrows live as long as their workflow ----------------------------------------------


@dataclass
class Ledger:
    """An economy with its maintenance running (escrows expire), behind a network hop, and
    the nodes (registry and workflow) started against it."""

    economy: Economy
    address: str
    nodes: list[Node] = field(default_factory=list)

    async def node(self, **engine: Any) -> Node:
        n = await start_node(
            MeshConfig(insecure_no_auth=True, grpc_port=0, grace_s=0),
            services=("registry", "workflow"),
            economy_target=self.address,
            gateway=False,
            engine_config=EngineConfig(
                initial_backoff_s=0.01, agent_wait_s=2, handoff_grace_s=0.2, **engine
            ),
        )
        self.nodes.append(n)
        return n

    async def escrow_of(self, node: Node, wf_id: str) -> E.Escrow:
        assert node.engine is not None
        wf = await node.engine.get_workflow(wf_id)
        reply = await node.clients["economy"].call(
            "GetEscrow", E.GetEscrowRequest(escrow_id=wf.escrow_id)
        )
        return reply.escrow


@pytest.fixture
async def ledger(agents: Running) -> AsyncIterator[Ledger]:
    economy = Economy(MemoryLedgerStore(), maintenance_interval_s=0.05)
    server = MeshServer(pipeline=insecure_pipeline(), port=0, grace_s=0)
    server.add(EconomyServicer(economy), E.DESCRIPTOR.services_by_name["EconomyService"])
    await server.start()
    economy.start()
    world = Ledger(economy, server.address)
    try:
        yield world
    finally:
        await agents.stop()  # before the nodes they register with
        agents.runtimes.clear()
        for n in world.nodes:
            await n.stop()
        await economy.stop()
        await server.stop(0)


async def test_a_workflow_outliving_its_escrow_ttl_keeps_it_renewed(
    ledger: Ledger, agents: Running
) -> None:
    node = await ledger.node(escrow_ttl_s=TTL_S)
    agent, gate, _ = gated("worker", price=1)
    worker = await agents.start(agent, node)
    await open_account(node, "payer", 10)
    wf_id = await create(node, work("t0"), budget=10, payer="payer")
    await eventually(lambda: running_on(node, wf_id, worker))
    opened = time.time()

    async def renewed_past_ttl() -> bool:
        escrow = await ledger.escrow_of(node, wf_id)
        assert escrow.state == E.ESCROW_STATE_OPEN, escrow  # never expired meanwhile
        # Open for three ttls already, and due only a ttl from now.
        return time.time() - opened > 3 * TTL_S

    await eventually(renewed_past_ttl, timeout=10)
    escrow = await ledger.escrow_of(node, wf_id)
    assert escrow.expire_time.ToMicroseconds() / 1e6 > time.time()
    gate.set()
    done = await ended(node, wf_id)
    assert done.state == W.WORKFLOW_STATE_SUCCEEDED, done.error
    escrow = await ledger.escrow_of(node, wf_id)
    assert (escrow.state, escrow.captured, escrow.released) == (E.ESCROW_STATE_CLOSED, 1, 9)
    payer = await account(node, "payer")
    assert (payer.balance, payer.escrowed) == (9, 0)


async def test_the_escrow_of_a_workflow_nobody_runs_expires_back_to_the_payer(
    ledger: Ledger, agents: Running
) -> None:
    """The only replica stops (a hand-off: no refund) and none takes the workflow over: no
    one renews its escrow, so the economy releases it to the payer after its ttl."""
    node = await ledger.node(escrow_ttl_s=TTL_S)
    agent, gate, _ = gated("worker", price=1)
    worker = await agents.start(agent, node)
    await open_account(node, "payer", 10)
    wf_id = await create(node, work("t0", "t1"), budget=10, payer="payer")
    await eventually(lambda: running_on(node, wf_id, worker))
    escrow = await ledger.escrow_of(node, wf_id)
    # Opened (and renewed) with the engine's ttl, not the economy's default of minutes.
    assert escrow.expire_time.ToMicroseconds() / 1e6 - time.time() <= TTL_S + 0.1
    assert node.engine is not None
    await node.engine.stop()
    assert node.engine.store is not None
    stored = await node.engine.store.get(wf_id)
    assert stored.state == W.WORKFLOW_STATE_RUNNING  # handed off, not ended

    async def expired() -> E.Escrow | None:
        escrow = await ledger.escrow_of(node, wf_id)
        return escrow if escrow.state == E.ESCROW_STATE_EXPIRED else None

    escrow = await eventually(expired, timeout=5)
    assert (escrow.captured, escrow.released) == (0, 10)
    payer = await account(node, "payer")
    assert (payer.balance, payer.escrowed) == (10, 0)
    gate.set()


async def test_a_renewal_refused_because_the_escrow_expired_fails_the_workflow(
    ledger: Ledger, agents: Running
) -> None:
    """A replica whose renewals stalled past the ttl: the economy released the budget,
    so the workflow cannot pay for more work and ends FAILED, saying why."""
    node = await ledger.node(escrow_ttl_s=TTL_S)
    agent, gate, ran = gated("worker", price=1)
    worker = await agents.start(agent, node)
    await open_account(node, "payer", 10)
    wf_id = await create(node, work("t0"), budget=10, payer="payer")
    await eventually(lambda: running_on(node, wf_id, worker))
    assert node.engine is not None
    await node.engine.escrows.stop()

    async def expired() -> bool:
        return (await ledger.escrow_of(node, wf_id)).state == E.ESCROW_STATE_EXPIRED

    await eventually(expired, timeout=5)
    node.engine.escrows.start()
    done = await ended(node, wf_id)
    assert done.state == W.WORKFLOW_STATE_FAILED
    assert "ESCROW_EXPIRED" in done.error and done.escrow_id in done.error, done.error
    assert done.tasks[0].state == W.TASK_RUN_STATE_CANCELLED
    payer = await account(node, "payer")
    assert (payer.balance, payer.escrowed) == (10, 0)
    gate.set()
    assert ran == []  # the attempt was cancelled before the gate opened


# -- failures restart an agent's streak ---------------------------------------------------


async def test_an_agent_that_fails_or_times_out_has_its_streak_reset(
    node: Node, agents: Running
) -> None:
    agent = Agent("flaky", capacity=4)

    @agent.skill("x.work", price=1)
    async def flaky(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        if input.get("fail"):
            raise TaskFailed("cannot", retryable=False)
        await asyncio.sleep(float(input.get("sleep", 0)))
        return {}

    flaky_id = await agents.start(agent, node)
    await open_account(node, "payer", 100)

    async def streak() -> int:
        return int((await account(node, flaky_id)).streak)

    async def workflow(tasks: list[dict[str, Any]]) -> W.Workflow:
        return await ended(node, await create(node, tasks, budget=10, payer="payer"))

    assert (await workflow(work("a", "b"))).state == W.WORKFLOW_STATE_SUCCEEDED
    assert await streak() == 2
    failed = await workflow(work("c", input={"fail": True}))
    assert failed.state == W.WORKFLOW_STATE_FAILED
    await eventually(lambda: _is(streak(), 0))  # reported in the background
    assert (await workflow(work("d"))).state == W.WORKFLOW_STATE_SUCCEEDED
    assert await streak() == 1
    slow = work("e", input={"sleep": 5}, timeout="0.2s", retry={"maxAttempts": 1})
    assert (await workflow(slow)).state == W.WORKFLOW_STATE_FAILED
    await eventually(lambda: _is(streak(), 0))


async def _is(value: Any, expected: object) -> bool:
    return bool(await value == expected)
