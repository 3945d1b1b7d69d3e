"""Tracing's cost: ExecuteTask and a 2,000-task fan-out with tracing on vs off, one run.

"On" is every process of the measure tracing, sampled 100% (the default
parent-based always-on sampler), exporting OTLP/gRPC (``--protocol
http/protobuf``: OTLP/HTTP) to a real receiver (tests/otlp_receiver.py)
serving in a child process of its own, so decoding the spans does not take
this process's event loop; "off" is no process tracing (metrics on, as the
product runs); "bare" is neither tracing nor metrics (``MESHWRIGHT_METRICS=off``
in every process): off against bare is the metrics' cost (goal: under 5%).
Each round runs the three modes, a different one first each round (this
machine drifts between runs, and its neighbours take cycles:
ratios within one run are the figures, and ExecuteTask rounds also print the
CPU each process spent a call), each measure's median per mode is
compared, and the spans the receiver got in each round are printed (off rounds
must get none, on rounds prove the spans really left):

1. ExecuteTask: an agent process (one free no-op skill, no registry) called
   from this process through the mesh's RemoteServiceClient with a service
   token the agent verifies, as the mesh calls agents (``--insecure-no-auth``:
   no token, no check; then the off rounds send no metadata at all, and the
   traceparent is the first pair gRPC's metadata code handles): ``--calls``
   calls ``--in-flight`` at once (requests/s, and the p50 of those calls),
   then ``--calls // 4`` one at a time (p50 alone). On, this process traces
   (``telemetry.setup_tracing("bench-client")`` with the receiver's ``OTEL_*`` variables:
   a CLIENT span a call) and so does the agent, started with the receiver's
   ``OTEL_*`` variables (a SERVER span a call); a fresh agent process each round.
2. Fan-out: root -> ``--tasks``-2 parallel -> join (bench/fanout.py's workflow)
   on the embedded node in this process (auth on, as ``meshwright up``) with
   ``--agents`` sample analyst agent processes started by AgentSupervisor:
   tasks/s over the wall (CreateWorkflow to the end of WatchWorkflow) and the
   p50 task latency started->succeeded. On, the node's process traces (its
   create span, one span per task attempt, the ExecuteTask CLIENT spans) and
   the agents get the receiver's variables; a fresh node and agents each round.

The goal (from the issue): tracing costs under 15% of throughput, i.e. on >=
0.85 x off for both requests/s and tasks/s.

Any ``OTEL_*`` variable of this shell is dropped first (an off round must trace
nothing; the sampler must be the default). Both sides batch with the same
``OTEL_BSP_SCHEDULE_DELAY`` (``--schedule-delay-ms``; the receiver's 100 ms
by default, the SDK's own default is 5000).

    python bench/tracing.py             # --rounds 2 --calls 4000 --in-flight 16 --tasks 2000
    python bench/tracing.py --quick     # a smoke run of a few seconds
    python bench/tracing.py --json PATH # also the figures as JSON (make bench)
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SKILL = "bench.free"

# -- the agent of the ExecuteTask measure (child process) ----------------------------------


def serve_agent() -> None:
    """A no-op agent (auth off, no registry, unlimited capacity) tracing as the ``OTEL_*``
    variables say; prints ``READY <port>``, serves until stdin closes, exports what is left."""
    import socket

    from meshwright.agent import Agent
    from meshwright.mesh import telemetry

    agent = Agent("bench-echo", description="A free no-op skill.", capacity=0)

    @agent.skill(SKILL, price=0)
    async def free(input: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {}

    telemetry.setup_tracing(agent.name, instance_id=f"{socket.gethostname()}:{os.getpid()}")

    public_key = os.environ.get("BENCH_AUTH_PUBLIC_KEY", "")

    async def main() -> None:
        if public_key:  # as the mesh runs agents: only callers with a valid token get in
            runtime = await agent.start(None, auth_public_key=public_key)
        else:
            runtime = await agent.start(None, insecure_no_auth=True)
        print("READY", runtime.server.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runtime.stop()

    try:
        asyncio.run(main())
    finally:
        telemetry.shutdown_tracing()


if __name__ == "__main__" and sys.argv[1:] == ["--serve-agent"]:
    serve_agent()  # before the imports below: the agent needs none of them
    sys.exit(0)

sys.path.insert(0, str(BENCH))
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # tests/otlp_receiver.py

import fanout as fanout_bench  # noqa: E402 (bench/fanout.py: the workflow, pct)
import stores  # noqa: E402 (bench/stores.py: stop_process)
from _results import Results, add_json_flag  # noqa: E402
from registry import machine  # noqa: E402 (bench/registry.py)

from meshwright.agent.supervisor import AgentSupervisor  # noqa: E402
from meshwright.agent.v1 import agent_pb2  # noqa: E402
from meshwright.mesh import telemetry  # noqa: E402
from meshwright.mesh.auth import Role  # noqa: E402
from meshwright.mesh.client import ChannelPool  # noqa: E402
from meshwright.mesh.config import MeshConfig  # noqa: E402
from meshwright.mesh.security import DevCredentials  # noqa: E402
from meshwright.node import start_node  # noqa: E402
from meshwright.registry.v1 import registry_pb2  # noqa: E402
from meshwright.workflow.v1 import workflow_pb2 as W  # noqa: E402

AGENT = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
GOAL_RATIO = 0.85
"""Tracing on keeps at least this share of the throughput off."""
MODES = ("off", "on", "bare")
"""off: no tracing (metrics on, as the product runs by default); on: tracing too; bare:
neither (``MESHWRIGHT_METRICS=off``): off against bare is what the metrics cost."""
METRICS_GOAL_RATIO = 0.95
READY_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 30.0
FANOUT_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0


# -- child processes ---------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    """This process's environment without any ``OTEL_*`` variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


