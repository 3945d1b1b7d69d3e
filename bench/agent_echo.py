"""One agent's ExecuteTask throughput: an agent process serving a free echo skill.

The agent (auth off, so any build of meshwright can run it) serves in a child
process; this process calls ExecuteTask 2,000 times one at a time (p50) and
2,000 times 16 in flight (requests/s). Run it with two checkouts' interpreters
to compare builds:

    python bench/agent_echo.py    # --json PATH: also the figures as JSON (make bench)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from typing import Any

import grpc
from _results import Results, add_json_flag

from meshwright.agent.v1 import agent_pb2

PATH = "/meshwright.agent.v1.AgentService/ExecuteTask"
CALLS = 2000


def serve() -> None:
    from meshwright.agent import Agent

    agent = Agent("echo")

    @agent.skill("text.echo", price=0)
    async def echo(input: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return dict(input)

    async def main() -> None:
        try:
            runtime = await agent.start(None, insecure_no_auth=True)
        except TypeError:  # a build from before authentication
            runtime = await agent.start(None)
        print("READY", runtime.server.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runtime.stop()

    asyncio.run(main())


async def measure(port: int, calls: int) -> tuple[float, float]:
    """(p50 ms one at a time, requests/s 16 in flight)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        execute = channel.unary_unary(
            PATH,
            request_serializer=agent_pb2.ExecuteTaskRequest.SerializeToString,
            response_deserializer=agent_pb2.ExecuteTaskResponse.FromString,
        )
        count = 0

        async def one() -> None:
            nonlocal count
            count += 1
            request = agent_pb2.ExecuteTaskRequest(task_id=f"t{count}", skill="text.echo")
            request.input["text"] = "x"
            await execute(request, timeout=60)

        for _ in range(200):
            await one()
        latencies = []
        for _ in range(calls):
            t0 = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - t0)

        async def worker() -> None:
            for _ in range(calls // 16):
                await one()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(16)))
        rate = (calls // 16) * 16 / (time.perf_counter() - t0)
    p50_ms = statistics.median(latencies) * 1000
    print(f"ExecuteTask p50 {p50_ms:.3f} ms, 16 in flight {rate:,.0f}/s")
    return p50_ms, rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    add_json_flag(p)
    args = p.parse_args()
    if args.serve:
        serve()
        return
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    port = int(child.stdout.readline().split()[1])
    try:
        p50_ms, rate = asyncio.run(measure(port, CALLS))
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    results = Results(bench="agent_echo", title="One agent's ExecuteTask, free echo skill")
    results.add("ExecuteTask, 16 in flight", "req/s", rate, note=f"{CALLS:,} calls")
    results.add("ExecuteTask p50, one at a time", "ms", p50_ms, note=f"{CALLS:,} calls")
    results.notes.append("no peer in this script: run it with two builds' interpreters to compare")
    results.write(args.json)


if __name__ == "__main__":
    main()
