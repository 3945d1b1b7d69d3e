"""A 10,000-task DAG on the Redis store completes; what it costs per task.

Prints Redis memory and this process's memory (engine and the in-process agent:
resident set growth) per task; the bounds
asserted are loose ceilings that catch a regression to whole-workflow writes
(the seam this issue replaced), not benchmarks: bench/stores.py measures.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from meshwright.agent import Agent, TaskContext
from meshwright.mesh.config import MeshConfig
from meshwright.node import start_node
from meshwright.workflow import EngineConfig
from meshwright.workflow._dag import MAX_TASKS
from meshwright.workflow.v1 import workflow_pb2
from tests.workflow.conftest import Running, run

W = workflow_pb2


def _rss() -> int:
    """Resident set size of this process, bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.timeout(300)
async def test_a_10000_task_dag_completes_on_redis(redis_url: str, agents: Running) -> None:
    node = await start_node(
        MeshConfig(insecure_no_auth=True, grpc_port=0, grace_s=0, store_url=redis_url),
        gateway=False,
        engine_config=EngineConfig(agent_wait_s=30, handoff_grace_s=0.5),
    )
    r = aioredis.from_url(redis_url)
    try:
        agent = Agent("wide", capacity=512)

        @agent.skill("x.noop")
        async def noop(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
            return {}

        await agents.start(agent, node)
        n = MAX_TASKS  # root, 9,998 in parallel, join
        middle = [f"m{i}" for i in range(n - 2)]
        tasks: list[dict[str, Any]] = [{"id": "root", "skill": "x.noop"}]
        tasks += [{"id": m, "skill": "x.noop", "dependsOn": ["root"]} for m in middle]
        tasks.append({"id": "join", "skill": "x.noop", "dependsOn": middle})
        redis_before = int((await r.info("memory"))["used_memory"])
        rss_before = _rss()
        started = time.monotonic()
        wf = await run(node, {"tasks": tasks})
        elapsed = time.monotonic() - started
        rss_after = _rss()
        redis_after = int((await r.info("memory"))["used_memory"])
        assert wf.state == W.WORKFLOW_STATE_SUCCEEDED, wf.error
        assert len(wf.tasks) == n
        assert all(t.state == W.TASK_RUN_STATE_SUCCEEDED for t in wf.tasks)
        redis_per_task = (redis_after - redis_before) / n
        rss_per_task = (rss_after - rss_before) / n
        print(
            f"\n10,000 tasks on Redis in {elapsed:.1f}s ({n / elapsed:.0f} tasks/s): Redis "
            f"{redis_per_task:.0f} B/task stored (its record + 3 events), this process's "
            f"resident set grew {rss_per_task:.0f} B/task"
        )
        assert redis_per_task < 4096
        assert rss_per_task < 64 * 1024
    finally:
        await r.aclose()
        await node.stop()