def spawn_fields(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    """A child that prints ``READY <port>``; it and its port. Its stderr goes to a
    temporary file (a pipe nobody reads could fill and stall it), shown if it fails
    to start."""
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
            cwd=ROOT,
        )
        line = stdout_line(proc, READY_TIMEOUT_S).split()
        if not line or line[0] != "READY":
            stores.stop_process(proc)
            log.seek(0)
            raise RuntimeError(f"{argv[1:]} did not start: {log.read()[-800:]}")
    return proc, line[1:]


def spawn(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    """``spawn_fields`` for a child whose READY line names one port."""
    proc, fields = spawn_fields(argv, env)
    return proc, int(fields[0])


def stdout_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next line of a child's stdout, "" after ``timeout`` seconds or at its end.
    (The children print one line per question, so none waits in the file's buffer.)"""
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return proc.stdout.readline()


def close(proc: subprocess.Popen[str]) -> str:
    """Close a child's stdin (its signal to stop), wait for it (SIGTERM, then SIGKILL, if
    it lingers); what is left of its stdout."""
    try:
        out, _ = proc.communicate(timeout=STOP_TIMEOUT_S)  # closes stdin first
    except subprocess.TimeoutExpired:
        stores.stop_process(proc)
        out = ""
    return out


class Receiver:
    """tests/otlp_receiver.py in a child process, asked for its span counts."""

    def __init__(self) -> None:
        self.proc, ports = spawn_fields([sys.executable, "-m", "tests.otlp_receiver"], clean_env())
        self.port, self.http_port = int(ports[0]), int(ports[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.protocol = "grpc"
        """How the tracing processes export: grpc or http/protobuf (``--protocol``)."""

    def env(self, schedule_delay_ms: int) -> dict[str, str]:
        from tests.otlp_receiver import OtlpReceiver

        r = OtlpReceiver()
        r.port, r.http_port = self.port, self.http_port
        return {**r.env(self.protocol), "OTEL_BSP_SCHEDULE_DELAY": str(schedule_delay_ms)}

    def counts(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        line = stdout_line(self.proc, 10)
        if not line.startswith("SPANS "):
            raise RuntimeError(f"the receiver answered {line!r}")
        return dict(json.loads(line[6:]))

    def stop(self) -> dict[str, Any] | None:
        for line in reversed(close(self.proc).splitlines()):
            if line.startswith("SPANS "):
                return dict(json.loads(line[6:]))
        return None


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Spans received between two counts, by service."""
    a, b = after["by_service"], before["by_service"]
    return {k: a[k] - b.get(k, 0) for k in sorted(a) if a[k] - b.get(k, 0)}


# -- tracing in this process --------------------------------------------------------------


def tracing_here(mode: str, service: str, receiver: Receiver, args: argparse.Namespace) -> None:
    """Tracing on in this process for ``mode`` "on" (exporting to the receiver, batching
    as the children do, the span store of ``meshwright up`` with ``--trace-buffer``),
    off otherwise."""
    telemetry.shutdown_tracing()
    if mode != "on":
        return
    # The same variables the children get: this process exports as theirs do.
    env = {**os.environ, **receiver.env(args.schedule_delay_ms)}
    telemetry.setup_tracing(
        service,
        instance_id=f"bench:{os.getpid()}",
        store=telemetry.SpanStore(max_traces=args.trace_buffer) if args.trace_buffer else None,
        env=env,
    )


# -- the rounds ---------------------------------------------------------------------------


@dataclass
class Round:
    measure: str
    mode: str
    rate: float = 0.0
    """Requests/s (ExecuteTask) or tasks/s (fan-out)."""
    p50_ms: float = 0.0
    """ExecuteTask: at ``--in-flight``; fan-out: task started->succeeded."""
    alone_p50_ms: float = 0.0
    """ExecuteTask one at a time."""
    wall_s: float = 0.0
    units: int = 0
    """ExecuteTask calls made (warm-up and one-at-a-time ones too) or fan-out tasks."""
    spans: dict[str, int] = field(default_factory=dict)
    error: str = ""
    cpu_us: dict[str, float] = field(default_factory=dict)
    """ExecuteTask: CPU (user + system) per call of the timed phase, by process: steadier
    than throughput on a machine whose neighbours take cycles."""

    @property
    def span_total(self) -> int:
        return sum(self.spans.values())


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (its threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def execute_calls(
    port: int, args: argparse.Namespace, row: Round, tag: str, agent_pid: int, token: str | None
) -> None:
    pool = ChannelPool(token=token)
    target = f"127.0.0.1:{port}"
    client = pool.client(target, AGENT)
    count = 0

    async def one() -> float:
        nonlocal count
        count += 1
        request = agent_pb2.ExecuteTaskRequest(task_id=f"{tag}-{count}", skill=SKILL)
        request.input["text"] = "x"
        t0 = time.perf_counter()
        reply = await client.call("ExecuteTask", request, timeout=CALL_TIMEOUT_S)
        elapsed = time.perf_counter() - t0
        state = reply.task.status.state
        if state != agent_pb2.TASK_STATE_COMPLETED:
            raise RuntimeError(f"ExecuteTask ended {agent_pb2.TaskState.Name(state)}")
        return elapsed

    try:
        for _ in range(min(200, args.calls)):  # warm up
            await one()
        per_worker = args.calls // args.in_flight
        latencies: list[float] = []

        async def worker() -> None:
            for _ in range(per_worker):
                latencies.append(await one())

        cpu0 = {"client": cpu_s(os.getpid()), "agent": cpu_s(agent_pid)}
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.in_flight)))
        row.wall_s = time.perf_counter() - t0
        calls = per_worker * args.in_flight
        row.cpu_us = {
            "client": (cpu_s(os.getpid()) - cpu0["client"]) / calls * 1e6,
            "agent": (cpu_s(agent_pid) - cpu0["agent"]) / calls * 1e6,
        }
        row.rate = per_worker * args.in_flight / row.wall_s
        row.p50_ms = statistics.median(latencies) * 1000
        alone = [await one() for _ in range(max(50, args.calls // 4))]
        row.alone_p50_ms = statistics.median(alone) * 1000
    finally:
        row.units = count
        await pool.close()


def execute_round(mode: str, i: int, receiver: Receiver, args: argparse.Namespace) -> Round:
    row = Round("ExecuteTask", mode)
    env = clean_env()
    if mode == "bare":
        env["MESHWRIGHT_METRICS"] = "off"
    token: str | None = None
    if not args.insecure_no_auth:
        keys = DevCredentials.ensure(Path(tempfile.mkdtemp(prefix="meshwright-bench-")))
        env["BENCH_AUTH_PUBLIC_KEY"] = str(keys.public_key)
        token = keys.issuer().issue(Role.SERVICE, "bench", ttl_s=3600)
    if mode == "on":
        env.update(receiver.env(args.schedule_delay_ms))
    agent, port = spawn([sys.executable, str(Path(__file__).resolve()), "--serve-agent"], env)
    try:
        tracing_here(mode, "bench-client", receiver, args)

        async def run() -> None:
            async with asyncio.timeout(args.round_timeout):
                await execute_calls(port, args, row, f"r{i}-{mode}", agent.pid, token)

        asyncio.run(run())
    finally:
        telemetry.shutdown_tracing()  # flushes this side's spans
        close(agent)  # and the agent flushes its own as it exits
    return row


async def fanout_run(mode: str, receiver: Receiver, args: argparse.Namespace, row: Round) -> None:
    keys = DevCredentials.ensure(Path(tempfile.mkdtemp(prefix="meshwright-bench-")))
    config = MeshConfig(
        auth_public_key=str(keys.public_key),
        auth_private_key=str(keys.private_key),
        grpc_port=0,
        http_port=0,
        grace_s=0,
    )
    issuer = keys.issuer()
    env = {"MESHWRIGHT_LOG_LEVEL": "WARNING"}
    if mode == "on":
        env.update(receiver.env(args.schedule_delay_ms))
    if mode == "bare":
        env["MESHWRIGHT_METRICS"] = "off"
        os.environ["MESHWRIGHT_METRICS"] = "off"  # the node in this process reads it
    try:
        node = await start_node(config, gateway=False)
    finally:
        os.environ.pop("MESHWRIGHT_METRICS", None)
    try:
        async with AgentSupervisor(
            node.grpc_address,
            issuer=issuer,
            auth_public_key=str(keys.public_key),
            stop_grace_s=10.0,  # time for the agents to export their last spans
            env=env,
        ) as sup:
            for a in range(args.agents):
                await sup.start("meshwright.agent.samples:analyst_agent", name=f"analyst-{a}")
            async with asyncio.timeout(READY_TIMEOUT_S):
                while True:
                    page = await node.clients["registry"].call(
                        "ListAgents",
                        registry_pb2.ListAgentsRequest(state=registry_pb2.AGENT_STATE_ACTIVE),
                    )
                    if len(page.agents) >= args.agents:
                        break
                    await asyncio.sleep(0.05)
            budget = args.tasks  # every sample text skill costs 1
            assert node.economy is not None  # minted in-process: only admins mint over RPC
            await node.economy.create_account("bench", owner="client:bench", initial_balance=budget)
            wfs = node.fronted[[c.service for c in node.fronted].index(fanout_bench.WORKFLOW)]
            wfs = wfs.with_token(issuer.issue(Role.CLIENT, "bench"))  # type: ignore[attr-defined]
            definition = fanout_bench.fanout(args.tasks, "text.upper", "bench", budget)
            started: dict[str, float] = {}
            latencies: list[float] = []
            async with asyncio.timeout(args.round_timeout):
                t0 = time.perf_counter()
                reply = await wfs.call(
                    "CreateWorkflow", W.CreateWorkflowRequest(definition=definition)
                )
                wf_id = reply.workflow.workflow_id
                async for r in wfs.stream(
                    "WatchWorkflow", W.WatchWorkflowRequest(workflow_id=wf_id)
                ):
                    e = r.event
                    now = e.time.seconds + e.time.nanos / 1e9
                    if e.type == W.WORKFLOW_EVENT_TYPE_TASK_STARTED:
                        started[e.task_id] = now
                    elif e.type == W.WORKFLOW_EVENT_TYPE_TASK_SUCCEEDED:
                        latencies.append(now - started[e.task_id])
                row.wall_s = time.perf_counter() - t0
            wf = (await wfs.call("GetWorkflow", W.GetWorkflowRequest(workflow_id=wf_id))).workflow
            if wf.state != W.WORKFLOW_STATE_SUCCEEDED or wf.spent != budget:
                raise RuntimeError(
                    f"the fan-out ended {W.WorkflowState.Name(wf.state)}, spent {wf.spent}"
                    f" of {budget}: {wf.error}"
                )
            row.rate = args.tasks / row.wall_s
            row.units = args.tasks
            row.p50_ms = fanout_bench.pct(latencies, 50) * 1000
    finally:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await node.stop()


def fanout_round(mode: str, receiver: Receiver, args: argparse.Namespace) -> Round:
    row = Round("fan-out", mode)
    try:
        tracing_here(mode, "bench-node", receiver, args)
        asyncio.run(fanout_run(mode, receiver, args, row))
    finally:
        telemetry.shutdown_tracing()
    return row


def measured(
    fn: Callable[[], Round], measure: str, mode: str, receiver: Receiver, verbose: bool
) -> Round:
    """Run one round; the spans the receiver got meanwhile; a failure is reported, not raised."""
    before = receiver.counts()
    try:
        row = fn()
    except Exception as e:
        row = Round(measure, mode, error=f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        if verbose:
            import traceback

            traceback.print_exc()
    row.spans = delta(before, receiver.counts())
    return row


# -- the report ---------------------------------------------------------------------------


def show(row: Round, i: int, args: argparse.Namespace) -> None:
    head = f"  round {i + 1} {row.measure:11s} {row.mode:3s}"
    spans = ", ".join(f"{k} {v:,}" for k, v in row.spans.items()) or "none"
    if row.error:
        print(f"{head}  FAILED: {row.error}   (spans received: {spans})", flush=True)
        return
    per = row.span_total / max(1, row.units)
    if row.measure == "ExecuteTask":
        figures = (
            f"{row.rate:8,.0f} req/s  p50 {row.p50_ms:6.3f} ms at {args.in_flight} in flight,"
            f" {row.alone_p50_ms:6.3f} ms alone; CPU a call: client"
            f" {row.cpu_us.get('client', 0):4.0f} us, agent {row.cpu_us.get('agent', 0):4.0f} us"
        )
    else:
        figures = (
            f"{row.rate:8,.0f} tasks/s wall {row.wall_s:6.2f} s  task p50 {row.p50_ms:7.1f} ms"
        )
    unit = "call" if row.measure == "ExecuteTask" else "task"
    print(f"{head}  {figures}   spans received: {spans} ({per:.2f} a {unit})", flush=True)
    if row.measure == "ExecuteTask" and row.mode == "on":
        for service, n in row.spans.items():  # one CLIENT or SERVER span a call on each side
            if n < row.units:
                print(f"    {service}: {row.units - n:,} spans short of one a call (dropped?)")


def report(rows: list[Round], args: argparse.Namespace, doc: Results | None = None) -> None:
    """Print the medians and ratios; with ``doc``, add them to it beside their peers."""
    doc = doc if doc is not None else Results(bench="tracing", title="")
    print()
    print(
        f"== Figures (one run, median of {args.rounds} rounds per mode; ExecuteTask"
        f" {args.calls} calls {args.in_flight} in flight; fan-out of {args.tasks} tasks on"
        f" {args.agents} agent processes) =="
    )
    for measure, unit, p50_name in (
        ("ExecuteTask", "req/s", "p50 at in-flight"),
        ("fan-out", "tasks/s", "task p50"),
    ):
        if not any(r.measure == measure for r in rows):
            continue  # --only the other
        med: dict[str, dict[str, float]] = {}
        for mode in MODES:
            ok = [r for r in rows if r.measure == measure and r.mode == mode and not r.error]
            if ok:
                med[mode] = {
                    "rate": statistics.median(r.rate for r in ok),
                    "p50": statistics.median(r.p50_ms for r in ok),
                    "alone": statistics.median(r.alone_p50_ms for r in ok),
                    "spans": statistics.median(r.span_total for r in ok),
                    "n": len(ok),
                    "cpu_client": statistics.median(r.cpu_us.get("client", 0) for r in ok),
                    "cpu_agent": statistics.median(r.cpu_us.get("agent", 0) for r in ok),
                }
        for mode in MODES:
            if mode not in med:
                print(f"  {measure:11s} tracing {mode:3s}  no successful round")
                continue
            m = med[mode]
            alone = (
                f", alone {m['alone']:.3f} ms; CPU a call: client {m['cpu_client']:.0f} us,"
                f" agent {m['cpu_agent']:.0f} us"
                if measure == "ExecuteTask"
                else ""
            )
            print(
                f"  {measure:11s} tracing {mode:3s}  {m['rate']:8,.0f} {unit:7s}"
                f" {p50_name} {m['p50']:7.3f} ms{alone}"
                f"   ({m['n']} rounds, {m['spans']:,.0f} spans a round)"
            )
        if "off" in med and "on" in med:
            ratio = med["on"]["rate"] / med["off"]["rate"]
            p50_ratio = med["on"]["p50"] / med["off"]["p50"] if med["off"]["p50"] else 0.0
            met = ratio >= GOAL_RATIO and med["on"]["spans"] > 0 and med["off"]["spans"] == 0
            print(
                f"  {measure:11s} on/off: throughput {ratio:.3f}x ({(1 - ratio) * 100:.1f}% cost),"
                f" p50 {p50_ratio:.3f}x   goal on >= {GOAL_RATIO} x off: "
                + ("met" if met else "NOT MET")
            )
            off_peer = "tracing off (metrics on), same run"
            doc.add(
                f"{measure}, tracing on",
                unit,
                med["on"]["rate"],
                peer=off_peer,
                peer_value=med["off"]["rate"],
                goal=f">= {GOAL_RATIO}x off",
                met=met,
                note=f"{med['on']['spans']:,.0f} spans a round on, {med['off']['spans']:,.0f} off",
            )
            at = f"p50 at {args.in_flight} in flight" if measure == "ExecuteTask" else p50_name
            doc.add(
                f"{measure} {at}, tracing on",
                "ms",
                med["on"]["p50"],
                peer=off_peer,
                peer_value=med["off"]["p50"],
            )
            if measure == "ExecuteTask":
                for side in ("client", "agent"):
                    doc.add(
                        f"ExecuteTask CPU a call, {side}, tracing on",
                        "us",
                        med["on"][f"cpu_{side}"],
                        peer=off_peer,
                        peer_value=med["off"][f"cpu_{side}"],
                    )
        else:
            print(f"  {measure:11s} on/off: no ratio (a mode has no successful round)   NOT MET")
            doc.notes.append(f"{measure}: no on/off ratio (a mode has no successful round)")
        if "off" in med and "bare" in med:
            ratio = med["off"]["rate"] / med["bare"]["rate"]
            print(
                f"  {measure:11s} metrics (off/bare): throughput {ratio:.3f}x"
                f" ({(1 - ratio) * 100:.1f}% cost)   goal >= {METRICS_GOAL_RATIO}: "
                + ("met" if ratio >= METRICS_GOAL_RATIO else "NOT MET")
            )
            doc.add(
                f"{measure}, metrics on (tracing off)",
                unit,
                med["off"]["rate"],
                peer="bare: no metrics, no tracing, same run",
                peer_value=med["bare"]["rate"],
                goal=f">= {METRICS_GOAL_RATIO}x bare",
                met=ratio >= METRICS_GOAL_RATIO,
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="rounds per mode (default 2)")
    p.add_argument("--calls", type=int, default=4000, help="ExecuteTask calls in flight a round")
    p.add_argument("--in-flight", type=int, default=16, help="ExecuteTask calls at once")
    p.add_argument("--tasks", type=int, default=2000, help="tasks of the fan-out")
    p.add_argument("--agents", type=int, default=2, help="agent processes of the fan-out")
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="ExecuteTask with auth off (no token on the calls, the agent checks none); by "
        "default the calls carry a service token the agent verifies, as the mesh's do",
    )
    p.add_argument(
        "--protocol",
        choices=("grpc", "http/protobuf"),
        default="grpc",
        help="how the tracing processes export to the receiver (OTLP/gRPC by default)",
    )
    p.add_argument(
        "--schedule-delay-ms",
        type=int,
        default=100,
        help="OTEL_BSP_SCHEDULE_DELAY of every tracing process (default 100, the receiver's)",
    )
    p.add_argument(
        "--trace-buffer",
        type=int,
        default=0,
        help="the node also keeps a SpanStore of this many traces, as `meshwright up` (0: none)",
    )
    p.add_argument("--round-timeout", type=float, default=FANOUT_TIMEOUT_S, help="seconds")
    p.add_argument("--only", choices=("execute", "fanout"), help="run one measure only")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 1 round per mode, 400 calls, 100 tasks, 60 s rounds",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="tracebacks of failed rounds")
    add_json_flag(p)
    args = p.parse_args()
    if args.quick:
        args.rounds, args.calls, args.tasks, args.round_timeout = 1, 400, 100, 60.0
    if args.rounds < 1 or args.calls < args.in_flight or args.in_flight < 1 or args.tasks < 3:
        p.error("need --rounds >= 1, --in-flight >= 1, --calls >= --in-flight, --tasks >= 3")
    dropped = sorted(k for k in os.environ if k.startswith("OTEL_"))
    for k in dropped:
        del os.environ[k]

    t_start = time.perf_counter()
    print(f"machine: {machine()}")
    if dropped:
        print(f"(dropped from the environment: {', '.join(dropped)})")
    print(
        f"tracing on: sampled 100%, OTLP ({args.protocol}) to a receiver process on 127.0.0.1,"
        f" batch delay {args.schedule_delay_ms} ms"
        + (f", node span store {args.trace_buffer} traces" if args.trace_buffer else ""),
        flush=True,
    )
    receiver = Receiver()
    receiver.protocol = args.protocol
    rows: list[Round] = []
    try:
        print(f"receiver on {receiver.endpoint}", flush=True)
        for i in range(args.rounds):
            # off/on, then on/off: a machine that speeds up or slows down during the run
            # favours neither mode.
            for mode in MODES[i % 3 :] + MODES[: i % 3]:  # each mode first in turn
                if args.only != "fanout":
                    run = functools.partial(execute_round, mode, i, receiver, args)
                    rows.append(measured(run, "ExecuteTask", mode, receiver, args.verbose))
                    show(rows[-1], i, args)
                if args.only != "execute":
                    run = functools.partial(fanout_round, mode, receiver, args)
                    rows.append(measured(run, "fan-out", mode, receiver, args.verbose))
                    show(rows[-1], i, args)
    finally:
        final = receiver.stop()
    doc = Results(bench="tracing", title="Tracing and metrics: on vs off vs bare")
    report(rows, args, doc)
    if final is not None:
        print(f"  receiver: {final['total']:,} spans in {final['exports']:,} exports in all")
    failed = [r for r in rows if r.error]
    doc.notes.append(
        f"medians of {args.rounds} rounds per mode; ExecuteTask {args.calls:,} calls"
        f" {args.in_flight} in flight; fan-out of {args.tasks:,} tasks on {args.agents} agents"
        + (f"; {len(failed)} rounds failed, e.g. {failed[0].error}" if failed else "")
    )
    doc.write(args.json)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  bench process peak RSS {rss:.0f} MiB")
    print(f"\n(whole run {time.perf_counter() - t_start:.0f} s)")
    sys.exit(1 if any(r.error for r in rows) else 0)


if __name__ == "__main__":
    main()
