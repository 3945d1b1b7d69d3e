"""The WorkflowStore protocol, one suite for every store: memory and a real redis-server.

Each test runs once per store (params "memory" and "redis"). Time: the memory store
runs on a fake clock (leases and retention measured exactly); the Redis store's
leases run on the server's clock, so its tests wait real (short) times and pin
the bounds with margins. Limits are tested at exactly the limit and one past.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from google.protobuf import timestamp_pb2

from meshwright.workflow.errors import TemplateExists, WorkflowExists, WorkflowNotFound
from meshwright.workflow.memory_store import MemoryWorkflowStore
from meshwright.workflow.store import (
    Change,
    LeaseLost,
    RequestExists,
    RequestRecord,
    page_item_bytes,
)
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import eventually

W = workflow_pb2
RUNNING = W.WORKFLOW_STATE_RUNNING
SUCCEEDED = W.WORKFLOW_STATE_SUCCEEDED
FAILED = W.WORKFLOW_STATE_FAILED
CANCELLED = W.WORKFLOW_STATE_CANCELLED

pytestmark = pytest.mark.timeout(30)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    """One store under test, and how time passes for it."""

    kind: str
    make: Callable[..., Any]
    """A new store (keyword: retention_s) on the same backend (and clock)."""
    clock: FakeClock | None
    ttl: float
    """A lease TTL short enough to wait out."""
    store: Any = None
    extra: list[Any] = field(default_factory=list)

    async def elapse(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.now += seconds
        else:
            await asyncio.sleep(seconds)

    def another(self, **kwargs: Any) -> Any:
        store = self.make(**kwargs)
        self.extra.append(store)
        return store


@pytest.fixture(params=["memory", "redis"])
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        clock = FakeClock()

        def make_memory(**kwargs: Any) -> MemoryWorkflowStore:
            return MemoryWorkflowStore(clock=clock, **kwargs)

        harness = Harness("memory", make_memory, clock, ttl=10.0)
    else:
        from meshwright.workflow.redis_store import RedisWorkflowStore

        url = request.getfixturevalue("redis_url")

        def make_redis(**kwargs: Any) -> RedisWorkflowStore:
            return RedisWorkflowStore.from_url(url, **kwargs)

        harness = Harness("redis", make_redis, None, ttl=0.5)
    harness.store = harness.make()
    try:
        yield harness
    finally:
        for store in [harness.store, *harness.extra]:
            await store.close()


# -- helpers --------------------------------------------------------------------------


def make_wf(
    wf_id: str,
    *,
    owner: str = "client:a",
    state: int = RUNNING,
    tasks: Sequence[str] = ("t1", "t2"),
    name: str = "",
) -> W.Workflow:
    wf = W.Workflow(workflow_id=wf_id, owner=owner, state=state, name=name)  # type: ignore[arg-type]
    for task_id in tasks:
        wf.definition.tasks.add(id=task_id, skill="echo")
        wf.tasks.add(task_id=task_id, skill="echo", state=W.TASK_RUN_STATE_PENDING)
    return wf


def event(kind: int = W.WORKFLOW_EVENT_TYPE_TASK_STARTED, msg: str = "") -> W.WorkflowEvent:
    return W.WorkflowEvent(type=kind, message=msg)  # type: ignore[arg-type]


async def create(
    store: Any,
    wf: W.Workflow | str,
    *,
    request_id: str = "",
    fingerprint: str = "",
    events: Sequence[W.WorkflowEvent] = (),
    replica: str = "r1",
    ttl: float = 60.0,
) -> int:
    if isinstance(wf, str):
        wf = make_wf(wf)
    return int(
        await store.create(
            wf,
            request_id=request_id,
            fingerprint=fingerprint,
            events=list(events),
            replica=replica,
            lease_ttl_s=ttl,
        )
    )


def ids(page: Sequence[W.Workflow]) -> list[str]:
    return [w.workflow_id for w in page]


def seqs(events: Sequence[W.WorkflowEvent]) -> list[int]:
    return [e.sequence for e in events]


async def finish(store: Any, wf_id: str, token: int, state: int = SUCCEEDED) -> int:
    return int(await store.apply(wf_id, token, Change(state=state)))


# -- creation -------------------------------------------------------------------------


async def test_create_stores_header_tasks_and_events_read_back_as_given(h: Harness) -> None:
    wf = make_wf("wf-1", tasks=("c", "a", "b"), name="n")
    wf.spent, wf.error, wf.escrow_id = 7, "e", "esc-1"
    wf.create_time.FromSeconds(100)
    events = [event(W.WORKFLOW_EVENT_TYPE_WORKFLOW_CREATED), event(msg="x")]
    token = await create(h.store, wf, events=events)
    assert token >= 1
    assert seqs(events) == [1, 2]  # the store numbered the objects passed
    got = await h.store.get("wf-1")
    assert got == wf
    assert [t.task_id for t in got.tasks] == ["c", "a", "b"]  # definition order
    got.tasks[0].state = W.TASK_RUN_STATE_SUCCEEDED  # a copy: the store is not changed
    assert (await h.store.get("wf-1")) == wf
    assert await h.store.state_of("wf-1") == RUNNING
    stored = await h.store.events_after("wf-1", 0)
    assert seqs(stored) == [1, 2] and stored[1].message == "x"


async def test_a_workflow_id_is_taken_once_and_nothing_is_written_by_the_loser(
    h: Harness,
) -> None:
    await create(h.store, make_wf("wf-1", tasks=("t1",)), events=[event()])
    loser = make_wf("wf-1", tasks=("other",), owner="client:b")
    with pytest.raises(WorkflowExists):
        await create(h.store, loser, request_id="r", events=[event(), event()], replica="r2")
    got = await h.store.get("wf-1")
    assert [t.task_id for t in got.tasks] == ["t1"] and got.owner == "client:a"
    assert seqs(await h.store.events_after("wf-1", 0)) == [1]
    assert await h.store.find_request("r", owner="client:b") is None


async def test_request_ids_are_unique_per_owner_and_the_refusal_names_the_first(
    h: Harness,
) -> None:
    await create(h.store, make_wf("wf-1", owner="client:a"), request_id="r", fingerprint="fp1")
    with pytest.raises(RequestExists) as refused:
        await create(h.store, make_wf("wf-2", owner="client:a"), request_id="r", fingerprint="x")
    assert refused.value.record == RequestRecord("wf-1", "fp1")
    with pytest.raises(WorkflowNotFound):
        await h.store.get("wf-2")  # nothing written
    # Another owner may use the same request id; neither sees the other's.
    await create(h.store, make_wf("wf-3", owner="client:b"), request_id="r", fingerprint="fp2")
    assert await h.store.find_request("r", owner="client:a") == RequestRecord("wf-1", "fp1")
    assert await h.store.find_request("r", owner="client:b") == RequestRecord("wf-3", "fp2")
    assert await h.store.find_request("r", owner="client:c") is None
    # Owners and request ids holding the separator do not collide.
    await create(h.store, make_wf("wf-4", owner="x:y"), request_id="z", fingerprint="1")
    await create(h.store, make_wf("wf-5", owner="x"), request_id="y:z", fingerprint="2")
    assert await h.store.find_request("z", owner="x:y") == RequestRecord("wf-4", "1")
    assert await h.store.find_request("y:z", owner="x") == RequestRecord("wf-5", "2")
    # An empty request id is no request id: never recorded, never refused.
    await create(h.store, make_wf("wf-6"))
    await create(h.store, make_wf("wf-7"))
    assert await h.store.find_request("", owner="client:a") is None


async def test_discard_frees_the_id_and_the_request_id_and_is_fenced(h: Harness) -> None:
    events = [event()]
    token = await create(h.store, "wf-1", request_id="r", fingerprint="fp", events=events)
    with pytest.raises(LeaseLost):
        await h.store.discard("wf-1", token + 1)
    assert (await h.store.get("wf-1")).workflow_id == "wf-1"  # nothing deleted
    await h.store.discard("wf-1", token)
    with pytest.raises(WorkflowNotFound):
        await h.store.get("wf-1")
    with pytest.raises(WorkflowNotFound):
        await h.store.events_after("wf-1", 0)
    with pytest.raises(WorkflowNotFound):
        await h.store.discard("wf-1", token)
    assert await h.store.find_request("r", owner="client:a") is None
    assert await h.store.orphans(10) == []
    assert (await h.store.list_workflows(state=0, after_key=None, limit=10)) == ([], None)
    # Both can be used again; the new workflow starts a fresh log.
    again = [event(msg="again")]
    await create(h.store, make_wf("wf-1", tasks=("t9",)), request_id="r", events=again)
    assert [t.task_id for t in (await h.store.get("wf-1")).tasks] == ["t9"]
    log = await h.store.events_after("wf-1", 0)
    assert seqs(log) == [1] and log[0].message == "again"


async def test_a_finished_workflow_cannot_be_discarded(h: Harness) -> None:
    token = await create(h.store, "wf-1")
    await finish(h.store, "wf-1", token)
    with pytest.raises(LeaseLost):
        await h.store.discard("wf-1", token)
    assert await h.store.state_of("wf-1") == SUCCEEDED


async def test_an_unknown_workflow(h: Harness) -> None:
    for call in (
        h.store.get("nope"),
        h.store.state_of("nope"),
        h.store.apply("nope", 1, Change(state=RUNNING)),
        h.store.discard("nope", 1),
        h.store.events_after("nope", 0),
        h.store.request_cancel("nope", "why"),
    ):
        with pytest.raises(WorkflowNotFound):
            await call
    assert await h.store.claim("nope", "r1", 10) is None
    await h.store.release("nope", 1)  # nothing, no error
    renewal = await h.store.renew("r1", {"nope": 1}, 10)
    assert renewal.lost == frozenset({"nope"}) and dict(renewal.cancels) == {}
    assert await h.store.find_request("r", owner="client:a") is None


# -- transitions ----------------------------------------------------------------------


async def test_apply_merges_fields_and_numbers_events_on(h: Harness) -> None:
    token = await create(h.store, make_wf("wf-1", tasks=("a", "b", "c")), events=[event()])
    first = W.TaskRun(task_id="b", state=W.TASK_RUN_STATE_RUNNING, attempts=1)
    last = W.TaskRun(task_id="b", state=W.TASK_RUN_STATE_SUCCEEDED, attempts=1, cost=3)
    events = [event(msg="one"), event(msg="two")]
    change = Change(tasks=[first, last], events=events, spent_delta=3, error="oops")
    assert await h.store.apply("wf-1", token, change) == 3
    assert seqs(events) == [2, 3]
    got = await h.store.get("wf-1")
    assert [t.task_id for t in got.tasks] == ["a", "b", "c"]
    assert got.tasks[1] == last  # a task named twice: the last wins
    assert got.tasks[0].state == W.TASK_RUN_STATE_PENDING  # untouched
    assert (got.state, got.spent, got.error) == (RUNNING, 3, "oops")
    # 0 / None leave fields; deltas add up; "" is a value.
    end = timestamp_pb2.Timestamp(seconds=500)
    assert await h.store.apply("wf-1", token, Change(spent_delta=4, end_time=end)) == 3
    got = await h.store.get("wf-1")
    assert (got.state, got.spent, got.error, got.end_time) == (RUNNING, 7, "oops", end)
    assert await h.store.apply("wf-1", token, Change(error="", spent_delta=-2)) == 3
    got = await h.store.get("wf-1")
    assert (got.spent, got.error) == (5, "")
    assert await h.store.apply("wf-1", token, Change(state=W.WORKFLOW_STATE_PENDING)) == 3
    assert await h.store.state_of("wf-1") == W.WORKFLOW_STATE_PENDING
    assert await h.store.apply("wf-1", token, Change()) == 3  # an empty change
    log = await h.store.events_after("wf-1", 0)
    assert seqs(log) == [1, 2, 3] and [e.message for e in log] == ["", "one", "two"]


async def test_sequences_run_one_to_n_without_gaps_across_applies(h: Harness) -> None:
    token = await create(h.store, "wf-1")
    for i in range(5):
        batch = [event(msg=f"{i}.{j}") for j in range(i)]
        await h.store.apply("wf-1", token, Change(events=batch))
    log = await h.store.events_after("wf-1", 0)
    assert seqs(log) == list(range(1, 11))
    assert log[9].message == "4.3"


async def test_a_retried_write_id_is_not_written_twice(h: Harness) -> None:
    token = await create(h.store, "wf-1")
    first = Change(events=[event(msg="a")], spent_delta=3, write_id="1.1")
    assert await h.store.apply("wf-1", token, first) == 1
    again = Change(events=[event(msg="a")], spent_delta=3, write_id="1.1")
    assert await h.store.apply("wf-1", token, again) == 1  # the reply of the first was lost
    assert (await h.store.get("wf-1")).spent == 3
    # Another id, or none, is written; only the last id counts as "the same write".
    assert await h.store.apply("wf-1", token, Change(events=[event()], write_id="1.2")) == 2
    assert await h.store.apply("wf-1", token, Change(events=[event()])) == 3
    assert await h.store.apply("wf-1", token, Change(events=[event()], write_id="1.1")) == 4
    assert seqs(await h.store.events_after("wf-1", 0)) == [1, 2, 3, 4]


async def test_a_stale_token_writes_nothing(h: Harness) -> None:
    old = await create(h.store, "wf-1", ttl=h.ttl)
    await h.elapse(h.ttl * 1.5)
    new = await h.store.claim("wf-1", "r2", 60)
    assert new is not None and new > old
    before = await h.store.get("wf-1")
    stale = Change(
        tasks=[W.TaskRun(task_id="t1", state=W.TASK_RUN_STATE_FAILED)],
        events=[event()],
        state=FAILED,
        spent_delta=9,
        error="stale",
    )
    with pytest.raises(LeaseLost):
        await h.store.apply("wf-1", old, stale)
    with pytest.raises(LeaseLost):
        await h.store.apply("wf-1", new + 1, stale)  # a token from the future too
    with pytest.raises(LeaseLost):
        await h.store.discard("wf-1", old)
    assert stale.events[0].sequence == 0
    assert await h.store.get("wf-1") == before
    assert await h.store.events_after("wf-1", 0) == []
    assert await h.store.apply("wf-1", new, Change(events=[event()])) == 1


# -- ownership ------------------------------------------------------------------------


async def test_claim_only_after_the_lease_lapsed_and_tokens_grow(h: Harness) -> None:
    token = await create(h.store, "wf-1", ttl=h.ttl)
    assert await h.store.claim("wf-1", "r2", h.ttl) is None  # held
    if h.clock is not None:
        await h.elapse(h.ttl - 0.5)
        assert await h.store.claim("wf-1", "r2", h.ttl) is None  # before the end
        await h.elapse(0.5)  # exactly at the end: lapsed
    else:
        await h.elapse(h.ttl / 2)
        assert await h.store.claim("wf-1", "r2", h.ttl) is None
        await h.elapse(h.ttl / 2 + 0.05)
    second = await h.store.claim("wf-1", "r2", 60)
    assert second is not None and second > token
    assert await h.store.claim("wf-1", "r3", 60) is None  # r2 holds it now
    # The old holder's release is stale: nothing changes.
    await h.store.release("wf-1", token)
    assert await h.store.claim("wf-1", "r3", 60) is None
    # The holder's release hands it over at once.
    await h.store.release("wf-1", second)
    third = await h.store.claim("wf-1", "r3", 60)
    assert third is not None and third > second
    # A replica may claim its own lapsed lease back, under a new token.
    await h.store.release("wf-1", third)
    fourth = await h.store.claim("wf-1", "r3", 60)
    assert fourth is not None and fourth > third
    await finish(h.store, "wf-1", fourth)
    await h.store.release("wf-1", fourth)
    assert await h.store.claim("wf-1", "r1", 60) is None  # finished


async def test_renew_extends_held_leases_and_reports_lost_ones_and_cancels(
    h: Harness,
) -> None:
    a = await create(h.store, "a", ttl=h.ttl)
    b = await create(h.store, "b", ttl=h.ttl)
    c = await create(h.store, "c", ttl=h.ttl)
    d = await create(h.store, "d", ttl=h.ttl, replica="r2")
    e = await create(h.store, "e", ttl=h.ttl)
    await finish(h.store, "e", e)
    assert await h.store.request_cancel("b", "first")
    assert await h.store.request_cancel("b", "second")
    await h.elapse(h.ttl * 0.6)
    renewal = await h.store.renew("r1", {"a": a, "b": b, "c": c + 1, "d": d, "e": e}, h.ttl)
    # c: another token; d: another replica; e: finished.
    assert renewal.lost == frozenset({"c", "d", "e"})
    assert dict(renewal.cancels) == {"b": "first"}
    await h.elapse(h.ttl * 0.6)  # past the first lease, not past the renewed one
    assert await h.store.claim("a", "r2", 60) is None
    assert await h.store.claim("b", "r2", 60) is None
    got = await h.store.claim("c", "r2", 60)  # not renewed: lapsed
    assert got is not None and got > c
    renewal = await h.store.renew("r1", {"c": c}, h.ttl)
    assert renewal.lost == frozenset({"c"})
    assert (await h.store.renew("r1", {}, h.ttl)).lost == frozenset()


async def test_orphans_oldest_lapse_first_and_the_limit_is_exact(h: Harness) -> None:
    await create(h.store, "late", ttl=h.ttl * 0.6)
    await create(h.store, "early", ttl=h.ttl * 0.2)
    await create(h.store, "middle", ttl=h.ttl * 0.4)
    await create(h.store, "held", ttl=60)
    released = await create(h.store, "released", ttl=60)
    done = await create(h.store, "done", ttl=h.ttl * 0.1)
    await finish(h.store, "done", done)
    await h.store.release("released", released)
    assert await h.store.orphans(10) == ["released"]  # released: lapsed at once
    await h.elapse(h.ttl * 0.6 + 0.05)
    every = ["released", "early", "middle", "late"]
    assert await h.store.orphans(4) == every
    assert await h.store.orphans(3) == every[:3]
    assert await h.store.orphans(5) == every
    assert await h.store.orphans(1) == ["released"]
    await h.store.claim("early", "r2", 60)
    assert await h.store.orphans(10) == ["released", "middle", "late"]


# -- cancellation ---------------------------------------------------------------------


async def test_request_cancel_keeps_the_first_reason_and_is_false_once_finished(
    h: Harness,
) -> None:
    token = await create(h.store, "wf-1")
    assert await h.store.request_cancel("wf-1", "") is True  # an empty reason is a reason
    assert await h.store.request_cancel("wf-1", "later") is True
    renewal = await h.store.renew("r1", {"wf-1": token}, 60)
    assert dict(renewal.cancels) == {"wf-1": ""}
    await finish(h.store, "wf-1", token, CANCELLED)
    assert await h.store.request_cancel("wf-1", "too late") is False
    # Created finished: nothing to cancel either.
    await create(h.store, make_wf("wf-2", state=FAILED))
    assert await h.store.request_cancel("wf-2", "x") is False


async def test_cancel_signals_deliver_ids_and_end_when_the_store_closes(h: Harness) -> None:
    await create(h.store, "wf-1")
    signals = h.store.cancel_signals()
    first: asyncio.Future[str] = asyncio.ensure_future(signals.__anext__())
    # Best effort from the moment the iterator listens: ask until one arrives.
    deadline = time.monotonic() + 10
    while not first.done() and time.monotonic() < deadline:
        assert await h.store.request_cancel("wf-1", "stop")
        await asyncio.wait({first}, timeout=0.1)
    assert first.result() == "wf-1"
    second = asyncio.ensure_future(signals.__anext__())
    await h.store.request_cancel("wf-1", "again")
    assert await asyncio.wait_for(second, 5) == "wf-1"
    ended = asyncio.ensure_future(signals.__anext__())
    await asyncio.sleep(0)
    await h.store.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(ended, 5)


# -- events ---------------------------------------------------------------------------


async def test_events_after_returns_later_events_up_to_the_limit_exactly(h: Harness) -> None:
    await create(h.store, "wf-1", events=[event(msg=str(i)) for i in range(1, 6)])
    assert seqs(await h.store.events_after("wf-1", 0, limit=5)) == [1, 2, 3, 4, 5]
    assert seqs(await h.store.events_after("wf-1", 0, limit=4)) == [1, 2, 3, 4]
    assert seqs(await h.store.events_after("wf-1", 0, limit=6)) == [1, 2, 3, 4, 5]
    assert seqs(await h.store.events_after("wf-1", 2, limit=3)) == [3, 4, 5]
    assert seqs(await h.store.events_after("wf-1", 2, limit=2)) == [3, 4]
    assert seqs(await h.store.events_after("wf-1", 4)) == [5]
    assert seqs(await h.store.events_after("wf-1", 5)) == []
    assert seqs(await h.store.events_after("wf-1", 9)) == []
    assert seqs(await h.store.events_after("wf-1", -3, limit=1)) == [1]
    log = await h.store.events_after("wf-1", 3, limit=1)
    assert log[0].message == "4"
    await create(h.store, "wf-2")  # no events yet
    assert await h.store.events_after("wf-2", 0) == []


async def test_read_events_returns_at_once_when_events_exist_or_arrive(h: Harness) -> None:
    token = await create(h.store, "wf-1", events=[event()])
    started = time.monotonic()
    await h.store.read_events("wf-1", 0, wait_s=5.0)  # one is there already
    assert time.monotonic() - started < 1.0
    waiter = asyncio.ensure_future(h.store.read_events("wf-1", 1, wait_s=10.0))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    started = time.monotonic()
    await h.store.apply("wf-1", token, Change(events=[event()]))
    await asyncio.wait_for(waiter, 5)
    assert time.monotonic() - started < 1.0


async def test_read_events_returns_after_its_wait(h: Harness) -> None:
    await create(h.store, "wf-1", events=[event()])
    started = time.monotonic()
    assert await h.store.read_events("wf-1", 1, wait_s=0.3) == ([], False)
    assert 0.25 <= time.monotonic() - started < 2.0
    started = time.monotonic()
    await h.store.read_events("wf-1", 1, wait_s=0)  # no time at all: a look, no wait
    assert time.monotonic() - started < 1.0


async def test_read_events_ends_at_once_when_the_workflow_is_or_goes_away(h: Harness) -> None:
    started = time.monotonic()
    with pytest.raises(WorkflowNotFound):
        await h.store.read_events("nope", 0, wait_s=5.0)
    assert time.monotonic() - started < 1.0
    token = await create(h.store, "wf-1")
    waiter = asyncio.ensure_future(h.store.read_events("wf-1", 0, wait_s=10.0))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    started = time.monotonic()
    await h.store.discard("wf-1", token)
    with pytest.raises(WorkflowNotFound):
        await asyncio.wait_for(waiter, 5)
    assert time.monotonic() - started < 1.0


# -- the end of a workflow ------------------------------------------------------------


async def test_a_terminal_state_ends_the_lease_and_the_cancel_request(h: Harness) -> None:
    for i, state in enumerate((SUCCEEDED, FAILED, CANCELLED)):
        wf_id = f"wf-{i}"
        token = await create(h.store, wf_id, ttl=h.ttl)
        await h.store.request_cancel(wf_id, "please")
        events = [event(W.WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED)]
        assert await h.store.apply(wf_id, token, Change(state=state, events=events)) == 1
        assert await h.store.state_of(wf_id) == state
        renewal = await h.store.renew("r1", {wf_id: token}, 60)
        assert renewal.lost == frozenset({wf_id}) and dict(renewal.cancels) == {}
        with pytest.raises(LeaseLost):
            await h.store.apply(wf_id, token, Change(events=[event()]))
        assert seqs(await h.store.events_after(wf_id, 0)) == [1]
    await h.elapse(h.ttl * 1.5)
    assert await h.store.orphans(10) == []
    for i in range(3):
        assert await h.store.claim(f"wf-{i}", "r2", 60) is None


async def test_a_workflow_created_finished_holds_no_lease(h: Harness) -> None:
    token = await create(h.store, make_wf("wf-1", state=SUCCEEDED), events=[event()])
    assert (await h.store.renew("r1", {"wf-1": token}, 60)).lost == frozenset({"wf-1"})
    assert await h.store.orphans(10) == []
    assert await h.store.claim("wf-1", "r2", 60) is None
    with pytest.raises(LeaseLost):
        await h.store.apply("wf-1", token, Change())


async def test_finished_workflows_expire_after_the_retention(h: Harness) -> None:
    retention = 60.0 if h.clock is not None else 0.3
    store = h.another(retention_s=retention)
    token = await create(store, "done", request_id="r1", events=[event()])
    await create(store, "live", request_id="r2", ttl=3600)
    await finish(store, "done", token)
    if h.kind == "redis":
        await assert_keys_expire_within(store, "done", "r1", retention)
    else:
        await h.elapse(retention - 1)
        assert (await store.get("done")).workflow_id == "done"
        await h.elapse(1)  # exactly the retention: gone

    async def gone() -> bool:
        try:
            await store.get("done")
        except WorkflowNotFound:
            return True
        return False

    await eventually(gone, timeout=5)
    with pytest.raises(WorkflowNotFound):
        await store.events_after("done", 0)
    assert await store.find_request("r1", owner="client:a") is None
    page, key = await store.list_workflows(state=0, after_key=None, limit=10)
    assert ids(page) == ["live"] and key is None
    # Live workflows never expire; the request id may be used again.
    assert (await store.get("live")).workflow_id == "live"
    assert await store.find_request("r2", owner="client:a") == RequestRecord("live", "")
    await create(store, "again", request_id="r1")
    assert await store.find_request("r1", owner="client:a") == RequestRecord("again", "")


async def assert_keys_expire_within(store: Any, wf_id: str, request_id: str, s: float) -> None:
    """Redis: every key of the finished workflow and its request id has a TTL of at most
    the retention (ms precision)."""
    r = store._r
    keys = [f"mw:wf:{{{wf_id}}}", f"mw:wf:{{{wf_id}}}:t", f"mw:wf:{{{wf_id}}}:e"]
    keys.append(f"mw:req:client%3Aa:{request_id}")
    for key in keys:
        ttl = await r.pttl(key)
        assert 0 < ttl <= round(s * 1000), (key, ttl)
    assert await r.zscore("mw:live", wf_id) is None


# -- listing --------------------------------------------------------------------------


async def test_pages_run_newest_first_with_a_state_filter(h: Harness) -> None:
    for i in range(7):
        token = await create(h.store, make_wf(f"wf-{i}"))
        if i % 2:
            await finish(h.store, f"wf-{i}", token)
    page, key = await h.store.list_workflows(state=0, after_key=None, limit=3)
    assert ids(page) == ["wf-6", "wf-5", "wf-4"] and key is not None
    assert page[1].state == SUCCEEDED and [t.task_id for t in page[1].tasks] == ["t1", "t2"]
    page, key = await h.store.list_workflows(state=0, after_key=key, limit=3)
    assert ids(page) == ["wf-3", "wf-2", "wf-1"] and key is not None
    page, key = await h.store.list_workflows(state=0, after_key=key, limit=3)
    assert ids(page) == ["wf-0"] and key is None
    done, key = await h.store.list_workflows(state=SUCCEEDED, after_key=None, limit=3)
    assert ids(done) == ["wf-5", "wf-3", "wf-1"] and key is None  # exactly the limit
    done, key = await h.store.list_workflows(state=SUCCEEDED, after_key=None, limit=2)
    assert ids(done) == ["wf-5", "wf-3"] and key is not None  # one past it
    done, key = await h.store.list_workflows(state=SUCCEEDED, after_key=key, limit=2)
    assert ids(done) == ["wf-1"] and key is None
    # Pages stay stable as new workflows arrive.
    page, key = await h.store.list_workflows(state=0, after_key=None, limit=2)
    await create(h.store, "wf-new")
    page, key = await h.store.list_workflows(state=0, after_key=key, limit=2)
    assert ids(page) == ["wf-4", "wf-3"]


async def test_an_owner_filter_keeps_pages_full_and_keys_exact(h: Harness) -> None:
    owners = ["a", "b", "a", "b", "b", "a", "a", "b"]
    for i, owner in enumerate(owners):
        await create(h.store, make_wf(f"wf-{i}", owner=owner))
    got: list[list[str]] = []
    key = None
    while True:
        page, key = await h.store.list_workflows(state=0, after_key=key, limit=2, owner="a")
        got.append(ids(page))
        if key is None:
            break
    assert got == [["wf-6", "wf-5"], ["wf-2", "wf-0"]]
    page, key = await h.store.list_workflows(state=0, after_key=None, limit=10, owner="c")
    assert page == [] and key is None
    page, key = await h.store.list_workflows(state=RUNNING, after_key=None, limit=3, owner="b")
    assert ids(page) == ["wf-7", "wf-4", "wf-3"] and key is not None


async def test_a_scan_longer_than_a_batch_still_fills_the_page(h: Harness) -> None:
    # 300 of another owner between two matches: the filter is applied while scanning.
    await create(h.store, make_wf("mine-0", owner="me"))
    for i in range(300):
        await create(h.store, make_wf(f"other-{i}", owner="other", tasks=()))
    await create(h.store, make_wf("mine-1", owner="me"))
    page, key = await h.store.list_workflows(state=0, after_key=None, limit=2, owner="me")
    assert ids(page) == ["mine-1", "mine-0"] and key is None
    page, key = await h.store.list_workflows(state=0, after_key=None, limit=1, owner="me")
    page, key = await h.store.list_workflows(state=0, after_key=key, limit=1, owner="me")
    assert ids(page) == ["mine-0"] and key is None


async def test_a_page_stops_at_its_byte_bound_but_holds_one_item(h: Harness) -> None:
    for i in range(3):
        await create(h.store, make_wf(f"wf-{i}", name="n" * 1000))
    one = page_item_bytes(await h.store.get("wf-0"))
    assert [page_item_bytes(await h.store.get(f"wf-{i}")) for i in range(3)] == [one] * 3
    page, key = await h.store.list_workflows(
        state=0, after_key=None, limit=10, max_bytes=2 * one
    )  # exactly two
    assert ids(page) == ["wf-2", "wf-1"] and key is not None
    page, key = await h.store.list_workflows(state=0, after_key=key, limit=10, max_bytes=2 * one)
    assert ids(page) == ["wf-0"] and key is None
    page, key = await h.store.list_workflows(
        state=0, after_key=None, limit=10, max_bytes=2 * one - 1
    )  # one byte short of two
    assert ids(page) == ["wf-2"] and key is not None
    page, _ = await h.store.list_workflows(state=0, after_key=None, limit=10, max_bytes=1)
    assert ids(page) == ["wf-2"]  # bigger than the bound: still one
    page, key = await h.store.list_workflows(state=0, after_key=None, limit=10, max_bytes=3 * one)
    assert ids(page) == ["wf-2", "wf-1", "wf-0"] and key is None


# -- templates ------------------------------------------------------------------------


async def test_templates_are_unique_by_name_and_listed_in_name_order(h: Harness) -> None:
    for name in ("b", "a", "d", "c"):
        tpl = W.Template(name=name, description=f"about {name}")
        tpl.definition.tasks.add(id="t", skill="echo")
        await h.store.put_template(tpl)
    with pytest.raises(TemplateExists):
        await h.store.put_template(W.Template(name="a", description="other"))
    got = await h.store.get_template("a")
    assert got is not None and got.description == "about a" and got.definition.tasks[0].id == "t"
    assert await h.store.get_template("zzz") is None
    names = [t.name for t in await h.store.list_templates(after_name=None, limit=10)]
    assert names == ["a", "b", "c", "d"]
    names = [t.name for t in await h.store.list_templates(after_name=None, limit=4)]
    assert names == ["a", "b", "c", "d"]
    names = [t.name for t in await h.store.list_templates(after_name=None, limit=3)]
    assert names == ["a", "b", "c"]
    names = [t.name for t in await h.store.list_templates(after_name="b", limit=10)]
    assert names == ["c", "d"]
    names = [t.name for t in await h.store.list_templates(after_name="bb", limit=1)]
    assert names == ["c"]
    assert await h.store.list_templates(after_name="d", limit=10) == []


# -- the memory store alone -----------------------------------------------------------


async def test_memory_finished_workflows_beyond_the_cap_are_evicted_oldest_first() -> None:
    """MemoryWorkflowStore's own bound (Redis keeps finished workflows for the retention)."""
    store = MemoryWorkflowStore(max_finished=2)
    tokens = [await create(store, f"wf-{i}", request_id=f"req-{i}") for i in range(4)]
    for i in (2, 0):  # exactly the cap finished: all kept
        await finish(store, f"wf-{i}", tokens[i])
    assert (await store.get("wf-2")).state == SUCCEEDED
    await finish(store, "wf-1", tokens[1])  # one past: the first finished goes
    with pytest.raises(WorkflowNotFound):
        await store.get("wf-2")
    with pytest.raises(WorkflowNotFound):
        await store.events_after("wf-2", 0)
    assert await store.find_request("req-2", owner="client:a") is None
    assert (await store.get("wf-0")).workflow_id == "wf-0"
    assert (await store.get("wf-3")).state == RUNNING  # live: never evicted
    page, _ = await store.list_workflows(state=0, after_key=None, limit=10)
    assert ids(page) == ["wf-3", "wf-1", "wf-0"]


