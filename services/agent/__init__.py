"""The agent SDK, the AgentService runtime, and the local agent supervisor.

``meshwright.agent.v1`` (generated elsewhere) is the contract; this package is
its runtime::

    from meshwright.agent import Agent, TaskContext, TaskRejected

    agent = Agent("text-tools", description="...", version="1.0.0", capacity=16)

    @agent.skill("text.wordcount", description="Counts words", price=2)
    async def wordcount(input: dict, ctx: TaskContext) -> dict:
        if "text" not in input:
            raise TaskRejected("input needs a text")  # REJECTED, not retried
        return {"words": len(input["text"].split())}

A skill ends its task FAILED with a reason by raising ``TaskFailed(message,
reason="QUOTA_USED_UP", retryable=False)``; anything else it raises fails the
task as retryable, reason ``SKILL_ERROR``. Task ids are idempotency keys: a
finished task is remembered (``ServeOptions.result_memory``/``result_ttl_s``)
and a re-dispatch is answered with it, without running the skill again.

Code that needs the running agent (a background probe of a dependency, the
metrics registry ``runtime.metrics.registry``, ``runtime.report_health_detail``
to show ``DEGRADED: ...`` in the registry while still taking work) hangs on
``@agent.on_start`` / ``@agent.on_stop``: ``fn(runtime)``, sync or async;
``meshwright.agent.llm`` is an example.

Names load on first use (PEP 562), so importing a contract such as
``meshwright.agent.v1`` does not start the runtime behind this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshwright.mesh.lazy import lazy_exports

if TYPE_CHECKING:
    from meshwright.agent.agent import Agent
    from meshwright.agent.context import TaskContext
    from meshwright.agent.errors import (
        OUTPUT_NOT_JSON,
        SKILL_ERROR,
        TASK_FAILED,
        TASK_REJECTED,
        AgentAtCapacity,
        SkillNotFound,
        TaskAlreadyRunning,
        TaskFailed,
        TaskIdReused,
        TaskNotFound,
        TaskRejected,
    )
    from meshwright.agent.registration import Registration
    from meshwright.agent.results import (
        DEFAULT_RESULT_MEMORY,
        DEFAULT_RESULT_TTL_S,
        RecordedTask,
        ResultMemory,
    )
    from meshwright.agent.runtime import (
        AgentRuntime,
        ServeOptions,
    )
    from meshwright.agent.servicer import (
        SERVICE,
        AgentServicer,
    )
    from meshwright.agent.skill import (
        Skill,
        SkillFn,
    )
    from meshwright.agent.supervisor import (
        AgentSpec,
        AgentStartError,
        AgentSupervisor,
        ProcessState,
        ProcessStatus,
    )
    from meshwright.agent.tasks import TaskRunner

_EXPORTS: dict[str, str] = {
    "Agent": "meshwright.agent.agent",
    "TaskContext": "meshwright.agent.context",
    "OUTPUT_NOT_JSON": "meshwright.agent.errors",
    "SKILL_ERROR": "meshwright.agent.errors",
    "TASK_FAILED": "meshwright.agent.errors",
    "TASK_REJECTED": "meshwright.agent.errors",
    "AgentAtCapacity": "meshwright.agent.errors",
    "SkillNotFound": "meshwright.agent.errors",
    "TaskAlreadyRunning": "meshwright.agent.errors",
    "TaskFailed": "meshwright.agent.errors",
    "TaskIdReused": "meshwright.agent.errors",
    "TaskNotFound": "meshwright.agent.errors",
    "TaskRejected": "meshwright.agent.errors",
    "Registration": "meshwright.agent.registration",
    "DEFAULT_RESULT_MEMORY": "meshwright.agent.results",
    "DEFAULT_RESULT_TTL_S": "meshwright.agent.results",
    "RecordedTask": "meshwright.agent.results",
    "ResultMemory": "meshwright.agent.results",
    "AgentRuntime": "meshwright.agent.runtime",
    "ServeOptions": "meshwright.agent.runtime",
    "SERVICE": "meshwright.agent.servicer",
    "AgentServicer": "meshwright.agent.servicer",
    "Skill": "meshwright.agent.skill",
    "SkillFn": "meshwright.agent.skill",
    "AgentSpec": "meshwright.agent.supervisor",
    "AgentStartError": "meshwright.agent.supervisor",
    "AgentSupervisor": "meshwright.agent.supervisor",
    "ProcessState": "meshwright.agent.supervisor",
    "ProcessStatus": "meshwright.agent.supervisor",
    "TaskRunner": "meshwright.agent.tasks",
}
"""Each public name and the module that defines it."""

__all__ = [
    "DEFAULT_RESULT_MEMORY",
    "DEFAULT_RESULT_TTL_S",
    "OUTPUT_NOT_JSON",
    "SERVICE",
    "SKILL_ERROR",
    "TASK_FAILED",
    "TASK_REJECTED",
    "Agent",
    "AgentAtCapacity",
    "AgentRuntime",
    "AgentServicer",
    "AgentSpec",
    "AgentStartError",
    "AgentSupervisor",
    "ProcessState",
    "ProcessStatus",
    "RecordedTask",
    "Registration",
    "ResultMemory",
    "ServeOptions",
    "Skill",
    "SkillFn",
    "SkillNotFound",
    "TaskAlreadyRunning",
    "TaskContext",
    "TaskFailed",
    "TaskIdReused",
    "TaskNotFound",
    "TaskRejected",
    "TaskRunner",
]


if not TYPE_CHECKING:  # mypy sees the imports above, and no catch-all attribute
    __getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
