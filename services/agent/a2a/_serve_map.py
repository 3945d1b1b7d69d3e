"""A2A ⇄ AgentService messages for the A2A server: the convention in code.

``meshwright.agent.a2a.server`` states the rules in prose (the inbound bridge follows the
same ones in ``_bridge_map``); this module is the server's half of them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from a2a.types import (
    Artifact,
    Message,
    Part,
    Role,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import InvalidParamsError
from google.protobuf import json_format, struct_pb2

from meshwright.agent.v1 import agent_pb2

SKILL_KEY = "skill"
"""Message metadata key naming the skill to run."""

OUTPUT_ARTIFACT = "output"
"""Id and name of the artifact that carries a completed task's output (one data part)."""

STATES: dict[int, TaskState] = {
    agent_pb2.TASK_STATE_SUBMITTED: TaskState.TASK_STATE_SUBMITTED,
    agent_pb2.TASK_STATE_WORKING: TaskState.TASK_STATE_WORKING,
    agent_pb2.TASK_STATE_COMPLETED: TaskState.TASK_STATE_COMPLETED,
    agent_pb2.TASK_STATE_FAILED: TaskState.TASK_STATE_FAILED,
    agent_pb2.TASK_STATE_CANCELED: TaskState.TASK_STATE_CANCELED,
    agent_pb2.TASK_STATE_REJECTED: TaskState.TASK_STATE_REJECTED,
}
"""Our task states → A2A task states (A2A's input-required and auth-required have no
counterpart: our skills never pause for the caller)."""


def skill_of(message: Message, skills: Sequence[str], *, strict: bool) -> str:
    """The skill a message asks for: ``metadata["skill"]``, else the only skill there is.

    ``strict``: a named skill must be one of ``skills`` (an agent process knows its own;
    the mesh leaves the answer to its router, whose list may be newer than a cached card).
    """
    named = message.metadata.fields.get(SKILL_KEY)
    if named is not None:
        if named.WhichOneof("kind") != "string_value" or not named.string_value:
            raise InvalidParamsError(
                message=f'metadata["{SKILL_KEY}"] must be a skill id (a non-empty string)'
            )
        skill = named.string_value
        if strict and skill not in skills:
            raise unknown_skill(skill, skills)
        return skill
    if len(skills) == 1:
        return skills[0]
    raise InvalidParamsError(
        message=f'name the skill in the message\'s metadata["{SKILL_KEY}"]: one of '
        + (", ".join(skills) if skills else "(no skills are offered now)"),
        data={"skills": ",".join(skills)},
    )


def unknown_skill(skill: str, skills: Sequence[str]) -> InvalidParamsError:
    """The error for a skill nobody here offers, listing those offered."""
    return InvalidParamsError(
        message=f"skill {skill!r} is not offered here; skills: "
        + (", ".join(skills) if skills else "(none now)"),
        data={"skill": skill, "skills": ",".join(skills)},
    )


def input_of(message: Message) -> struct_pb2.Struct:
    """The task input: the first data part's object; with no data part, the text parts
    joined by newlines as ``{"text": ...}``."""
    texts: list[str] = []
    for part in message.parts:
        kind = part.WhichOneof("content")
        if kind == "data":
            if part.data.WhichOneof("kind") != "struct_value":
                raise InvalidParamsError(
                    message="the message's first data part must hold a JSON object (the "
                    "skill's input)"
                )
            out = struct_pb2.Struct()
            out.CopyFrom(part.data.struct_value)
            return out
        if kind == "text":
            texts.append(part.text)
    if not texts:
        raise InvalidParamsError(
            message="the message needs a data part (the input object) or a text part"
        )
    out = struct_pb2.Struct()
    out["text"] = "\n".join(texts)
    return out


def metadata_of(message: Message) -> dict[str, str]:
    """The message's metadata but the skill key, as our string map (non-strings as JSON)."""
    out: dict[str, str] = {}
    for key, value in message.metadata.fields.items():
        if key == SKILL_KEY:
            continue
        if value.WhichOneof("kind") == "string_value":
            out[key] = value.string_value
        else:
            out[key] = json.dumps(
                _integral(json_format.MessageToDict(value)), separators=(",", ":")
            )
    return out


def _integral(value: Any) -> Any:
    """JSON numbers as the client wrote them: protobuf holds them all as doubles, so 2
    arrives as 2.0; an integral one is shown as an integer again."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def status_of(status: agent_pb2.TaskStatus) -> TaskStatus:
    """Our status as an A2A status: the message text (else the reason) as an agent message
    whose metadata carries ``progress`` (when reported), ``reason`` and ``non_retryable``
    (when set)."""
    out = TaskStatus(state=STATES.get(status.state, TaskState.TASK_STATE_UNSPECIFIED))
    if status.HasField("update_time"):
        out.timestamp.CopyFrom(status.update_time)
    meta: dict[str, Any] = {}
    if status.progress:
        meta["progress"] = status.progress
    if status.reason:
        meta["reason"] = status.reason
    if status.non_retryable:
        meta["non_retryable"] = True
    # An A2A message needs a part: with no text the reason is the text, and progress
    # alone (a finished task's 1.0) is not worth a message.
    text = status.message or status.reason
    if text:
        msg = Message(message_id=uuid.uuid4().hex, role=Role.ROLE_AGENT, parts=[Part(text=text)])
        if meta:
            msg.metadata.update(meta)
        out.message.CopyFrom(msg)
    return out


def artifact_of(artifact: agent_pb2.Artifact) -> Artifact:
    """Our artifact as an A2A artifact with one data part."""
    return Artifact(
        artifact_id=artifact.artifact_id,
        name=artifact.name,
        parts=[_data_part(artifact.data)],
    )


def output_artifact(task: agent_pb2.Task) -> Artifact | None:
    """The ``output`` artifact of a completed task (None for other states)."""
    if task.status.state != agent_pb2.TASK_STATE_COMPLETED:
        return None
    return Artifact(
        artifact_id=OUTPUT_ARTIFACT, name=OUTPUT_ARTIFACT, parts=[_data_part(task.output)]
    )


def _data_part(data: struct_pb2.Struct) -> Part:
    part = Part(media_type="application/json")
    part.data.struct_value.CopyFrom(data)
    return part


def task_of(task: agent_pb2.Task, task_id: str, context_id: str) -> Task:
    """Our task (terminal or not) as an A2A task under the A2A ids."""
    out = Task(id=task_id, context_id=context_id, status=status_of(task.status))
    out.artifacts.extend(artifact_of(a) for a in task.artifacts)
    output = output_artifact(task)
    if output is not None:
        out.artifacts.append(output)
    return out


def status_event(
    status: agent_pb2.TaskStatus, task_id: str, context_id: str
) -> TaskStatusUpdateEvent:
    """A status update of our stream as an A2A status update event."""
    return TaskStatusUpdateEvent(task_id=task_id, context_id=context_id, status=status_of(status))


def artifact_event(artifact: Artifact, task_id: str, context_id: str) -> TaskArtifactUpdateEvent:
    """An artifact as an A2A artifact update event (whole, never appended to)."""
    return TaskArtifactUpdateEvent(
        task_id=task_id, context_id=context_id, artifact=artifact, last_chunk=True
    )


__all__ = [
    "OUTPUT_ARTIFACT",
    "SKILL_KEY",
    "STATES",
    "artifact_event",
    "artifact_of",
    "input_of",
    "metadata_of",
    "output_artifact",
    "skill_of",
    "status_event",
    "status_of",
    "task_of",
    "unknown_skill",
]
