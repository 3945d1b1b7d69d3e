"""Two workflow replicas in one process sharing one store (memory, and a real redis-server):
cancel anywhere, hand-off, takeover after a lost lease (fencing), adoption of a workflow
whose creator died.

The same behaviours run across real processes on Redis in tests/e2e/test_durable.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf import json_format

from meshwright.agent import Agent, TaskContext
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.timeutil import timestamp
from meshwright.node import Node, start_node
from meshwright.workflow import EngineConfig, MemoryWorkflowStore, WorkflowStore
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import eventually
from tests.workflow.conftest import Running

W = workflow_pb2


def config(replica: str) -> EngineConfig:
    return EngineConfig(
        initial_backoff_s=0.01,
        agent_wait_s=5,
        lease_ttl_s=1.0,
        orphan_scan_s=0.1,
        handoff_grace_s=0.3,
        replica_id=replica,
    )


@dataclass
class Pair:
    store: WorkflowStore
    a: Node
    """Registry, economy and a workflow replica."""
    b: Node
    """A second workflow replica, reaching A's registry and economy over gRPC."""

    async def balance(self, account: str) -> tuple[int, int]:
        reply = await self.a.clients["economy"].call(
            "GetAccount", economy_pb2.GetAccountRequest(account_id=account)
        )
        return reply.account.balance, reply.account.escrowed


@pytest.fixture(params=["memory", "redis"])
async def pair(request: pytest.FixtureRequest, agents: Running) -> AsyncIterator[Pair]:
    store: WorkflowStore
    if request.param == "memory":
        store = MemoryWorkflowStore()
    else:
        from meshwright.workflow.redis_store import RedisWorkflowStore

        store = RedisWorkflowStore.from_url(request.getfixturevalue("redis_url"))
    base = MeshConfig(insecure_no_auth=True, grpc_port=0, http_port=0, grace_s=0)
    a = await start_node(base, gateway=False, engine_config=config("A"), workflow_store=store)
    b = await start_node(
        base,
        services=("workflow",),
        registry_target=a.grpc_address,
        economy_target=a.grpc_address,
        gateway=False,
        engine_config=config("B"),
        workflow_store=store,
    )
    try:
        yield Pair(store, a, b)
    finally:
        await agents.stop()
        agents.runtimes.clear()
        await b.stop()
        await a.stop()
        await store.close()


