"""The run's group commit: one store write per loop turn, in order, lingering when busy."""

from __future__ import annotations

import asyncio

import pytest

from meshwright.workflow.memory_store import MemoryWorkflowStore
from meshwright.workflow.redis_store import RedisWorkflowStore
from meshwright.workflow.run import Committer
from meshwright.workflow.store import Change, LeaseLost, WorkflowStore
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import eventually

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


class GatedStore:
    """A real store whose writes wait for a permit each: the test decides when a write
    lands, so what each write carries does not depend on how fast the machine is."""

    def __init__(self, inner: WorkflowStore) -> None:
        self.inner = inner
        self.batches: list[list[str]] = []
        self.permits = asyncio.Semaphore(0)

    async def apply(self, workflow_id: str, token: int, change: Change) -> int:
        self.batches.append([e.message for e in change.events])
        await self.permits.acquire()
        return await self.inner.apply(workflow_id, token, change)


@pytest.mark.parametrize("linger_s", [0.0, 1.0])
async def test_a_busy_run_lingers_to_write_in_larger_batches(
    redis_url: str, linger_s: float
) -> None:
    """Changes that arrived while a write was on its way wait ``linger_s`` more, so what
    arrives during the wait joins them in one write; without a linger they go at once and
    a later change is a write of its own."""
    store = RedisWorkflowStore.from_url(redis_url)
    try:
        token = await stored(store)
        gated = GatedStore(store)
        c = Committer(gated, "wf-1", token, on_lost=lambda: None, linger_s=linger_s)  # type: ignore[arg-type]
        first = c.submit(Change(events=[ev("a")]))
        await eventually(lambda: len(gated.batches) == 1, interval=0.001)  # "a" is on its way
        second = c.submit(Change(events=[ev("b")]))  # arrives during that write: busy
        gated.permits.release()
        await first
        if linger_s:
            await asyncio.sleep(0.05)  # well inside the linger: "b" still waits
            assert gated.batches == [["a"]]
        else:
            await eventually(lambda: len(gated.batches) == 2, interval=0.001)  # "b" left at once
        third = c.submit(Change(events=[ev("c")]))
        await eventually(lambda: len(gated.batches) == 2, interval=0.001)
        for _ in range(2):
            gated.permits.release()
        await asyncio.gather(second, third)
        expected = [["a"], ["b", "c"]] if linger_s else [["a"], ["b"], ["c"]]
        assert gated.batches == expected
        events = await store.events_after("wf-1", 0)
        assert [e.message for e in events] == ["a", "b", "c"]  # all written, in order
    finally:
        await store.close()
