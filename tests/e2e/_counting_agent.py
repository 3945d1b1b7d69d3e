"""An agent for kill tests: ``test.work`` sleeps, then records its side effect.

Each completed task appends ``<workflow>.<task>`` to the file named by
``MW_TEST_EFFECTS`` (flushed and fsynced before the result is returned), so a
test can count side effects across agent and engine restarts.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from meshwright.agent import Agent, TaskContext

agent = Agent("counter", capacity=8, description="sleeps, then records one side effect")


def _record(line: str) -> None:
    with open(os.environ["MW_TEST_EFFECTS"], "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@agent.skill("test.work", price=1, description="sleep input.seconds, then record the effect")
async def work(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    await asyncio.sleep(float(input.get("seconds", 0.0)))
    workflow, task, _attempt = ctx.task_id.rsplit(".", 2)
    # On the loop, not in a thread: no cancellation can fall between the effect and the
    # result (an effect recorded by a task that then ends CANCELED would be re-run).
    _record(f"{workflow}.{task}")
    return {"task": task}
