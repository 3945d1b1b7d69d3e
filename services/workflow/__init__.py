"""The workflow domain: DAG validation, placement, retries, payment, event logs.

Names load on first use (PEP 562): importing ``meshwright.workflow.v1`` (the
contract, which agents use) does not load the engine, and the Redis store
(and redis itself) loads only when asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

_WHERE = {
    "AgentDispatcher": "dispatch",
    "BreakerPolicy": "dispatch",
    "BudgetExhausted": "dispatch",
    "NoAgentAvailable": "dispatch",
    "Slot": "dispatch",
    "Engine": "engine",
    "EngineConfig": "engine",
    "TemplateExists": "errors",
    "TemplateNotFound": "errors",
    "WorkflowExists": "errors",
    "WorkflowNotFound": "errors",
    "MemoryWorkflowStore": "memory_store",
    "RedisWorkflowStore": "redis_store",
    "PaidSkillNeedsWorkflow": "router",
    "SkillNotOffered": "router",
    "SkillRouter": "router",
    "WorkflowServicer": "servicer",
    "Change": "store",
    "LeaseLost": "store",
    "WorkflowStore": "store",
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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'meshwright.workflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"meshwright.workflow.{module}"), name)
    globals()[name] = value
    return value
