"""How it scales: the same closed-loop load on 1 and on 2 workflow replicas, in one run.

What: a cluster as ``meshwright cluster up`` runs it (bench/_cluster_load.py: its own
redis-server with AOF fsync always, registry and economy replicas, workflow replicas on
the Consul double, the gateway alone, --agents no-op agent processes; auth on), with 1
workflow replica and then with 2, everything else equal: --service-replicas registry and
economy replicas each (default 2, the shape the cluster deploys, so that the services
the workflow replicas call are not a single-replica bottleneck of one configuration
only), 4 agents (capacity 16 each), the same client (a balanced client over the workflow
replicas, power of two choices, for 1 replica too). Each configuration gets K workflows
in flight (each --k, default 16 and 32) for --duration seconds per K, after --warmup
seconds of K=max load not counted; a workflow is a fan-out of 5 ``bench.noop`` tasks
into a join (6 tasks), created with a request_id and watched to its terminal event.
Each (round, configuration) is a fresh cluster; the order alternates over --rounds
(1, 2 then 2, 1, ...) so drift of the machine hits both. Printed: every run, then per
configuration and K over all rounds: workflows/s, tasks/s, p50/p99 latency (create ->
terminal event), and the ratio 2 replicas / 1 replica.

Why: a workflow replica runs the workflows it created (each holds a lease on its runs),
so a second replica should take half the runs; whether that buys throughput shows here.

Honest note: every process (Redis, every replica, the agents and this load generator)
runs on this one machine; on 2 cores they all share the same 2 CPUs, so a second replica
adds no CPU, only parallelism (and its own overhead). A ratio near or below 1 here says
the machine, not the design, is the limit; the figure that matters is on separate hosts.

    python bench/scale.py                       # --k 16 32 --duration 20 --rounds 2
    python bench/scale.py --quick               # --duration 5 --rounds 1 --warmup 2
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _cluster_load import LoadResult, loaded_cluster, parse_with_quick, percentile, run_in_dir
from _results import Results, add_json_flag

QUICK = ("--duration", "5", "--rounds", "1", "--warmup", "2")
"""``--quick``: about a minute."""
CONFIGS = (1, 2)
"""Workflow replicas of the two configurations."""


@dataclass(slots=True)
class Pooled:
    """One (configuration, K) over every round."""

    completed: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    failed: int = 0

    def add(self, r: LoadResult) -> None:
        m = r.measured()
        self.completed += m.completed
        self.failed += m.failed
        self.seconds += r.duration_s
        self.latencies_ms += r.latencies_ms()
        self.errors.update(r.errors)

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


async def one_config(
    args: argparse.Namespace, directory: Path, replicas: int, round_no: int
) -> dict[int, LoadResult]:
    """A fresh cluster with ``replicas`` workflow replicas; every K once."""
    out: dict[int, LoadResult] = {}
    async with loaded_cluster(
        directory,
        workflow_replicas=replicas,
        service_replicas=args.service_replicas,
        agents=args.agents,
        width=args.width,
    ) as load:
        if args.warmup > 0:
            await load.closed_loop(max(args.k), args.warmup)
        for k in args.k:
            r = await load.closed_loop(k, args.duration)
            m = r.measured()
            out[k] = r
            per_s = m.rate * load.tasks_per_workflow
            print(
                f"round {round_no + 1}, {replicas} workflow replica{'s' if replicas > 1 else ''}, "
                f"K={k}: {m.rate:.1f} workflows/s ({per_s:.0f} tasks/s), "
                f"p50 {fmt(m.p50_ms)} ms, p99 {fmt(m.p99_ms)} ms, {m.completed} completed, "
                f"{m.failed} failed, errors {dict(r.errors) or 0}",
                flush=True,
            )
    return out


async def run(args: argparse.Namespace, directory: Path) -> None:
    pooled = {(w, k): Pooled() for w in CONFIGS for k in args.k}
    tasks = args.width + 1
    runs: list[dict[str, Any]] = []  # every run, in the order run: the JSON's series
    for round_no in range(args.rounds):
        order = CONFIGS if round_no % 2 == 0 else tuple(reversed(CONFIGS))
        for w in order:
            got = await one_config(args, directory / f"round{round_no + 1}-wf{w}", w, round_no)
            for k, r in got.items():
                pooled[w, k].add(r)
                m = r.measured()
                runs.append(
                    {
                        "round": round_no + 1,
                        "workflow_replicas": w,
                        "k": k,
                        "workflows_s": round(m.rate, 3),
                        "tasks_s": round(m.rate * tasks, 3),
                        "p50_ms": None if m.p50_ms is None else round(m.p50_ms, 2),
                        "p99_ms": None if m.p99_ms is None else round(m.p99_ms, 2),
                        "errors": sum(r.errors.values()) + m.failed,
                    }
                )

    results = Results(bench="scale", title="How it scales: 1 vs 2 workflow replicas")
    results.series = runs
    print(
        f"\nover {args.rounds} round(s) of {args.duration:g}s per K "
        f"({args.service_replicas} registry and {args.service_replicas} economy replicas, "
        f"{args.agents} agents, {tasks}-task workflows):"
    )
    print(
        f"{'K':>4} {'wf replicas':>11} {'workflows/s':>12} {'tasks/s':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    )
    for k in args.k:
        for w in CONFIGS:
            p = pooled[w, k]
            q50, q99 = percentile(p.latencies_ms, 50), percentile(p.latencies_ms, 99)
            print(
                f"{k:>4} {w:>11} {p.rate:>12.1f} {p.rate * tasks:>8.0f} "
                f"{fmt(q50):>8} {fmt(q99):>8} "
                f"{sum(p.errors.values()) + p.failed:>7}"
            )
        one, two = pooled[1, k], pooled[2, k]
        ratio = two.rate / one.rate if one.rate else None
        p50 = [percentile(x.latencies_ms, 50) for x in (one, two)]
        p99 = [percentile(x.latencies_ms, 99) for x in (one, two)]
        print(
            f"{k:>4} {'2 / 1':>11} {fmt(ratio) if ratio is None else f'{ratio:.2f}x':>12} "
            f"{'':>8} {ratio_text(p50[1], p50[0]):>8} {ratio_text(p99[1], p99[0]):>8}"
        )
        peer = "1 workflow replica, same load"
        results.add(
            f"throughput, K={k}, 2 workflow replicas",
            "workflows/s",
            two.rate,
            peer=peer,
            peer_value=one.rate,
        )
        results.add(
            f"task throughput, K={k}, 2 workflow replicas",
            "tasks/s",
            two.rate * tasks,
            peer=peer,
            peer_value=one.rate * tasks,
        )
        for q, (a, b) in (("p50", p50), ("p99", p99)):
            if a is not None and b is not None:
                results.add(
                    f"{q} latency, K={k}, 2 workflow replicas",
                    "ms",
                    b,
                    peer=peer,
                    peer_value=a,
                    note="lower is better; create -> terminal event",
                )
    results.notes += [
        f"closed loop: K workflows in flight for {args.duration:g}s per K, after {args.warmup:g}s "
        f"of warmup; {args.rounds} round(s), order alternated; a fresh cluster per round and "
        "configuration",
        f"everything else equal: {args.service_replicas} registry and "
        f"{args.service_replicas} economy replicas, the gateway, {args.agents} no-op agents, "
        "redis-server (appendfsync always), the Consul double, one balanced gRPC client",
        "all processes (cluster and load generator) share this machine's CPUs (2 cores "
        "here): a second workflow replica adds parallelism, not CPU; on separate hosts the "
        "ratio would differ",
    ]
    results.write(args.json)


def ratio_text(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}x"


def main(args: argparse.Namespace) -> None:
    run_in_dir(run, args, prefix="meshwright-scale-")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--k", type=int, nargs="+", default=[16, 32], help="workflows in flight")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per K and config")
    p.add_argument("--rounds", type=int, default=2, help="each config once a round, alternated")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load not counted")
    p.add_argument("--service-replicas", type=int, default=2, help="registry and economy each")
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--width", type=int, default=5, help="parallel tasks before the join")
    p.add_argument("--dir", help="keep the clusters' directories (logs) here")
    p.add_argument("--quick", action="store_true", help=f"small sizes: {' '.join(QUICK)}")
    add_json_flag(p)
    main(parse_with_quick(p, QUICK))
