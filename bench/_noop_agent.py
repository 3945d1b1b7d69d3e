"""The no-op agent of bench/stores.py: ``bench.noop`` (price 1) and ``bench.free`` (price 0).

Served by the bench through AgentSupervisor with bench/ on PYTHONPATH:
``python -m meshwright.agent run _noop_agent:noop_agent``.
"""

from __future__ import annotations

from typing import Any

from meshwright.agent import Agent, TaskContext

noop_agent = Agent("bench-noop", description="No-op skills for benchmarks.", capacity=16)


@noop_agent.skill("bench.noop", price=1)
async def noop(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Does nothing; costs 1."""
    return {}


@noop_agent.skill("bench.free", price=0)
async def free(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Does nothing; free."""
    return {}
