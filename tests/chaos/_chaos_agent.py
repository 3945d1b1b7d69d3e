"""The chaos suite's agent: paid work that records each effect, and a skill that fails
its first attempt.

Every attempt that returns appends ``<workflow>.<task>.<attempt>`` to the file named by
``MW_CHAOS_EFFECTS`` (flushed and fsynced before the result goes back), so the suite can
tell a task that ran from one that was lost, across agent kills and restarts.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from meshwright.agent import Agent, TaskContext

agent = Agent("chaos", capacity=8, description="sleeps, then records its effect")


def _record(ctx: TaskContext) -> None:
    with open(os.environ["MW_CHAOS_EFFECTS"], "a", encoding="utf-8") as f:
        f.write(ctx.task_id + "\n")
        f.flush()
        os.fsync(f.fileno())


@agent.skill("chaos.work", price=1, description="sleep input.seconds, then record the effect")
async def work(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    await asyncio.sleep(float(input.get("seconds", 0.0)))
    _record(ctx)
    return {"task": ctx.task_id.rsplit(".", 2)[1]}


@agent.skill("chaos.flaky", price=1, description="fail the first attempt, then do chaos.work")
async def flaky(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    attempt = int(ctx.task_id.rsplit(".", 1)[1])
    if attempt <= 1:
        raise RuntimeError(f"planned failure of attempt {attempt}")
    return await work(input, ctx)