def worker(name: str, *, delay: float, price: int = 1) -> tuple[Agent, dict[str, int]]:
    """``x.work`` sleeps ``delay`` then counts its completion per task id (its side effect)."""
    agent = Agent(name, capacity=4)
    done: dict[str, int] = {}

    @agent.skill("x.work", price=price)
    async def work(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        await asyncio.sleep(delay)
        task = ctx.task_id.split(".")[1]
        done[task] = done.get(task, 0) + 1
        return {"task": task}

    return agent, done


async def create(node: Node, n: int, *, budget: int, payer: str) -> str:
    d = json_format.ParseDict(
        {
            "tasks": [{"id": f"t{i}", "skill": "x.work"} for i in range(n)],
            "budget": budget,
            "payerAccountId": payer,
        },
        W.WorkflowDefinition(),
    )
    reply = await node.clients["workflow"].call(
        "CreateWorkflow", W.CreateWorkflowRequest(definition=d)
    )
    return str(reply.workflow.workflow_id)


async def fund(pair: Pair, account: str, amount: int) -> None:
    await pair.a.clients["economy"].call(
        "CreateAccount",
        economy_pb2.CreateAccountRequest(account_id=account, initial_balance=amount),
    )


async def watch(node: Node, wf_id: str, after: int = 0) -> list[W.WorkflowEvent]:
    return [
        r.event
        async for r in node.clients["workflow"].stream(
            "WatchWorkflow", W.WatchWorkflowRequest(workflow_id=wf_id, after_sequence=after)
        )
    ]


async def owner_of_lease(pair: Pair, wf_id: str) -> str:
    return await pair.store.lease_holder(wf_id)


async def test_a_cancel_sent_to_the_other_replica_cancels_the_run(
    pair: Pair, agents: Running
) -> None:
    agent, done = worker("slow", delay=30)
    await agents.start(agent, pair.a)
    await fund(pair, "payer", 10)
    wf_id = await create(pair.a, 2, budget=10, payer="payer")
    assert await owner_of_lease(pair, wf_id) == "A"
    watch_a = asyncio.create_task(watch(pair.a, wf_id))
    watch_b = asyncio.create_task(watch(pair.b, wf_id))

    async def running() -> bool:
        wf = await pair.a.engine.get_workflow(wf_id)  # type: ignore[union-attr]
        return all(t.state == W.TASK_RUN_STATE_RUNNING for t in wf.tasks)

    await eventually(running)
    reply = await pair.b.clients["workflow"].call(
        "CancelWorkflow", W.CancelWorkflowRequest(workflow_id=wf_id, reason="not needed")
    )
    assert reply.workflow.state == W.WORKFLOW_STATE_CANCELLED
    assert reply.workflow.error == "not needed"
    for events in await asyncio.wait_for(asyncio.gather(watch_a, watch_b), 10):
        assert events[-1].type == W.WORKFLOW_EVENT_TYPE_WORKFLOW_CANCELLED
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert await pair.balance("payer") == (10, 0)
    assert done == {}


async def test_a_replica_that_stops_hands_its_runs_off(pair: Pair, agents: Running) -> None:
    agent, done = worker("steady", delay=0.2)
    await agents.start(agent, pair.a)
    await fund(pair, "payer", 100)
    wf_id = await create(pair.a, 12, budget=100, payer="payer")
    first = await watch_some(pair.a, wf_id, 3)
    assert pair.a.engine is not None and pair.b.engine is not None
    await pair.a.engine.stop()  # graceful: a hand-off, not a cancel
    ended = await asyncio.wait_for(pair.b.engine.wait(wf_id), 15)
    assert ended.state == W.WORKFLOW_STATE_SUCCEEDED, ended.error
    assert set(done) == {f"t{i}" for i in range(12)}
    assert set(done.values()) == {1}, done  # no side effect twice
    assert ended.spent == 12
    assert await pair.balance("payer") == (88, 0)  # each task paid exactly once
    # A watcher that follows on from the sequence it last saw: no gap, no duplicate.
    rest = await watch(pair.b, wf_id, first[-1].sequence)
    seqs = [e.sequence for e in first + rest]
    assert seqs == list(range(1, len(seqs) + 1))
    assert sum(e.type == W.WORKFLOW_EVENT_TYPE_WORKFLOW_CREATED for e in first + rest) == 1


async def _held_by(pair: Pair, wf_id: str, replica: str) -> bool:
    return await owner_of_lease(pair, wf_id) == replica


async def watch_some(node: Node, wf_id: str, count: int) -> list[W.WorkflowEvent]:
    out: list[W.WorkflowEvent] = []
    async for r in node.clients["workflow"].stream(
        "WatchWorkflow", W.WatchWorkflowRequest(workflow_id=wf_id)
    ):
        out.append(r.event)
        if len(out) == count:
            break
    return out


async def test_a_replica_that_lost_its_lease_cannot_write(pair: Pair, agents: Running) -> None:
    agent, done = worker("steady", delay=0.5)
    await agents.start(agent, pair.a)
    await fund(pair, "payer", 100)
    assert pair.a.engine is not None and pair.b.engine is not None
    wf_id = await create(pair.a, 16, budget=100, payer="payer")
    # A stalls (as in a long GC pause): it stops renewing but keeps running.
    await pair.a.engine.leases.stop()
    await eventually(lambda: _held_by(pair, wf_id, "B"), timeout=10)
    ended = await asyncio.wait_for(pair.b.engine.wait(wf_id), 15)
    assert ended.state == W.WORKFLOW_STATE_SUCCEEDED, ended.error
    # A's writes after the takeover were refused (fencing): it dropped the run.
    await eventually(lambda: wf_id not in pair.a.engine._runs, timeout=5)  # type: ignore[union-attr]
    events = await watch(pair.b, wf_id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    succeeded = [e.task_id for e in events if e.type == W.WORKFLOW_EVENT_TYPE_TASK_SUCCEEDED]
    assert sorted(succeeded) == sorted(f"t{i}" for i in range(16))  # each recorded once
    assert ended.spent == 16
    assert await pair.balance("payer") == (84, 0)  # and paid once, whoever ran it
    assert set(done) == {f"t{i}" for i in range(16)}


async def test_a_workflow_whose_creator_died_before_the_escrow_is_adopted(
    pair: Pair, agents: Running
) -> None:
    """Stored PENDING (escrow asked for, answer never recorded), lease lapsed: the adopting
    replica opens the escrow again (the same request id: the economy replays it) and runs."""
    agent, done = worker("steady", delay=0.0)
    await agents.start(agent, pair.a)
    await fund(pair, "payer", 50)
    assert pair.b.engine is not None
    d = W.WorkflowDefinition(budget=20, payer_account_id="payer")
    d.tasks.add(id="t0", skill="x.work")
    wf = W.Workflow(
        workflow_id="wf-orphan",
        state=W.WORKFLOW_STATE_PENDING,
        definition=d,
        create_time=timestamp(),
        owner="admin:anonymous",
        escrow_id="wf-orphan-e1",
    )
    wf.tasks.add(task_id="t0", skill="x.work", state=W.TASK_RUN_STATE_PENDING)
    # The dead creator did reach the economy before it died.
    await pair.b.engine.payments.open(
        escrow_id="wf-orphan-e1", payer="payer", amount=20, workflow_id="wf-orphan"
    )
    await pair.store.create(
        wf, request_id="", fingerprint="", events=[], replica="dead", lease_ttl_s=0.2
    )
    ended = await asyncio.wait_for(pair.b.engine.wait("wf-orphan"), 15)
    assert ended.state == W.WORKFLOW_STATE_SUCCEEDED, ended.error
    assert done == {"t0": 1}
    assert await pair.balance("payer") == (49, 0)  # escrowed once, 1 spent, 19 back
    events = await watch(pair.a, "wf-orphan")
    assert events[0].type == W.WORKFLOW_EVENT_TYPE_WORKFLOW_CREATED


async def test_an_adopted_pending_workflow_the_economy_refuses_ends_failed(
    pair: Pair, agents: Running
) -> None:
    agent, done = worker("steady", delay=0.0)
    await agents.start(agent, pair.a)
    await fund(pair, "poor", 5)
    assert pair.b.engine is not None
    d = W.WorkflowDefinition(budget=20, payer_account_id="poor")
    d.tasks.add(id="t0", skill="x.work")
    wf = W.Workflow(
        workflow_id="wf-poor",
        state=W.WORKFLOW_STATE_PENDING,
        definition=d,
        create_time=timestamp(),
        escrow_id="wf-poor-e1",
    )
    wf.tasks.add(task_id="t0", skill="x.work", state=W.TASK_RUN_STATE_PENDING)
    await pair.store.create(
        wf, request_id="", fingerprint="", events=[], replica="dead", lease_ttl_s=0.2
    )
    ended = await asyncio.wait_for(pair.b.engine.wait("wf-poor"), 15)
    assert ended.state == W.WORKFLOW_STATE_FAILED
    assert ended.error.startswith("escrow could not be opened: INSUFFICIENT_FUNDS")
    assert done == {}
    assert await pair.balance("poor") == (5, 0)


def _orphan(wf_id: str, payer: str) -> workflow_pb2.Workflow:
    d = W.WorkflowDefinition(budget=20, payer_account_id=payer)
    d.tasks.add(id="t0", skill="x.work")
    wf = W.Workflow(
        workflow_id=wf_id,
        state=W.WORKFLOW_STATE_PENDING,
        definition=d,
        create_time=timestamp(),
        owner="admin:anonymous",
        escrow_id=f"{wf_id}-e1",
    )
    wf.tasks.add(task_id="t0", skill="x.work", state=W.TASK_RUN_STATE_PENDING)
    return wf


async def _ended(pair: Pair, wf_id: str) -> workflow_pb2.Workflow:
    async def done() -> workflow_pb2.Workflow | None:
        assert pair.a.engine is not None
        wf = await pair.a.engine.get_workflow(wf_id)
        return wf if wf.state not in (W.WORKFLOW_STATE_PENDING, W.WORKFLOW_STATE_RUNNING) else None

    return await eventually(done, timeout=15)


def _economy_down_for(pair: Pair, calls: int) -> list[str]:
    """The first ``calls`` escrow openings (of either replica, whichever adopts) find no
    economy replica, as right after one was killed, before another passes its check."""
    from meshwright.mesh.balancer import NoHealthyEndpoint

    seen: list[str] = []
    for node in (pair.a, pair.b):
        assert node.engine is not None
        real = node.engine.payments.open

        async def open_(real: Any = real, **kw: Any) -> str:
            seen.append(kw["escrow_id"])
            if len(seen) <= calls:
                raise NoHealthyEndpoint("no healthy endpoint of EconomyService: none is known")
            result: str = await real(**kw)
            return result

        node.engine.payments.open = open_  # type: ignore[method-assign]
    return seen


async def test_an_adopted_pending_workflow_waits_out_an_unreachable_economy(
    pair: Pair, agents: Running
) -> None:
    agent, done = worker("steady", delay=0.0)
    await agents.start(agent, pair.a)
    await fund(pair, "payer", 50)
    seen = _economy_down_for(pair, 3)
    await pair.store.create(
        _orphan("wf-wait", "payer"), request_id="", fingerprint="", events=[], replica="dead",
        lease_ttl_s=0.2,
    )  # fmt: skip
    ended = await _ended(pair, "wf-wait")
    assert ended.state == W.WORKFLOW_STATE_SUCCEEDED, ended.error
    assert len(seen) == 4 and done == {"t0": 1}  # three refusals, then opened
    assert await pair.balance("payer") == (49, 0)


async def test_an_economy_unreachable_past_the_retry_window_fails_the_adopted_workflow(
    pair: Pair, agents: Running
) -> None:
    agent, done = worker("steady", delay=0.0)
    await agents.start(agent, pair.a)
    await fund(pair, "payer", 50)
    for node in (pair.a, pair.b):
        assert node.engine is not None
        node.engine.config = dataclasses.replace(node.engine.config, escrow_open_retry_s=0.5)
    seen = _economy_down_for(pair, 1000)
    await pair.store.create(
        _orphan("wf-gone", "payer"), request_id="", fingerprint="", events=[], replica="dead",
        lease_ttl_s=0.2,
    )  # fmt: skip
    ended = await _ended(pair, "wf-gone")
    assert ended.state == W.WORKFLOW_STATE_FAILED
    assert ended.error.startswith("escrow could not be opened: NO_HEALTHY_ENDPOINT"), ended.error
    assert 2 <= len(seen) <= 5 and done == {}  # retried with backoff, then gave up
    assert await pair.balance("payer") == (50, 0)


async def test_a_hand_off_longer_than_the_lease_keeps_the_lease_until_released(
    pair: Pair, agents: Running
) -> None:
    """Attempts that take longer than the lease TTL to finish during a hand-off: the
    stopping replica keeps renewing, so no other replica takes the runs (and sends the
    attempts again) before it released them."""
    agent, done = worker("slow", delay=1.5, price=0)
    await agents.start(agent, pair.a)
    assert pair.a.engine is not None and pair.b.engine is not None
    pair.a.engine.config = dataclasses.replace(pair.a.engine.config, handoff_grace_s=5.0)
    wf_id = await create(pair.a, 2, budget=0, payer="")

    async def running() -> bool:
        wf = await pair.a.engine.get_workflow(wf_id)  # type: ignore[union-attr]
        return all(t.state == W.TASK_RUN_STATE_RUNNING for t in wf.tasks)

    await eventually(running)
    stopping = asyncio.create_task(pair.a.engine.stop())
    holders: set[str] = set()
    while not stopping.done():
        holders.add(await owner_of_lease(pair, wf_id))
        await asyncio.sleep(0.05)
    await stopping
    assert "B" not in holders, holders  # lease TTL 1 s, hand-off ~1.5 s: still A's
    ended = await asyncio.wait_for(pair.b.engine.wait(wf_id), 15)
    assert ended.state == W.WORKFLOW_STATE_SUCCEEDED, ended.error
    assert done == {"t0": 1, "t1": 1}  # finished under A, not run again by B


async def test_a_run_taken_over_by_another_replica_stays_in_its_trace(
    pair: Pair, agents: Running
) -> None:
    """The run keeps its create call's trace context in the store: the attempts the
    second replica makes after the hand-off are children of the same create span."""
    from meshwright.mesh import telemetry

    store = telemetry.SpanStore(max_traces=100)
    telemetry.setup_tracing("replicas", store=store, exporters=[])
    try:
        agent, done = worker("traced", delay=0.2)
        await agents.start(agent, pair.a)
        await fund(pair, "payer", 100)
        wf_id = await create(pair.a, 8, budget=100, payer="payer")
        await watch_some(pair.a, wf_id, 3)
        assert pair.a.engine is not None and pair.b.engine is not None
        await pair.a.engine.stop()  # hand-off to B
        ended = await asyncio.wait_for(pair.b.engine.wait(wf_id), 15)
        assert ended.state == W.WORKFLOW_STATE_SUCCEEDED, ended.error
        stored = await pair.store.get(wf_id)
        trace_id = telemetry.trace_id_of(stored.traceparent)
        create_span = stored.traceparent.split("-")[2]
        telemetry.force_flush()
        attempts = [s for s in store.spans(trace_id) if s.name.startswith("task ")]
        by_replica = {s.attributes["meshwright.task_id"] for s in attempts}
        assert by_replica == {f"t{i}" for i in range(8)}  # every task's attempt, one trace
        assert {f"{s.parent.span_id:016x}" for s in attempts} == {create_span}
        # Both replicas ran some of them (B took over the ones A had not finished).
        assert {s.attributes["meshwright.replica"] for s in attempts} == {"A", "B"}
        ends = [s for s in store.spans(trace_id) if s.name == "workflow end"]
        assert len(ends) == 1 and ends[0].parent is not None
        # On Redis, the store's writes are spans of the run's trace too.
        writes = [s for s in store.spans(trace_id) if s.name == "redis apply"]
        on_redis = type(pair.store).__name__ == "RedisWorkflowStore"
        assert bool(writes) is on_redis
        assert all(s.attributes["db.system"] == "redis" for s in writes)
    finally:
        telemetry.shutdown_tracing()
