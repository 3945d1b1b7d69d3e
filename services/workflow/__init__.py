"""The workflow domain: DAG validation, placement, retries, payment, event logs."""

from meshwright.workflow.directory import (
    AgentDirectory,
    BreakerPolicy,
    BudgetExhausted,
    NoAgentAvailable,
)
from meshwright.workflow.engine import Engine, EngineConfig
from meshwright.workflow.errors import (
    TemplateExists,
    TemplateNotFound,
    WorkflowExists,
    WorkflowNotFound,
)
from meshwright.workflow.router import PaidSkillNeedsWorkflow, SkillNotOffered, SkillRouter
from meshwright.workflow.servicer import WorkflowServicer
from meshwright.workflow.store import MemoryWorkflowStore, WorkflowStore

__all__ = [
    "AgentDirectory",
    "BreakerPolicy",
    "BudgetExhausted",
    "Engine",
    "EngineConfig",
    "MemoryWorkflowStore",
    "NoAgentAvailable",
    "PaidSkillNeedsWorkflow",
    "SkillNotOffered",
    "SkillRouter",
    "TemplateExists",
    "TemplateNotFound",
    "WorkflowExists",
    "WorkflowNotFound",
    "WorkflowServicer",
    "WorkflowStore",
]
