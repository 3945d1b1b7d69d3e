"""Soak: a distributed cluster held at half its throughput for ten minutes; does it leak?

What: a cluster as ``meshwright cluster up`` runs it (bench/_cluster_load.py: its own
redis-server with AOF fsync always, --replicas registry, economy and workflow replicas
on the Consul double, the gateway alone, --agents no-op agent processes; auth on) gets
small workflows (a fan-out of 5 ``bench.noop`` tasks into a join: 6 tasks) over gRPC
from this process. First its maximum workflow throughput is measured briefly (closed
loop: 32 workflows in flight for --probe seconds, the first 2 s not counted), unless
--rate is given; then half of it (--fraction) is held open-loop (workflows started at a
fixed rate whatever the others do; a latency counts from the scheduled start, so a
stall is not hidden) for --duration seconds. Every --window seconds one row: workflows
completed in the window, p50/p99 latency (create -> terminal event), workflows in
flight, and the RSS of every cluster process (VmRSS of its current pid).

Why: a leak or a slow build-up (memory held per finished workflow, a growing queue, an
index that slows with size) shows only over time, under load. The goals, judged after a
warmup (--warmup seconds, at least the first window):

* RSS growth < 10% for every process: the RSS sampled at the end of the last window
  against the one at the end of the first window after the warmup;
* p99 flat: the p99 of the workflows that ended in the last third of the time after the
  warmup is at most 1.5x the p99 of those in the first third.

Redis keeps, by design, what the run creates (finished workflows for their retention,
7 days unless --workflow-retention; the ledger's transactions for ever; the economy's
idempotency keys for 24 h): its RSS grows with the data, which is not a leak of a
process; its row says so. The load generator (this process) shares the machine's CPUs
with the cluster (on 2 cores: every process shares the same 2 CPUs), so the rate and
latencies are of the whole machine, and a busy neighbour shows as a p99 bump.

    python bench/soak.py                          # --probe 20 --duration 600 --window 10
    python bench/soak.py --rate 20 --duration 120 --window 5 --warmup 10
    python bench/soak.py --quick                  # --probe 5 --duration 40 --window 5 --warmup 10
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from _cluster_load import (
    LoadedCluster,
    LoadResult,
    growth_pct,
    kind_of,
    loaded_cluster,
    parse_with_quick,
    percentile,
    run_in_dir,
    split_p99,
    window_stats,
)
from _results import Results, add_json_flag

RSS_GOAL_PCT = 10.0
P99_GOAL_RATIO = 1.5
PROBE_K = 32
PROBE_WARMUP_S = 2.0
QUICK = ("--probe", "5", "--duration", "40", "--window", "5", "--warmup", "10")
"""``--quick``: about a minute."""


def fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def short(name: str) -> str:
    """A column header for a process: ``workflow-2`` -> ``wf-2``."""
    for long, brief in (("registry", "reg"), ("economy", "eco"), ("workflow", "wf")):
        if name.startswith(long):
            return brief + name[len(long) :]
    return {"gateway": "gw"}.get(name, name.replace("agent-", "ag-"))


async def run(args: argparse.Namespace, directory: Path) -> None:
    results = Results(bench="soak", title="Soak: a cluster held at half its throughput")
    retention = args.workflow_retention
    serve_args = ["--workflow-retention", retention] if retention else []
    async with loaded_cluster(
        directory,
        workflow_replicas=args.replicas,
        service_replicas=args.replicas,
        agents=args.agents,
        width=args.width,
        serve_args=serve_args,
        agent_args=(
            ("--result-memory", str(args.agent_result_memory))
            if args.agent_result_memory is not None
            else ()
        ),
    ) as load:
        names = list(load.rss_mib())
        print(
            f"cluster: {', '.join(names)} (+ the Consul double, not sampled); "
            f"workflow: {args.width} bench.noop tasks into a join"
        )
        before = load.rss_mib()
        shown = "  ".join(f"{short(n)} {fmt(v)}" for n, v in before.items())
        print(f"RSS before load, MiB: {shown}")

        probed: float | None = None
        if args.rate:
            rate = args.rate
            print(f"rate: {rate:g} workflows/s (given)")
        else:
            probe = await load.closed_loop(PROBE_K, args.probe, warmup=PROBE_WARMUP_S)
            m = probe.measured()
            probed = m.rate
            rate = args.fraction * probed
            print(
                f"probe: closed loop K={PROBE_K} for {args.probe:g}s: {probed:.1f} workflows/s "
                f"({probed * load.tasks_per_workflow:.0f} tasks/s), p50 {fmt(m.p50_ms)} ms, "
                f"p99 {fmt(m.p99_ms)} ms, errors {dict(probe.errors) or 0}"
            )
            if rate <= 0:
                raise SystemExit("the probe completed no workflow: nothing to soak at")
            print(f"rate: {rate:.1f} workflows/s ({args.fraction:.0%} of the probe)")

        soak = await hold(load, args, rate, names)

    report(results, args, soak, rate, probed, names, load.tasks_per_workflow)
    results.write(args.json)


async def hold(
    load: LoadedCluster, args: argparse.Namespace, rate: float, names: list[str]
) -> tuple[LoadResult, list[dict[str, Any]]]:
    """The open-loop soak; prints a row a window, returns the load and the rows."""
    rows: list[dict[str, Any]] = []
    header = (
        f"{'t s':>6} {'done':>6} {'wf/s':>6} {'p50 ms':>7} {'p99 ms':>7} {'inflt':>5} "
        f"{'err':>4}  " + " ".join(f"{short(n):>7}" for n in names)
    )
    print(f"\nsoak: open loop at {rate:.1f}/s for {args.duration:g}s; RSS in MiB")
    print(header)

    def on_tick(t: float, result: LoadResult) -> None:
        w = window_stats(result.completions, rows[-1]["t"] if rows else 0.0, t)
        rss = load.rss_mib()
        row = {
            "t": round(t, 3),
            "completed": w.completed,
            "failed": w.failed,
            "errors_total": sum(result.errors.values()),
            "in_flight": load.in_flight,
            "p50_ms": None if w.p50_ms is None else round(w.p50_ms, 2),
            "p99_ms": None if w.p99_ms is None else round(w.p99_ms, 2),
            "rss_mib": rss,
        }
        rows.append(row)
        print(
            f"{t:>6.0f} {w.completed:>6} {w.rate:>6.1f} {fmt(w.p50_ms):>7} {fmt(w.p99_ms):>7} "
            f"{load.in_flight:>5} {row['errors_total']:>4}  "
            + " ".join(f"{fmt(rss.get(n)):>7}" for n in names),
            flush=True,
        )

    soak = await load.open_loop(
        rate, args.duration, poisson=args.poisson, every_s=args.window, on_tick=on_tick
    )
    return soak, rows


def report(
    results: Results,
    args: argparse.Namespace,
    soak_and_rows: tuple[LoadResult, list[dict[str, Any]]],
    rate: float,
    probed: float | None,
    names: list[str],
    tasks_per_workflow: int,
) -> None:
    soak, rows = soak_and_rows
    warmup = warmup_s(args)
    after = [r for r in rows if r["t"] > warmup + 1e-9]
    results.series = rows
    if len(after) < 2:
        raise SystemExit(
            f"only {len(after)} window(s) after the {warmup:g}s warmup: lengthen --duration "
            "or shorten --window / --warmup"
        )
    first_row, last_row = after[0], after[-1]
    span = window_stats(soak.completions, warmup, args.duration)
    held = span.rate
    p99_first, _, p99_last = split_p99(soak.completions, warmup, args.duration, 3)
    lat = [c.latency_s * 1000 for c in soak.completions if c.ok and c.end_s > warmup]

    print(
        f"\nafter the {warmup:g}s warmup: {span.completed} workflows completed "
        f"({held:.1f}/s of {rate:.1f}/s asked, {held * tasks_per_workflow:.0f} tasks/s), "
        f"{span.failed} failed, errors {dict(soak.errors) or 0}, {soak.unfinished} unfinished; "
        f"p50 {fmt(percentile(lat, 50))} ms, p99 {fmt(percentile(lat, 99))} ms"
    )
    if probed is not None:
        results.add(
            f"maximum throughput (closed loop, K={PROBE_K}, {args.probe:g}s probe)",
            "workflows/s",
            probed,
            note=f"{args.width + 1}-task fan-out + join of bench.noop",
        )
    results.add(
        "rate held (open loop, after the warmup)",
        "workflows/s",
        held,
        peer=f"rate asked ({args.fraction:.0%} of the probe)" if probed else "rate asked",
        peer_value=rate,
    )
    results.add("workflows completed (after the warmup)", "workflows", span.completed)
    whole = window_stats(soak.completions, -math.inf, math.inf)
    results.add(
        "workflows failed, in error or unfinished (the whole soak)",
        "workflows",
        whole.failed + sum(soak.errors.values()) + soak.unfinished,
        note=f"errors by code: {dict(soak.errors)}" if soak.errors else "",
    )
    results.add("p50 latency (after the warmup)", "ms", percentile(lat, 50) or 0.0)
    flat = p99_first is not None and p99_last is not None and p99_last <= P99_GOAL_RATIO * p99_first
    if p99_first is not None and p99_last is not None:
        results.add(
            "p99 latency, last third of the run",
            "ms",
            p99_last,
            peer="p99 latency, first third",
            peer_value=p99_first,
            goal=f"<= {P99_GOAL_RATIO:g}x",
            met=flat,
            note="lower is better; create -> terminal event, from the scheduled start",
        )

    print(
        f"\nRSS, MiB: t={first_row['t']:g}s (the first window after the warmup) "
        f"-> t={last_row['t']:g}s"
    )
    print(f"{'process':<12} {'first':>8} {'last':>8} {'growth':>8}  goal < {RSS_GOAL_PCT:g}%")
    grown: list[str] = []
    missing: list[str] = []
    for name in names:
        a, b = first_row["rss_mib"].get(name), last_row["rss_mib"].get(name)
        if a is None or b is None:
            missing.append(name)
            print(f"{name:<12} {fmt(a):>8} {fmt(b):>8} {'-':>8}  not running at a sample")
            continue
        g = growth_pct(a, b)
        met = g < RSS_GOAL_PCT
        if not met:
            grown.append(name)
        why = kind_of(name) == "redis"
        aside = "  (Redis keeps the run's data by design)" if why and not met else ""
        print(f"{name:<12} {a:>8.1f} {b:>8.1f} {g:>+7.1f}%  {'met' if met else 'NOT MET'}{aside}")
        results.add(
            f"RSS growth, {name}",
            "%",
            g,
            goal=f"< {RSS_GOAL_PCT:g}%",
            met=met,
            note=f"{a:.1f} -> {b:.1f} MiB"
            + ("; Redis holds the run's workflows and ledger by design" if why else ""),
        )

    rss_ok = not grown and not missing
    print("\nverdict:")
    print(
        f"  RSS growth < {RSS_GOAL_PCT:g}% for every process: {'met' if rss_ok else 'NOT MET'}"
        + (f" (grew: {', '.join(grown)})" if grown else "")
        + (f" (not sampled: {', '.join(missing)})" if missing else "")
    )
    print(
        f"  p99 flat (last third <= {P99_GOAL_RATIO:g}x first third): "
        f"{fmt(p99_last)} ms vs {fmt(p99_first)} ms: {'met' if flat else 'NOT MET'}"
    )
    results.notes += [
        f"cluster: {', '.join(names)} on the Consul double (not sampled); auth on; "
        f"redis-server with appendfsync always; load over gRPC from the bench process",
        f"soak: open loop at {rate:.2f} workflows/s for {args.duration:g}s "
        f"({'Poisson' if args.poisson else 'evenly spaced'} starts), windows of "
        f"{args.window:g}s, warmup {warmup:g}s",
        f"goals: RSS growth < {RSS_GOAL_PCT:g}% for every process (last window vs the first "
        f"after the warmup); p99 of the last third <= {P99_GOAL_RATIO:g}x that of the first",
        "all processes (cluster and load generator) share this machine's CPUs; on 2 cores "
        "a busy neighbour or the load generator itself shows in the latencies",
        "Redis's RSS grows with the data the run leaves by design (finished workflows for "
        "their retention, the ledger for ever), which is not a process leak",
    ]


def warmup_s(args: argparse.Namespace) -> float:
    """The warmup: --warmup seconds, at least one window, rounded up to whole windows."""
    return math.ceil(max(args.warmup, args.window) / args.window - 1e-9) * args.window


def main(args: argparse.Namespace) -> None:
    run_in_dir(run, args, prefix="meshwright-soak-")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, help="workflows/s to hold (skips the probe)")
    p.add_argument("--probe", type=float, default=20.0, help="seconds of the throughput probe")
    p.add_argument("--fraction", type=float, default=0.5, help="of the probed maximum to hold")
    p.add_argument("--duration", type=float, default=600.0, help="seconds of the soak")
    p.add_argument("--window", type=float, default=10.0, help="seconds a row")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds not judged (>= a window)")
    p.add_argument("--replicas", type=int, default=2, help="of registry, economy and workflow")
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--width", type=int, default=5, help="parallel tasks before the join")
    p.add_argument("--poisson", action="store_true", help="Poisson arrivals, not even spacing")
    p.add_argument(
        "--workflow-retention", default="", help="the services' --workflow-retention (e.g. 60s)"
    )
    p.add_argument(
        "--agent-result-memory",
        type=int,
        help="the agents' --result-memory (finished tasks each remembers for re-dispatch; "
        "10000 by default): 0 shows what their memory does without that bounded cache",
    )
    p.add_argument("--dir", help="keep the cluster's directory (logs) here")
    p.add_argument("--quick", action="store_true", help=f"small sizes: {' '.join(QUICK)}")
    add_json_flag(p)
    main(parse_with_quick(p, QUICK))
