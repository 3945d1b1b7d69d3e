"""Retry policy: how often a task is tried, how long it waits, what is never retried.

The knobs are Temporal's (max attempts, initial backoff, multiplier, max
backoff, non-retryable reasons). A definition's ``RetryPolicy`` overrides the
engine's defaults field by field.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh.validation import duration_s
from meshwright.workflow.v1 import workflow_pb2

OUTPUT_REFUSED = "OUTPUT_REFUSED"
"""Reason of a task whose output the mesh could not store: never retried (another
attempt would produce output that cannot be kept either)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryDefaults:
    """The engine's defaults where a definition leaves a knob unset."""

    max_attempts: int = 3
    initial_backoff_s: float = 0.2
    backoff_multiplier: float = 2.0
    max_backoff_s: float = 10.0
    task_timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class TaskRetry:
    """The retry rules of one task, resolved."""

    max_attempts: int
    initial_backoff_s: float
    multiplier: float
    max_backoff_s: float
    timeout_s: float
    non_retryable: frozenset[str]

    @classmethod
    def of(cls, spec: workflow_pb2.TaskSpec, defaults: RetryDefaults) -> TaskRetry:
        retry = spec.retry
        return cls(
            max_attempts=retry.max_attempts or defaults.max_attempts,
            initial_backoff_s=(
                duration_s(retry.initial_backoff)
                if retry.HasField("initial_backoff")
                else defaults.initial_backoff_s
            ),
            multiplier=retry.backoff_multiplier or defaults.backoff_multiplier,
            max_backoff_s=(
                duration_s(retry.max_backoff)
                if retry.HasField("max_backoff")
                else defaults.max_backoff_s
            ),
            timeout_s=(
                duration_s(spec.timeout) if spec.HasField("timeout") else defaults.task_timeout_s
            ),
            non_retryable=frozenset(retry.non_retryable_reasons),
        )

    def backoff_after(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        wait = self.initial_backoff_s * self.multiplier ** max(attempt - 1, 0)
        return min(wait, self.max_backoff_s)

    def retryable_reason(self, reason: str) -> bool:
        """Whether an error with ``reason`` may be tried again by this policy."""
        return reason not in self.non_retryable and reason != OUTPUT_REFUSED

    def retryable_task(self, status: agent_pb2.TaskStatus) -> bool:
        """Whether the agent's answer (a task that did not complete) may be tried again.

        What the agent marked non-retryable is final (the SDK marks a rejection of
        the input so by default); so is a reason the policy lists.
        """
        if status.non_retryable:
            return False
        return self.retryable_reason(status.reason)


__all__ = ["OUTPUT_REFUSED", "RetryDefaults", "TaskRetry"]
