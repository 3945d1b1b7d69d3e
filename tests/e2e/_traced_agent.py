"""An agent for the cross-process trace test: ``trace.flaky`` fails the first attempt of
each task (per process), ``trace.work`` always succeeds; both are paid."""

from __future__ import annotations

import logging
from typing import Any

from meshwright.agent import Agent, TaskContext, TaskFailed

agent = Agent("traced", capacity=8, description="a flaky and a steady paid skill")
_seen: set[tuple[str, str]] = set()
log = logging.getLogger("tests.traced_agent")


@agent.skill("trace.work", price=2, description="always succeeds")
async def work(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    log.warning("working on %s", ctx.task_id)  # carries the run's trace id
    return {"task": ctx.task_id}


@agent.skill("trace.flaky", price=3, description="fails a task's first attempt")
async def flaky(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    workflow, task, _attempt = ctx.task_id.rsplit(".", 2)
    if (workflow, task) not in _seen:
        _seen.add((workflow, task))
        raise TaskFailed("the first attempt fails", reason="FLAKY")
    return {"task": ctx.task_id}
