"""Errors of the agent domain.

The ``MeshError`` subclasses are what ``AgentService`` callers see (the mesh
maps them to gRPC codes in one place). ``TaskRejected`` is different: a skill
raises it to refuse its input, and the task ends in ``TASK_STATE_REJECTED``
instead of the call failing.
"""

from __future__ import annotations

from meshwright.mesh.errors import AlreadyExists, NotFound, ResourceExhausted


class SkillNotFound(NotFound):
    """The agent does not offer the requested skill."""

    reason = "SKILL_NOT_FOUND"


class TaskNotFound(NotFound):
    """No task with that id is running on this agent."""

    reason = "TASK_NOT_FOUND"


class TaskAlreadyRunning(AlreadyExists):
    """A task with the same id is running on this agent."""

    reason = "TASK_ALREADY_RUNNING"


class AgentAtCapacity(ResourceExhausted):
    """The agent runs as many tasks as its capacity allows."""

    reason = "AGENT_AT_CAPACITY"


class TaskRejected(Exception):
    """Raised by a skill to refuse a task; it ends in TASK_STATE_REJECTED."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


__all__ = [
    "AgentAtCapacity",
    "SkillNotFound",
    "TaskAlreadyRunning",
    "TaskNotFound",
    "TaskRejected",
]