@pytest.mark.parametrize("read", ["find_request", "state_of", "events_after"])
async def test_memory_every_read_sees_the_retention_on_its_own(read: str) -> None:
    clock = FakeClock()
    store = MemoryWorkflowStore(clock=clock, retention_s=60)
    token = await create(store, "done", request_id="r1", events=[event()])
    await finish(store, "done", token)
    clock.now += 60  # no other call in between may do the expiring for it
    if read == "find_request":
        assert await store.find_request("r1", owner="client:a") is None
    elif read == "state_of":
        with pytest.raises(WorkflowNotFound):
            await store.state_of("done")
    else:
        with pytest.raises(WorkflowNotFound):
            await store.events_after("done", 0)


async def test_lease_holder_names_the_replica_until_released_or_finished(h: Harness) -> None:
    token = await create(h.store, "wf-1", replica="r1", ttl=h.ttl)
    assert await h.store.lease_holder("wf-1") == "r1"
    await h.elapse(h.ttl * 1.5)
    assert await h.store.lease_holder("wf-1") == "r1"  # lapsed, not yet claimed
    new = await h.store.claim("wf-1", "r2", 60)
    assert new is not None
    assert await h.store.lease_holder("wf-1") == "r2"
    await h.store.release("wf-1", token)  # stale: nothing
    assert await h.store.lease_holder("wf-1") == "r2"
    await h.store.release("wf-1", new)
    assert await h.store.lease_holder("wf-1") == ""
    again = await h.store.claim("wf-1", "r3", 60)
    assert again is not None
    await finish(h.store, "wf-1", again)
    assert await h.store.lease_holder("wf-1") == ""
    with pytest.raises(WorkflowNotFound):
        await h.store.lease_holder("nope")


