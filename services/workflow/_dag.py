"""Structural checks of a workflow definition: ids, dependencies, cycles.

Every problem becomes one field violation, so a caller fixes them all in one
round trip instead of one per call. Descriptions quote caller text through
``quote`` (clipped, ASCII-escaped) and a cycle path is abbreviated, so the
error details stay a few KB whatever the definition holds.
"""

from __future__ import annotations

import re

from meshwright.mesh.errors import FieldViolation
from meshwright.mesh.validation import duration_s
from meshwright.workflow.v1 import workflow_pb2

TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
MAX_TASKS = 10_000  # the pipeline bounds every repeated field at 10k anyway
MAX_NAME_CHARS = 256
MAX_LABELS = 64
MAX_LABEL_KEY_CHARS = 63
MAX_LABEL_VALUE_CHARS = 256
MAX_DEFINITION_BYTES = 1024 * 1024
"""Serialized definition (templates expanded): it is stored in, and sent back with, the
workflow, which must stay well below the 8 MiB message bound with its outputs."""
CYCLE_SHOWN = 10
"""Task ids of a long cycle shown before the path is abbreviated."""
_QUOTED_CHARS = 64
MAX_ATTEMPTS = 100
MAX_TIMEOUT_S = 86_400.0  # grpc.aio fails deadlines near 1e10 s at once; a day is plenty
MAX_BACKOFF_S = 3_600.0
MAX_WORKFLOW_TIMEOUT_S = 30 * 86_400.0
MAX_NON_RETRYABLE = 32
MAX_REASON_CHARS = 64
REASON = re.compile(r"^[A-Z][A-Z0-9_]*$")


def check_definition(
    definition: workflow_pb2.WorkflowDefinition, prefix: str = "definition"
) -> list[FieldViolation]:
    """Violations of ``definition`` that need no outside knowledge."""
    out: list[FieldViolation] = []
    tasks = definition.tasks
    size = definition.ByteSize()
    if size > MAX_DEFINITION_BYTES:
        out.append(
            FieldViolation(prefix, f"is {size} bytes serialized; at most {MAX_DEFINITION_BYTES}")
        )
    if len(definition.name) > MAX_NAME_CHARS:
        out.append(
            FieldViolation(
                f"{prefix}.name",
                f"is {len(definition.name)} characters long; at most {MAX_NAME_CHARS}",
            )
        )
    out.extend(_check_labels(definition, prefix))
    if not tasks:
        out.append(FieldViolation(f"{prefix}.tasks", "at least one task is required"))
    if len(tasks) > MAX_TASKS:
        out.append(FieldViolation(f"{prefix}.tasks", f"at most {MAX_TASKS} tasks are allowed"))
    if definition.budget < 0:
        out.append(FieldViolation(f"{prefix}.budget", "must not be negative"))
    if not 0 <= duration_s(definition.timeout) <= MAX_WORKFLOW_TIMEOUT_S:
        out.append(
            FieldViolation(
                f"{prefix}.timeout", f"must be between 0 and {MAX_WORKFLOW_TIMEOUT_S:.0f}s"
            )
        )
    if definition.budget > 0 and not definition.payer_account_id:
        out.append(
            FieldViolation(f"{prefix}.payer_account_id", "is required when budget is positive")
        )
    first_index: dict[str, int] = {}
    for i, task in enumerate(tasks):
        where = f"{prefix}.tasks[{i}]"
        if not task.id:
            out.append(FieldViolation(f"{where}.id", "is required"))
        elif not TASK_ID.fullmatch(task.id):
            out.append(
                FieldViolation(
                    f"{where}.id",
                    "must be 1-128 letters, digits, '_', '-' or '.', starting "
                    "with a letter or digit",
                )
            )
        elif task.id in first_index:
            out.append(
                FieldViolation(
                    f"{where}.id",
                    f"duplicate task id {quote(task.id)} (first at {prefix}.tasks"
                    f"[{first_index[task.id]}])",
                )
            )
        else:
            first_index[task.id] = i
        if not task.skill:
            out.append(FieldViolation(f"{where}.skill", "is required"))
        out.extend(_check_task_options(task, where))
    for i, task in enumerate(tasks):
        seen: set[str] = set()
        for k, dep in enumerate(task.depends_on):
            field = f"{prefix}.tasks[{i}].depends_on[{k}]"
            if dep in seen:
                out.append(FieldViolation(field, f"{quote(dep)} is listed twice"))
            elif dep not in first_index:
                out.append(FieldViolation(field, f"unknown task {quote(dep)}"))
            seen.add(dep)
    if not out:
        cycle = find_cycle(definition)
        if cycle is not None:
            index = first_index[cycle[0]]
            out.append(
                FieldViolation(
                    f"{prefix}.tasks[{index}].depends_on",
                    f"dependency cycle: {cycle_path(cycle)} (each depends on the next)",
                )
            )
    return out


