"""Server-streaming RPCs as Server-Sent Events."""

from __future__ import annotations

import pytest

from tests.conftest import eventually
from tests.gateway.support import Event, Stack, parse_sse, status_of

pytestmark = pytest.mark.asyncio(loop_scope="package")


async def test_stream_task_events_in_order_then_end(stack: Stack) -> None:
    r = await stack.http.post(
        "/v1/agent/tasks:stream",
        json={"taskId": "s1", "skill": "count", "input": {"n": 4}},
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-store"
    events, _ = parse_sse(r.text)
    assert [e.id for e in events] == ["1", "2", "3", "4", "5"]
    assert [e.data["statusUpdate"]["message"] for e in events[:4]] == ["0", "1", "2", "3"]
    assert events[0].data["final"] is False
    assert events[-1].data["final"] is True
    assert events[-1].data["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
    assert all(e.event is None for e in events)


async def test_error_mid_stream_is_an_error_event(stack: Stack) -> None:
    r = await stack.http.post(
        "/v1/agent/tasks:stream", json={"taskId": "s2", "skill": "fail-mid", "input": {"n": 5}}
    )
    assert r.status_code == 200
    events, _ = parse_sse(r.text)
    assert [e.event for e in events] == [None, None, "error"]
    error = events[-1].data
    assert (error["code"], error["message"]) == (5, "lost the task")
    assert status_of(error)["ErrorInfo"]["reason"] == "NOT_FOUND"


async def test_error_before_the_first_event_is_an_http_error(stack: Stack) -> None:
    r = await stack.http.post(
        "/v1/agent/tasks:stream", json={"taskId": "s3", "skill": "fail-first"}
    )
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert r.json()["code"] == 5

    r = await stack.http.get("/v1/workflows/missing:watch")
    assert r.status_code == 404
    r = await stack.http.post(
        "/v1/agent/tasks:stream", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400


async def test_event_ids_follow_event_sequence_and_resume(stack: Stack) -> None:
    r = await stack.http.get("/v1/workflows/wf-9:watch")
    events, _ = parse_sse(r.text)
    assert [e.id for e in events] == ["1", "2", "3", "4", "5"]
    assert events[0].data["event"]["workflowId"] == "wf-9"

    # A reconnecting EventSource sends the last id it saw.
    r = await stack.http.get("/v1/workflows/wf-9:watch", headers={"Last-Event-ID": "3"})
    assert [e.id for e in parse_sse(r.text)[0]] == ["4", "5"]
    r = await stack.http.get("/v1/workflows/wf-9:watch", params={"after_sequence": "2"})
    assert [e.id for e in parse_sse(r.text)[0]] == ["3", "4", "5"]

    r = await stack.http.get("/v1/workflows/wf-9:watch", headers={"Last-Event-ID": "three"})
    assert r.status_code == 400
    violation = status_of(r.json())["BadRequest"]["fieldViolations"][0]
    assert violation["field"] == "Last-Event-ID"


async def test_heartbeats_and_disconnect_closes_the_upstream(stack: Stack) -> None:
    events: list[Event] = []
    heartbeats = 0
    async with stack.http.stream(
        "POST", "/v1/agent/tasks:stream", json={"taskId": "hang-1", "skill": "hang"}
    ) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith(":"):
                heartbeats += 1
                break
            if line.startswith("data: "):
                events.append(Event(line[len("data: ") :]))
    assert len(events) == 3 and heartbeats == 1
    # Leaving the block dropped the connection: the RPC behind it is cancelled.
    await eventually(lambda: "hang-1" in stack.agent.stream_closed, timeout=5)
