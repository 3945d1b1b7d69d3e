"""The A2A server's tables on their own: states, status messages, errors, the task store."""

from __future__ import annotations

import pytest
from a2a.server.context import ServerCallContext
from a2a.types import Message, Task, TaskState
from a2a.utils.errors import (
    InternalError,
    InvalidParamsError,
    InvalidRequestError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from google.protobuf import json_format

from meshwright.agent.a2a import _serve_map as mapping
from meshwright.agent.a2a._errors import A2AHttpError, a2a_error, cancel_error
from meshwright.agent.a2a._store import BoundedTaskStore, Caller
from meshwright.agent.errors import SkillNotFound, TaskNotFound
from meshwright.agent.v1 import agent_pb2
from meshwright.mesh.auth import TokenExpired
from meshwright.mesh.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("ours", list(mapping.STATES))
def test_every_state_has_its_namesake(ours: int) -> None:
    name = agent_pb2.TaskState.Name(ours)
    assert TaskState.Name(mapping.STATES[ours]) == name  # TASK_STATE_X -> TASK_STATE_X


def test_all_our_states_are_mapped() -> None:
    ours = set(agent_pb2.TaskState.values()) - {agent_pb2.TASK_STATE_UNSPECIFIED}
    assert set(mapping.STATES) == ours


def test_a_status_message_carries_progress_reason_and_retryability() -> None:
    status = agent_pb2.TaskStatus(
        state=agent_pb2.TASK_STATE_REJECTED,
        message="bad input",
        progress=0.25,
        reason="INPUT_BAD",
        non_retryable=True,
    )
    out = mapping.status_of(status)
    assert out.state == TaskState.TASK_STATE_REJECTED
    assert [p.text for p in out.message.parts] == ["bad input"]
    assert json_format.MessageToDict(out.message.metadata) == {
        "progress": 0.25,
        "reason": "INPUT_BAD",
        "non_retryable": True,
    }


def test_the_reason_is_the_text_when_there_is_no_message() -> None:
    out = mapping.status_of(agent_pb2.TaskStatus(state=agent_pb2.TASK_STATE_FAILED, reason="X"))
    assert [p.text for p in out.message.parts] == ["X"]


def test_progress_alone_makes_no_message() -> None:
    out = mapping.status_of(agent_pb2.TaskStatus(state=agent_pb2.TASK_STATE_COMPLETED, progress=1))
    assert not out.HasField("message")


def test_only_a_completed_task_has_an_output_artifact() -> None:
    task = agent_pb2.Task(status=agent_pb2.TaskStatus(state=agent_pb2.TASK_STATE_FAILED))
    task.output["x"] = 1
    assert mapping.output_artifact(task) is None
    task.status.state = agent_pb2.TASK_STATE_COMPLETED
    artifact = mapping.output_artifact(task)
    assert artifact is not None and artifact.name == "output"
    assert json_format.MessageToDict(artifact.parts[0].data) == {"x": 1}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (TokenExpired("expired"), 401),
        (PermissionDenied("no", reason="ROLE_NOT_ALLOWED"), 403),
        (ResourceExhausted("busy", reason="AGENT_AT_CAPACITY", retry_after_s=2.4), 429),
        (Unavailable("none", reason="NO_AGENT_AVAILABLE"), 503),
        (DeadlineExceeded("slow"), 504),
    ],
)
def test_auth_and_try_later_errors_are_http_statuses(error: Exception, status: int) -> None:
    out = a2a_error(error)  # type: ignore[arg-type]
    assert isinstance(out, A2AHttpError) and out.status_code == status
    if status == 401:
        assert out.headers["WWW-Authenticate"].startswith("Bearer")
    if status == 429:
        assert out.headers["Retry-After"] == "2"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (InvalidArgument("bad"), InvalidParamsError),
        (SkillNotFound("no skill"), InvalidParamsError),
        (TaskNotFound("no task"), TaskNotFoundError),
        (AlreadyExists("twice"), InvalidRequestError),
        (FailedPrecondition("pay", reason="PAID_SKILL_NEEDS_WORKFLOW"), UnsupportedOperationError),
        (Internal("oops"), InternalError),
    ],
)
def test_other_errors_are_json_rpc_errors_with_our_reason(
    error: Exception, expected: type[Exception]
) -> None:
    out = a2a_error(error)  # type: ignore[arg-type]
    assert type(out) is expected
    assert out.data["reason"] == error.reason  # type: ignore[attr-defined]


def test_a_task_no_longer_running_is_not_cancelable() -> None:
    assert type(cancel_error(TaskNotFound("gone"))) is TaskNotCancelableError
    assert isinstance(cancel_error(PermissionDenied("no")), A2AHttpError)


def test_metadata_numbers_stay_as_written() -> None:
    msg = Message()
    msg.metadata.update({"skill": "s", "n": 3, "f": 2.5, "nested": {"k": [1, 2.0]}, "s": "x"})
    assert mapping.metadata_of(msg) == {"n": "3", "f": "2.5", "nested": '{"k":[1,2]}', "s": "x"}


async def test_the_store_forgets_the_oldest_and_scopes_by_token() -> None:
    store = BoundedTaskStore(max_tasks=2)
    ann, bob = ServerCallContext(user=Caller("ann-token")), ServerCallContext(user=Caller("bob"))
    for task_id in ("t1", "t2", "t3"):
        await store.save(Task(id=task_id), ann)
    assert len(store) == 2
    assert await store.get("t1", ann) is None  # forgotten
    assert (await store.get("t3", ann)) == Task(id="t3")
    assert await store.get("t3", bob) is None  # another token's
    await store.save(Task(id="t2"), ann)  # saved again: now the newest
    await store.save(Task(id="t4"), ann)
    assert await store.get("t2", ann) is not None and await store.get("t3", ann) is None
