"""The agent SDK, the AgentService runtime, and the local agent supervisor.

``meshwright.agent.v1`` (generated elsewhere) is the contract; this package is
its runtime::

    from meshwright.agent import Agent, TaskContext

    agent = Agent("text-tools", description="...", version="1.0.0", capacity=16)

    @agent.skill("text.wordcount", description="Counts words", price=2)
    async def wordcount(input: dict, ctx: TaskContext) -> dict:
        return {"words": len(input["text"].split())}
"""

from meshwright.agent.agent import Agent
from meshwright.agent.context import TaskContext
from meshwright.agent.errors import (
    AgentAtCapacity,
    SkillNotFound,
    TaskAlreadyRunning,
    TaskNotFound,
    TaskRejected,
)
from meshwright.agent.registration import Registration
from meshwright.agent.runtime import AgentRuntime, ServeOptions
from meshwright.agent.servicer import SERVICE, AgentServicer
from meshwright.agent.skill import Skill, SkillFn
from meshwright.agent.supervisor import (
    AgentSpec,
    AgentStartError,
    AgentSupervisor,
    ProcessState,
    ProcessStatus,
)
from meshwright.agent.tasks import TaskRunner

__all__ = [
    "SERVICE",
    "Agent",
    "AgentAtCapacity",
    "AgentRuntime",
    "AgentServicer",
    "AgentSpec",
    "AgentStartError",
    "AgentSupervisor",
    "ProcessState",
    "ProcessStatus",
    "Registration",
    "ServeOptions",
    "Skill",
    "SkillFn",
    "SkillNotFound",
    "TaskAlreadyRunning",
    "TaskContext",
    "TaskNotFound",
    "TaskRejected",
    "TaskRunner",
]