async def test_read_events_returns_what_is_there_or_waits_for_it(h: Harness) -> None:
    token = await create(h.store, "wf-1", events=[event(msg="one")])
    events, ended = await h.store.read_events("wf-1", 0, wait_s=5)
    assert (seqs(events), ended) == ([1], False)
    assert seqs((await h.store.read_events("wf-1", 0, wait_s=5, limit=0))[0]) == []
    waiting = asyncio.create_task(h.store.read_events("wf-1", 1, wait_s=5))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await h.store.apply("wf-1", token, Change(events=[event(msg="two"), event(msg="three")]))
    events, ended = await asyncio.wait_for(waiting, 5)
    assert ([e.message for e in events], ended) == (["two", "three"], False)
    started = time.monotonic()
    assert await h.store.read_events("wf-1", 3, wait_s=0.2) == ([], False)  # timed out
    assert time.monotonic() - started >= 0.15
    await h.store.apply("wf-1", token, Change(state=SUCCEEDED, events=[event(msg="end")]))
    assert seqs((await h.store.read_events("wf-1", 3, wait_s=5))[0]) == [4]
    started = time.monotonic()
    assert await h.store.read_events("wf-1", 4, wait_s=5) == ([], True)  # ended: no wait
    assert time.monotonic() - started < 1
    with pytest.raises(WorkflowNotFound):
        await h.store.read_events("nope", 0, wait_s=0.1)
