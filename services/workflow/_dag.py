"""Structural checks of a workflow definition: ids, dependencies, cycles.

Every problem becomes one field violation, so a caller fixes them all in one
round trip instead of one per call.
"""

from __future__ import annotations

import re

from meshwright.mesh.errors import FieldViolation
from meshwright.mesh.validation import duration_s
from meshwright.workflow.v1 import workflow_pb2

TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
MAX_TASKS = 100_000
MAX_ATTEMPTS = 100
MAX_TIMEOUT_S = 86_400.0  # grpc.aio fails deadlines near 1e10 s at once; a day is plenty
MAX_BACKOFF_S = 3_600.0


def check_definition(
    definition: workflow_pb2.WorkflowDefinition, prefix: str = "definition"
) -> list[FieldViolation]:
    """Violations of ``definition`` that need no outside knowledge."""
    out: list[FieldViolation] = []
    tasks = definition.tasks
    if not tasks:
        out.append(FieldViolation(f"{prefix}.tasks", "at least one task is required"))
    if len(tasks) > MAX_TASKS:
        out.append(FieldViolation(f"{prefix}.tasks", f"at most {MAX_TASKS} tasks are allowed"))
    if definition.budget < 0:
        out.append(FieldViolation(f"{prefix}.budget", "must not be negative"))
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
                    f"duplicate task id {task.id!r} (first at {prefix}.tasks"
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
                out.append(FieldViolation(field, f"{dep!r} is listed twice"))
            elif dep not in first_index:
                out.append(FieldViolation(field, f"unknown task {dep!r}"))
            seen.add(dep)
    if not out:
        cycle = find_cycle(definition)
        if cycle is not None:
            index = first_index[cycle[0]]
            out.append(
                FieldViolation(
                    f"{prefix}.tasks[{index}].depends_on",
                    "dependency cycle: " + " -> ".join(cycle) + " (each depends on the next)",
                )
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
