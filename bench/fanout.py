"""Fan-out benchmark: one root, N-2 parallel tasks, one join, on real agent processes.

Runs the embedded node (registry, economy, workflow in this process, as
`meshwright up` does) with sample analyst agents as child processes, and
prints throughput, per-task latency, the create call's cost and memory.

    python bench/fanout.py --tasks 2000 --agents 2
    python bench/fanout.py --json PATH    # also the last run's figures as JSON (make bench)
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _results import Results, add_json_flag

from meshwright.agent.supervisor import AgentSupervisor
from meshwright.mesh.auth import Role
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.security import DevCredentials
from meshwright.node import start_node
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.v1 import workflow_pb2

WORKFLOW = workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"]
W = workflow_pb2


def fanout(n: int, skill: str, payer: str, budget: int) -> W.WorkflowDefinition:
    d = W.WorkflowDefinition(name=f"fanout-{n}", budget=budget, payer_account_id=payer)
    root = d.tasks.add(id="root", skill=skill)
    root.input["text"] = "fan out"
    middle = [f"t{i:05d}" for i in range(n - 2)]
    for tid in middle:
        t = d.tasks.add(id=tid, skill=skill, depends_on=["root"])
        t.input["text"] = tid
    d.tasks.add(id="join", skill="text.wordcount", depends_on=middle)
    return d


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def main(args: argparse.Namespace) -> None:
    doc = Results(bench="fanout", title="Fan-out DAG on the embedded engine")
    walls: list[float] = []
    last: dict[str, Any] = {}
    # Auth on, as `meshwright up` runs: dev keys in a private temp dir, agents with tokens.
    keys = DevCredentials.ensure(Path(tempfile.mkdtemp(prefix="meshwright-bench-")))
    config = MeshConfig(
        insecure_no_auth=args.insecure_no_auth,
        auth_public_key=str(keys.public_key),
        auth_private_key=str(keys.private_key),
        grpc_port=0,
        http_port=0,
    )
    node = await start_node(config, gateway=False)
    issuer = None if args.insecure_no_auth else keys.issuer()
    try:
        async with AgentSupervisor(
            node.grpc_address,
            issuer=issuer,
            auth_public_key="" if issuer is None else str(keys.public_key),
            insecure_no_auth=args.insecure_no_auth,
        ) as sup:
            for i in range(args.agents):
                await sup.start("meshwright.agent.samples:analyst_agent", name=f"analyst-{i}")
            while True:
                page = await node.clients["registry"].call(
                    "ListAgents",
                    registry_pb2.ListAgentsRequest(state=registry_pb2.AGENT_STATE_ACTIVE),
                )
                if len(page.agents) >= args.agents:
                    break
                await asyncio.sleep(0.05)
            capacity = sum(a.capacity for a in page.agents)
            budget = args.tasks  # every sample text skill costs 1
            assert node.economy is not None  # minted in-process: only admins mint over RPC
            await node.economy.create_account(
                "bench", owner="client:bench", initial_balance=budget * args.runs
            )
            client = None if issuer is None else issuer.issue(Role.CLIENT, "bench")
            wfs = node.fronted[[c.service for c in node.fronted].index(WORKFLOW)]
            wfs = wfs.with_token(client)  # type: ignore[attr-defined]
            for run in range(args.runs):
                definition = fanout(args.tasks, args.skill, "bench", budget)
                t0 = time.perf_counter()
                reply = await wfs.call(
                    "CreateWorkflow", W.CreateWorkflowRequest(definition=definition)
                )
                t_created = time.perf_counter()
                wf_id = reply.workflow.workflow_id
                started: dict[str, float] = {}
                latencies: list[float] = []
                events = 0
                retries = 0
                async for r in wfs.stream(
                    "WatchWorkflow", W.WatchWorkflowRequest(workflow_id=wf_id)
                ):
                    events += 1
                    e = r.event
                    now = e.time.seconds + e.time.nanos / 1e9
                    if e.type == W.WORKFLOW_EVENT_TYPE_TASK_STARTED:
                        started[e.task_id] = now
                    elif e.type == W.WORKFLOW_EVENT_TYPE_TASK_SUCCEEDED:
                        latencies.append(now - started[e.task_id])
                    elif e.type == W.WORKFLOW_EVENT_TYPE_TASK_RETRYING:
                        retries += 1
                t_done = time.perf_counter()
                got = await wfs.call("GetWorkflow", W.GetWorkflowRequest(workflow_id=wf_id))
                wf = got.workflow
                spread = Counter(t.agent_id for t in wf.tasks if t.agent_id)
                wall = t_done - t0
                print(
                    f"run {run + 1}: {args.tasks} tasks on {args.agents} agents "
                    f"(capacity {capacity}), state {W.WorkflowState.Name(wf.state)}"
                )
                print(
                    f"  wall {wall:.2f}s  -> {args.tasks / wall:,.0f} tasks/s, "
                    f"{events / wall:,.0f} events/s ({events} events, {retries} retries)"
                )
                print(
                    f"  create call (validate {args.tasks} tasks + escrow): "
                    f"{(t_created - t0) * 1000:.1f} ms"
                )
                print(
                    f"  task latency started->succeeded: p50 {pct(latencies, 50) * 1000:.1f} ms"
                    f"  p95 {pct(latencies, 95) * 1000:.1f} ms"
                    f"  p99 {pct(latencies, 99) * 1000:.1f} ms"
                )
                print(
                    f"  spent {wf.spent} of {wf.definition.budget}; tasks per agent: "
                    + ", ".join(f"{n}" for _, n in sorted(spread.items()))
                )
                walls.append(wall)
                last = {
                    "wall": wall,
                    "events": events,
                    "retries": retries,
                    "create_ms": (t_created - t0) * 1000,
                    "latencies": latencies,
                    "spent": wf.spent,
                    "state": W.WorkflowState.Name(wf.state),
                }
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"  mesh process peak RSS {rss_mb:.0f} MiB")
    finally:
        await node.stop()
    if not walls:
        return
    # The last run's figures, as BENCHMARKS.md shows them (the first runs warm up).
    wall, lat = last["wall"], last["latencies"]
    runs = f"run {len(walls)} of {len(walls)}"
    doc.add(
        f"{args.tasks:,}-task fan-out, {args.agents} agents",
        "tasks/s",
        args.tasks / wall,
        note=f"{runs}; wall {wall:.2f} s",
    )
    doc.add("events/s", "events/s", last["events"] / wall)
    for q in (50, 95, 99):
        doc.add(f"task latency started->succeeded p{q}", "ms", pct(lat, q) * 1000)
    doc.add("create call (validate + escrow)", "ms", last["create_ms"])
    doc.add("mesh process peak RSS", "MiB", rss_mb)
    doc.notes.append(
        f"every run's tasks/s: {', '.join(f'{args.tasks / w:,.0f}' for w in walls)}; last run "
        f"{last['state']}, {last['retries']} retries, spent {last['spent']} of {args.tasks}; "
        f"auth {'off' if args.insecure_no_auth else 'on'}; no peer measured in this script"
    )
    doc.write(args.json)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--agents", type=int, default=2)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--skill", default="text.upper")
    add_json_flag(p)
    p.add_argument(
        "--insecure-no-auth", action="store_true", help="run with authentication off (to compare)"
    )
    asyncio.run(main(p.parse_args()))
