"""The run's group commit: one store write per loop turn, in order, lingering when busy."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from meshwright.workflow.memory_store import MemoryWorkflowStore
from meshwright.workflow.redis_store import RedisWorkflowStore
from meshwright.workflow.run import Committer
from meshwright.workflow.store import Change, LeaseLost, WorkflowStore
from meshwright.workflow.v1 import workflow_pb2

W = workflow_pb2


async def stored(store: WorkflowStore) -> int:
    wf = W.Workflow(workflow_id="wf-1", state=W.WORKFLOW_STATE_RUNNING)
    return await store.create(
        wf, request_id="", fingerprint="", events=[], replica="r", lease_ttl_s=60
    )


def ev(msg: str) -> W.WorkflowEvent:
    return W.WorkflowEvent(type=W.WORKFLOW_EVENT_TYPE_TASK_STARTED, message=msg)


async def test_changes_of_one_loop_turn_are_one_write_in_order() -> None:
    store = MemoryWorkflowStore()
    token = await stored(store)
    lost: list[bool] = []
    c = Committer(store, "wf-1", token, on_lost=lambda: lost.append(True))
    futures = [c.submit(Change(events=[ev(str(i))], spent_delta=1)) for i in range(50)]
    await asyncio.gather(*futures)
    assert store._entries["wf-1"].last_write == f"{token}.1"  # one apply
    events = await store.events_after("wf-1", 0)
    assert [e.message for e in events] == [str(i) for i in range(50)]
    assert (await store.get("wf-1")).spent == 50
    # A later turn is a second write.
    await c.submit(Change(events=[ev("late")]))
    assert store._entries["wf-1"].last_write == f"{token}.2"
    assert lost == []


async def test_a_lost_lease_fails_every_waiting_change_and_later_ones() -> None:
    store = MemoryWorkflowStore(clock=lambda: 0.0)
    token = await stored(store)
    await store.release("wf-1", token)
    assert await store.claim("wf-1", "other", 60) == token + 1
    lost: list[bool] = []
    c = Committer(store, "wf-1", token, on_lost=lambda: lost.append(True))
    first = c.submit(Change(events=[ev("a")]))
    with pytest.raises(LeaseLost):
        await first
    assert lost == [True] and c.lost
    with pytest.raises(LeaseLost):
        await c.submit(Change(events=[ev("b")]))
    assert await store.events_after("wf-1", 0) == []


async def test_a_busy_run_lingers_to_write_in_larger_batches(redis_url: str) -> None:
    """Changes arriving while a write is on its way wait ``linger_s`` more: the same
    stream of changes then takes several times fewer writes (counted by the server)."""
    store = RedisWorkflowStore.from_url(redis_url)
    r = aioredis.from_url(redis_url)
    try:
        token = await stored(store)
        writes: dict[float, int] = {}
        for linger_s in (0.0, 0.005):
            c = Committer(store, "wf-1", token, on_lost=lambda: None, linger_s=linger_s)
            await r.config_resetstat()
            futures = []
            for i in range(400):  # a change every loop turn, as a busy engine
                futures.append(c.submit(Change(events=[ev(str(i))])))
                await asyncio.sleep(0)
            await asyncio.gather(*futures)
            writes[linger_s] = int((await r.info("commandstats"))["cmdstat_evalsha"]["calls"])
        events = await store.events_after("wf-1", 0, limit=1000)
        assert [e.sequence for e in events] == list(range(1, 801))  # all, in order
        assert writes[0.005] * 3 <= writes[0.0], writes
    finally:
        await r.aclose()
        await store.close()
