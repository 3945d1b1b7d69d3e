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


async def test_an_owner_filter_keeps_pages_full_and_tokens_exact() -> None:
    store = MemoryWorkflowStore()
    owners = ["a", "b", "a", "b", "b", "a", "a", "b"]
    for i, owner in enumerate(owners):
        await store.create(W.Workflow(workflow_id=f"wf-{i}", owner=owner), "")
    got, key = [], None
    while True:
        page, key = await store.list_workflows(state=0, after_key=key, limit=2, owner="a")
        got.append([w.workflow_id for w in page])
        if key is None:
            break
    assert got == [["wf-6", "wf-5"], ["wf-2", "wf-0"]]
    page, key = await store.list_workflows(state=0, after_key=None, limit=10, owner="c")
    assert page == [] and key is None


async def test_a_page_stops_at_its_byte_bound_but_holds_one_item() -> None:
    store = MemoryWorkflowStore()
    for i in range(3):
        await store.create(W.Workflow(workflow_id=f"wf-{i}", name="n" * 1000), "")
    one = (await store.get("wf-0")).ByteSize() + 8
    page, key = await store.list_workflows(state=0, after_key=None, limit=10, max_bytes=2 * one)
    assert [w.workflow_id for w in page] == ["wf-2", "wf-1"]
    page, key = await store.list_workflows(state=0, after_key=key, limit=10, max_bytes=2 * one)
    assert [w.workflow_id for w in page] == ["wf-0"] and key is None
    page, key = await store.list_workflows(state=0, after_key=None, limit=10, max_bytes=2 * one - 1)
    assert [w.workflow_id for w in page] == ["wf-2"]
    page, _ = await store.list_workflows(state=0, after_key=None, limit=10, max_bytes=1)
    assert [w.workflow_id for w in page] == ["wf-2"]  # bigger than the bound: still one


async def test_request_ids_are_kept_per_owner_with_their_fingerprint() -> None:
    store = MemoryWorkflowStore()
    await store.create(W.Workflow(workflow_id="wf-1", owner="client:a"), "r", "fp1")
    await store.create(W.Workflow(workflow_id="wf-2", owner="client:b"), "r", "fp2")
    first = await store.find_request("r", owner="client:a")
    assert first is not None and (first.workflow_id, first.fingerprint) == ("wf-1", "fp1")
    second = await store.find_request("r", owner="client:b")
    assert second is not None and second.workflow_id == "wf-2"
    assert await store.find_request("r", owner="client:c") is None
