"""A one-skill agent for the A2A server's tests: it shows what the skill received.

``probe.echo`` returns its input, metadata, task id and context id, after one progress
report and one artifact, so each rule of the A2A mapping is seen from the agent's side.
With one skill, a message naming none runs it (the single-skill rule).
"""

from __future__ import annotations

from typing import Any

from meshwright.agent import Agent
from meshwright.agent.context import TaskContext

probe_agent = Agent("probe", description="Echoes what a task received.", version="0.1.0")


@probe_agent.skill("probe.echo", name="Echo", description="What the task received.", price=0)
async def echo(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    await ctx.progress("halfway", 0.5)
    await ctx.artifact("note", {"seen": True})
    return {
        "input": input,
        "metadata": ctx.metadata,
        "task_id": ctx.task_id,
        "context_id": ctx.context_id,
    }
