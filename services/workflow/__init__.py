"""The workflow domain: DAG validation, placement, retries, payment, event logs.

Names load on first use (PEP 562): importing ``meshwright.workflow.v1`` (the
contract, which agents use) does not load the engine, and the Redis store
(and redis itself) loads only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshwright.mesh.lazy import lazy_exports

if TYPE_CHECKING:
    from meshwright.workflow.dispatch import (
        AgentDispatcher,
        BreakerPolicy,
        BudgetExhausted,
        NoAgentAvailable,
        Slot,
    )
    from meshwright.workflow.engine import Engine, EngineConfig
    from meshwright.workflow.errors import (
        TemplateExists,
        TemplateNotFound,
        WorkflowExists,
        WorkflowNotFound,
    )
    from meshwright.workflow.memory_store import MemoryWorkflowStore
    from meshwright.workflow.redis_store import RedisWorkflowStore
    from meshwright.workflow.router import PaidSkillNeedsWorkflow, SkillNotOffered, SkillRouter
    from meshwright.workflow.servicer import WorkflowServicer
    from meshwright.workflow.store import Change, LeaseLost, WorkflowStore

_EXPORTS = {
    "AgentDispatcher": "meshwright.workflow.dispatch",
    "BreakerPolicy": "meshwright.workflow.dispatch",
    "BudgetExhausted": "meshwright.workflow.dispatch",
    "NoAgentAvailable": "meshwright.workflow.dispatch",
    "Slot": "meshwright.workflow.dispatch",
    "Engine": "meshwright.workflow.engine",
    "EngineConfig": "meshwright.workflow.engine",
    "TemplateExists": "meshwright.workflow.errors",
    "TemplateNotFound": "meshwright.workflow.errors",
    "WorkflowExists": "meshwright.workflow.errors",
    "WorkflowNotFound": "meshwright.workflow.errors",
    "MemoryWorkflowStore": "meshwright.workflow.memory_store",
    "RedisWorkflowStore": "meshwright.workflow.redis_store",
    "PaidSkillNeedsWorkflow": "meshwright.workflow.router",
    "SkillNotOffered": "meshwright.workflow.router",
    "SkillRouter": "meshwright.workflow.router",
    "WorkflowServicer": "meshwright.workflow.servicer",
    "Change": "meshwright.workflow.store",
    "LeaseLost": "meshwright.workflow.store",
    "WorkflowStore": "meshwright.workflow.store",
}

__all__ = [
    "AgentDispatcher",
    "BreakerPolicy",
    "BudgetExhausted",
    "Change",
    "Engine",
    "EngineConfig",
    "LeaseLost",
    "MemoryWorkflowStore",
    "NoAgentAvailable",
    "PaidSkillNeedsWorkflow",
    "RedisWorkflowStore",
    "SkillNotOffered",
    "SkillRouter",
    "Slot",
    "TemplateExists",
    "TemplateNotFound",
    "WorkflowExists",
    "WorkflowNotFound",
    "WorkflowServicer",
    "WorkflowStore",
]


if not TYPE_CHECKING:  # mypy sees the imports above, and no catch-all attribute
    __getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
