"""MemoryWorkflowStore: listing pages and bounded retention of finished workflows."""

from __future__ import annotations

import pytest

from meshwright.workflow import MemoryWorkflowStore, WorkflowNotFound
from meshwright.workflow.v1 import workflow_pb2

W = workflow_pb2


def wf(i: int, state: int = W.WORKFLOW_STATE_RUNNING) -> W.Workflow:
    return W.Workflow(workflow_id=f"wf-{i}", state=state)  # type: ignore[arg-type]


async def test_pages_newest_first_with_a_state_filter() -> None:
    store = MemoryWorkflowStore()
    for i in range(7):
        await store.create(
            wf(i, W.WORKFLOW_STATE_SUCCEEDED if i % 2 else W.WORKFLOW_STATE_RUNNING), ""
        )
    page, key = await store.list_workflows(state=0, after_key=None, limit=3)
    assert [w.workflow_id for w in page] == ["wf-6", "wf-5", "wf-4"]
    page, key = await store.list_workflows(state=0, after_key=key, limit=3)
    assert [w.workflow_id for w in page] == ["wf-3", "wf-2", "wf-1"]
    page, key = await store.list_workflows(state=0, after_key=key, limit=3)
    assert [w.workflow_id for w in page] == ["wf-0"] and key is None
    done, key = await store.list_workflows(
        state=W.WORKFLOW_STATE_SUCCEEDED, after_key=None, limit=3
    )
    assert [w.workflow_id for w in done] == ["wf-5", "wf-3", "wf-1"] and key is None


async def test_finished_workflows_beyond_the_cap_are_evicted_oldest_first() -> None:
    store = MemoryWorkflowStore(max_finished=2)
    for i in range(4):
        await store.create(wf(i), f"req-{i}")
    for i in (2, 0, 1):  # finish in this order
        w = await store.get(f"wf-{i}")
        w.state = W.WORKFLOW_STATE_SUCCEEDED
        await store.save(w)
    with pytest.raises(WorkflowNotFound):
        await store.get("wf-2")  # finished first, evicted first
    with pytest.raises(WorkflowNotFound):
        await store.events_after("wf-2", 0)
    assert await store.find_request("req-2", owner="") is None
    assert (await store.get("wf-0")).workflow_id == "wf-0"
    assert (await store.get("wf-3")).state == W.WORKFLOW_STATE_RUNNING  # live: never evicted
    page, _ = await store.list_workflows(state=0, after_key=None, limit=10)
    assert [w.workflow_id for w in page] == ["wf-3", "wf-1", "wf-0"]
