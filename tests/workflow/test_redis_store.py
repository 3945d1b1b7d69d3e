"""RedisWorkflowStore beyond the protocol: durability, size, key layout, expiry, failures.

The protocol's rules are in test_store_conformance.py (run against this store too).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from google.protobuf import struct_pb2

from meshwright.mesh.errors import Unavailable
from meshwright.workflow.errors import WorkflowNotFound
from meshwright.workflow.redis_store import RedisWorkflowStore
from meshwright.workflow.store import Change, RequestRecord
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import eventually, free_port
from tests.redis_server import RedisServer

W = workflow_pb2
RUNNING = W.WORKFLOW_STATE_RUNNING
SUCCEEDED = W.WORKFLOW_STATE_SUCCEEDED

pytestmark = pytest.mark.timeout(60)


def make_wf(wf_id: str, n_tasks: int = 2, *, owner: str = "client:a") -> W.Workflow:
    wf = W.Workflow(workflow_id=wf_id, owner=owner, state=RUNNING, name="w")
    for i in range(n_tasks):
        wf.definition.tasks.add(id=f"t{i}", skill="echo")
        wf.tasks.add(task_id=f"t{i}", skill="echo", state=W.TASK_RUN_STATE_PENDING)
    return wf


async def create(store: RedisWorkflowStore, wf: W.Workflow, request_id: str = "") -> int:
    return await store.create(
        wf,
        request_id=request_id,
        fingerprint="fp",
        events=[W.WorkflowEvent(type=W.WORKFLOW_EVENT_TYPE_WORKFLOW_CREATED)],
        replica="r1",
        lease_ttl_s=60,
    )


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisWorkflowStore]:
    s = RedisWorkflowStore.from_url(redis_url)
    try:
        yield s
    finally:
        await s.close()


async def test_an_aof_restart_loses_nothing_acknowledged(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", aof=True)
    server.start()
    try:
        store = RedisWorkflowStore.from_url(server.url)
        token = await create(store, make_wf("wf-1", 3), request_id="req-1")
        for i in range(3):
            task = W.TaskRun(task_id=f"t{i}", state=W.TASK_RUN_STATE_SUCCEEDED, cost=i + 1)
            ev = W.WorkflowEvent(type=W.WORKFLOW_EVENT_TYPE_TASK_SUCCEEDED, task_id=f"t{i}")
            await store.apply("wf-1", token, Change(tasks=[task], events=[ev], spent_delta=i + 1))
        await store.request_cancel("wf-1", "stop")
        await store.put_template(W.Template(name="tpl"))
        before = await store.get("wf-1")
        url = server.url
        server.kill()  # SIGKILL: only what was fsynced survives
        await store.close()
        server.restart()  # same directory, same port
        assert server.url == url
        store = RedisWorkflowStore.from_url(server.url)
        try:
            assert await store.get("wf-1") == before
            assert before.spent == 6 and before.tasks[2].cost == 3
            assert [e.sequence for e in await store.events_after("wf-1", 0)] == [1, 2, 3, 4]
            assert await store.find_request("req-1", owner="client:a") == RequestRecord(
                "wf-1", "fp"
            )
            renewal = await store.renew("r1", {"wf-1": token}, 60)
            assert renewal.lost == frozenset() and dict(renewal.cancels) == {"wf-1": "stop"}
            assert await store.apply("wf-1", token, Change(events=[W.WorkflowEvent()])) == 5
            assert await store.get_template("tpl") is not None
            page, _ = await store.list_workflows(state=0, after_key=None, limit=10)
            assert [w.workflow_id for w in page] == ["wf-1"]
        finally:
            await store.close()
    finally:
        server.stop()


async def test_a_ten_thousand_task_workflow_round_trips(store: RedisWorkflowStore) -> None:
    wf = make_wf("big", 10_000)
    started = time.monotonic()
    token = await create(store, wf)
    got = await store.get("big")
    assert got == wf
    changed = []
    for i in range(10_000):
        output = struct_pb2.Struct()
        output.update({"i": i})
        changed.append(W.TaskRun(task_id=f"t{i}", state=W.TASK_RUN_STATE_SUCCEEDED, output=output))
    events = [W.WorkflowEvent(task_id=f"t{i}") for i in range(10_000)]
    assert await store.apply("big", token, Change(tasks=changed, events=events)) == 10_001
    got = await store.get("big")
    assert [t.task_id for t in got.tasks] == [f"t{i}" for i in range(10_000)]
    assert got.tasks[9_999].output["i"] == 9_999
    assert all(t.state == W.TASK_RUN_STATE_SUCCEEDED for t in got.tasks)
    log = await store.events_after("big", 0, limit=10_001)
    assert [e.sequence for e in log] == list(range(1, 10_002))
    page, _ = await store.list_workflows(state=0, after_key=None, limit=1)
    assert page[0] == got
    assert time.monotonic() - started < 30


async def test_every_key_of_a_workflow_carries_its_hash_tag(store: RedisWorkflowStore) -> None:
    ids = ["plain", "with:colon", "odd}id", "x{y"]
    for wf_id in ids:
        token = await create(store, make_wf(wf_id), request_id=f"req-{wf_id}")
        await store.apply(wf_id, token, Change(events=[W.WorkflowEvent()]))
        await store.request_cancel(wf_id, "why")
    await store.put_template(W.Template(name="tpl"))
    keys = sorted([k.decode() async for k in store._r.scan_iter("*")])
    shared = {"mw:created", "mw:index", "mw:live", "mw:tpl"}
    requests = {k for k in keys if k.startswith("mw:req:")}
    assert requests == {f"mw:req:client%3Aa:req-{wf_id}" for wf_id in ids}
    per_workflow = [k for k in keys if k not in shared and k not in requests]
    assert len(per_workflow) == 3 * len(ids)  # header, tasks, events
    for wf_id in ids:
        tagged = [k for k in per_workflow if k.startswith(f"mw:wf:{{{wf_id}}}")]
        assert sorted(tagged) == sorted(f"mw:wf:{{{wf_id}}}{suffix}" for suffix in ("", ":t", ":e"))
    assert shared <= set(keys)


async def test_request_keys_expire_with_their_workflow_and_go_with_a_discard(
    redis_url: str,
) -> None:
    store = RedisWorkflowStore.from_url(redis_url, retention_s=0.2)
    try:
        r = store._r
        token = await create(store, make_wf("done"), request_id="r-done")
        await create(store, make_wf("live"), request_id="r-live")
        discarded = await create(store, make_wf("gone"), request_id="r-gone")
        assert await r.pttl("mw:req:client%3Aa:r-done") == -1  # live: no TTL
        await store.apply("done", token, Change(state=SUCCEEDED))
        assert 0 < await r.pttl("mw:req:client%3Aa:r-done") <= 200
        await store.discard("gone", discarded)
        assert not await r.exists("mw:req:client%3Aa:r-gone")
        assert await store.find_request("r-gone", owner="client:a") is None

        async def expired() -> bool:
            return not await r.exists("mw:req:client%3Aa:r-done", "mw:wf:{done}")

        await eventually(expired, timeout=5)
        assert await store.find_request("r-done", owner="client:a") is None
        assert await r.pttl("mw:req:client%3Aa:r-live") == -1
        # Listing drops the expired workflow's index entry as it meets it.
        assert await r.zcard("mw:index") == 2
        page, _ = await store.list_workflows(state=0, after_key=None, limit=10)
        assert [w.workflow_id for w in page] == ["live"]
        assert await r.zrange("mw:index", 0, -1) == [b"live"]
    finally:
        await store.close()


async def test_two_prefixes_share_a_server_without_seeing_each_other(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        one = RedisWorkflowStore(client, prefix="one")
        two = RedisWorkflowStore(client, prefix="two")
        await create(one, make_wf("wf-1"), request_id="r")
        await create(two, make_wf("wf-1"), request_id="r")  # same id: another namespace
        with pytest.raises(WorkflowNotFound):
            await two.get("wf-2")
        assert (await one.list_workflows(state=0, after_key=None, limit=10))[0][0].workflow_id
        assert all(k.startswith((b"one:", b"two:")) for k in await client.keys("*"))
        await one.close()  # the caller's client stays open
        assert await client.ping()
    finally:
        await client.aclose()


async def test_an_unreachable_server_is_unavailable() -> None:
    store = RedisWorkflowStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(Unavailable):
            await store.get("wf-1")
        with pytest.raises(Unavailable):
            await store.apply("wf-1", 1, Change())
    finally:
        await store.close()


def test_from_url_takes_rediss_and_a_database() -> None:
    store = RedisWorkflowStore.from_url("rediss://127.0.0.1:6390/3", max_connections=5)
    pool = store._r.connection_pool
    assert pool.connection_class.__name__ == "SSLConnection"
    assert pool.connection_kwargs["db"] == 3 and pool.max_connections == 5
    with pytest.raises(ValueError):
        RedisWorkflowStore.from_url("redis://127.0.0.1:6390/0", retention_s=0)
