"""Errors of the agent domain.

The ``MeshError`` subclasses are what ``AgentService`` callers see (the mesh
maps them to gRPC codes in one place). ``TaskRejected`` and ``TaskFailed`` are
different: a skill raises them to end its task in ``TASK_STATE_REJECTED`` or
``TASK_STATE_FAILED`` with a reason (and a word on whether trying again can
help) instead of the call failing.
"""

from __future__ import annotations

import re

from meshwright.mesh.errors import (
    AlreadyExists,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)

REASON = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
"""A task's reason: UPPER_SNAKE_CASE, at most 64 characters."""

TASK_REJECTED = "TASK_REJECTED"
"""Reason of a task a skill rejected (``TaskRejected``) without one of its own."""
TASK_FAILED = "TASK_FAILED"
"""Reason of a task a skill failed (``TaskFailed``) without one of its own."""
SKILL_ERROR = "SKILL_ERROR"
"""Reason of a task whose skill raised anything but ``TaskRejected``/``TaskFailed``."""
OUTPUT_NOT_JSON = "OUTPUT_NOT_JSON"
"""Reason of a task whose skill returned something that is not JSON-like data."""


class SkillNotFound(NotFound):
    """The agent does not offer the requested skill."""

    reason = "SKILL_NOT_FOUND"


class TaskNotFound(NotFound):
    """No task with that id is running on this agent."""

    reason = "TASK_NOT_FOUND"


class TaskAlreadyRunning(AlreadyExists):
    """A canceled task with the same id still runs (a sync skill's thread cannot be stopped)."""

    reason = "TASK_ALREADY_RUNNING"


class TaskIdReused(InvalidArgument):
    """The task id is running or remembered with a different request."""

    reason = "TASK_ID_REUSED"

    @classmethod
    def of(cls, task_id: str) -> TaskIdReused:
        """The error for ``task_id``, with its field violation."""
        description = (
            "was used for a different request (skill, input, upstream outputs, context id "
            "or metadata); a task id may only be sent again with the same request"
        )
        return cls(
            f"task_id {task_id!r} {description}",
            violations=[FieldViolation("task_id", description)],
            metadata={"task_id": task_id},
        )


class AgentAtCapacity(ResourceExhausted):
    """The agent runs as many tasks as its capacity allows."""

    reason = "AGENT_AT_CAPACITY"


class _TaskEnd(Exception):
    """Raised by a skill to end its task with a reason (not an unexpected error)."""

    default_reason = ""

    def __init__(self, message: str, *, reason: str = "", retryable: bool) -> None:
        reason = reason or self.default_reason
        if not REASON.fullmatch(reason):
            raise ValueError(f"reason {reason!r} must be UPPER_SNAKE_CASE of at most 64 characters")
        super().__init__(message)
        self.message = message
        self.reason = reason
        """UPPER_SNAKE_CASE; sent as the task status's ``reason``."""
        self.retryable = retryable
        """Whether running the task again may end otherwise (``non_retryable`` is the negation)."""


class TaskRejected(_TaskEnd):
    """Raised by a skill to refuse a task (e.g. its input); it ends in TASK_STATE_REJECTED.

    A rejection is not retried by default (the same input would be rejected
    again); ``retryable=True`` says it may pass later (e.g. a busy resource).
    """

    default_reason = TASK_REJECTED

    def __init__(self, message: str, *, reason: str = "", retryable: bool = False) -> None:
        super().__init__(message, reason=reason, retryable=retryable)


class TaskFailed(_TaskEnd):
    """Raised by a skill to fail a task with a reason; it ends in TASK_STATE_FAILED.

    Retryable by default, like any error a skill raises; ``retryable=False``
    tells callers (the workflow engine) that another attempt would fail the
    same way.
    """

    default_reason = TASK_FAILED

    def __init__(self, message: str, *, reason: str = "", retryable: bool = True) -> None:
        super().__init__(message, reason=reason, retryable=retryable)


__all__ = [
    "OUTPUT_NOT_JSON",
    "SKILL_ERROR",
    "TASK_FAILED",
    "TASK_REJECTED",
    "AgentAtCapacity",
    "SkillNotFound",
    "TaskAlreadyRunning",
    "TaskFailed",
    "TaskIdReused",
    "TaskNotFound",
    "TaskRejected",
]