def quote(text: str, limit: int = _QUOTED_CHARS) -> str:
    """Caller text for an error message: clipped and ASCII-only, so its size is bounded
    in bytes (non-ASCII would grow several times over in gRPC's percent-encoded message)."""
    if len(text) > limit:
        return ascii(text[:limit]) + "..."
    return ascii(text)


def cycle_path(cycle: list[str]) -> str:
    """``a -> b -> a``; a long cycle as its first ``CYCLE_SHOWN`` ids, a count, its end."""
    if len(cycle) <= CYCLE_SHOWN + 2:
        return " -> ".join(cycle)
    hidden = len(cycle) - CYCLE_SHOWN - 1
    return (
        " -> ".join(cycle[:CYCLE_SHOWN])
        + f" -> ... ({hidden} more, {len(cycle) - 1} tasks in all) -> "
        + cycle[-1]
    )


def _check_labels(definition: workflow_pb2.WorkflowDefinition, prefix: str) -> list[FieldViolation]:
    labels = definition.labels
    if len(labels) > MAX_LABELS:
        return [
            FieldViolation(f"{prefix}.labels", f"has {len(labels)} entries; at most {MAX_LABELS}")
        ]
    out: list[FieldViolation] = []
    for key in sorted(labels):
        where = f"{prefix}.labels[{quote(key, 32)}]"
        if not 0 < len(key) <= MAX_LABEL_KEY_CHARS:
            out.append(FieldViolation(where, f"keys are 1-{MAX_LABEL_KEY_CHARS} characters"))
        if len(labels[key]) > MAX_LABEL_VALUE_CHARS:
            out.append(
                FieldViolation(where, f"values are at most {MAX_LABEL_VALUE_CHARS} characters")
            )
    return out


def _check_task_options(task: workflow_pb2.TaskSpec, where: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    retry = task.retry
    if not 0 <= retry.max_attempts <= MAX_ATTEMPTS:
        out.append(
            FieldViolation(f"{where}.retry.max_attempts", f"must be between 0 and {MAX_ATTEMPTS}")
        )
    for name, value in (
        ("initial_backoff", retry.initial_backoff),
        ("max_backoff", retry.max_backoff),
    ):
        if not 0 <= duration_s(value) <= MAX_BACKOFF_S:
            out.append(
                FieldViolation(
                    f"{where}.retry.{name}", f"must be between 0 and {MAX_BACKOFF_S:.0f}s"
                )
            )
    if retry.backoff_multiplier != 0 and not 1.0 <= retry.backoff_multiplier <= 100.0:
        out.append(
            FieldViolation(f"{where}.retry.backoff_multiplier", "must be 0 or between 1 and 100")
        )
    reasons = retry.non_retryable_reasons
    if len(reasons) > MAX_NON_RETRYABLE:
        out.append(
            FieldViolation(
                f"{where}.retry.non_retryable_reasons",
                f"has {len(reasons)} entries; at most {MAX_NON_RETRYABLE}",
            )
        )
    else:
        for k, reason in enumerate(reasons):
            if len(reason) > MAX_REASON_CHARS or not REASON.fullmatch(reason):
                out.append(
                    FieldViolation(
                        f"{where}.retry.non_retryable_reasons[{k}]",
                        f"must be 1-{MAX_REASON_CHARS} characters of UPPER_SNAKE_CASE",
                    )
                )
    if not 0 <= duration_s(task.timeout) <= MAX_TIMEOUT_S:
        out.append(
            FieldViolation(f"{where}.timeout", f"must be between 0 and {MAX_TIMEOUT_S:.0f}s")
        )
    return out


def find_cycle(definition: workflow_pb2.WorkflowDefinition) -> list[str] | None:
    """A dependency cycle as a path that ends where it starts, or None.

    Iterative depth-first search (no recursion limit for long chains); the
    grey path on the stack is the cycle when a back edge is found.
    """
    deps = {t.id: list(t.depends_on) for t in definition.tasks}
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(deps, white)
    for root in deps:
        if color[root] != white:
            continue
        path: list[str] = [root]
        iters = [iter(deps[root])]
        color[root] = grey
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                color[path.pop()] = black
                iters.pop()
                continue
            if nxt not in color:
                continue
            if color[nxt] == grey:
                return [*path[path.index(nxt) :], nxt]
            if color[nxt] == white:
                color[nxt] = grey
                path.append(nxt)
                iters.append(iter(deps[nxt]))
    return None
