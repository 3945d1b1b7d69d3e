"""Workflow stores side by side, in one run: echo ceiling, memory, Redis, Celery.

Prints, all measured in this one run on this machine (absolute figures move
2x between runs here, so the goals are ratios taken within one run):

1. the bare grpc.aio unary echo ceiling: a raw-bytes echo server in a child
   process, 16 calls in flight from this process (3 rounds of 4,000 calls
   before the rows and 3 after; the best round is the ceiling, the worst
   shows the machine's drift during the run);
2. a fan-out + join of no-op tasks (root -> N-2 parallel -> join, N=2,000)
   on two no-op agent processes (bench/_noop_agent.py, AgentSupervisor), run
   by the embedded node (as ``meshwright up``) with the memory store and with
   the Redis store (``redis://`` on a redis-server this script starts); every
   run printed, the best counts;
3. a Celery 5 chord of the same shape on the same redis-server (broker and
   result backend, db 1; the store uses db 0), one worker process with
   prefork concurrency 2 (two pool processes, as the two agent processes),
   every run printed, the best counts (a fresh worker's first run is its
   slowest);
4. 1-task workflow latency, CreateWorkflow -> the watch stream ends
   (finished), one at a time, against a direct ExecuteTask on the same agents
   (over gRPC from the node's channel pool, the mesh's own token),
   interleaved, on each store: p50/p95 and the difference of the p50s. The
   workflow is run by two clients: over gRPC to the node's port (a separate
   client's view; the goal is judged on this one, the measure that gave the
   issue's "+1.9 ms today") and in-process (the fronted client, as
   bench/fanout.py; shown for information: it has no client hop);
5. the issue's goals beside the ratios, "met" / "not met".

A row that fails (e.g. the Redis store before the node accepts ``redis://``)
prints its error and the rest runs; no figure is made up for it.

    pip install -r bench/requirements-celery.txt   # Celery, for row 3 only
    python bench/stores.py                          # --tasks 2000 --runs 3 --samples 300
    python bench/stores.py --json PATH              # also the figures as JSON (make bench)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from _results import Results, add_json_flag

from meshwright.agent.supervisor import AgentSupervisor
from meshwright.agent.v1 import agent_pb2
from meshwright.mesh.auth import Role
from meshwright.mesh.client import ChannelPool, RemoteServiceClient, ServiceClient
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.security import DevCredentials
from meshwright.node import start_node
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.v1 import workflow_pb2 as W

WORKFLOW = W.DESCRIPTOR.services_by_name["WorkflowService"]
AGENT = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
BENCH = Path(__file__).resolve().parent
ECHO_PATH = "/bench.Echo/Echo"
FANOUT_TIMEOUT_S = 120.0
"""Longest one fan-out run may take before its row is reported as failed."""
SAMPLE_TIMEOUT_S = 10.0
"""Longest one 1-task workflow may take."""
WARMUP_SAMPLES = 20

GOAL_REDIS_ECHO = 0.5
GOAL_REDIS_CELERY = 5.0
BEFORE_MEMORY_ECHO = 0.45
"""The memory store's fan-out / echo before issue 7 (from the issue)."""
GOAL_MEMORY_OVERHEAD_MS = 1.0
GOAL_REDIS_OVERHEAD_MS = 2.0


# -- the bare echo server (child process) ---------------------------------------------


def serve_raw(service: str, method: str, handler: Any) -> None:
    """Serve one raw grpc.aio unary method (bytes in, bytes out) on a free port of
    127.0.0.1, print ``READY <port>`` and run until stdin closes."""

    async def main() -> None:
        server = grpc.aio.server()
        generic = grpc.method_handlers_generic_handler(
            service, {method: grpc.unary_unary_rpc_method_handler(handler)}
        )
        server.add_generic_rpc_handlers((generic,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print("READY", port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop(0)

    asyncio.run(main())


def serve_echo() -> None:
    """A raw grpc.aio unary echo (bytes in, the same bytes out) until stdin closes."""

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    serve_raw("bench.Echo", "Echo", echo)


async def echo_rate(port: int, calls: int, rounds: int) -> list[float]:
    """Requests/s of ``rounds`` rounds of ``calls`` echo calls, 16 in flight."""

    payload = b"x" * 64  # about an ExecuteTaskRequest of a no-op task
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(ECHO_PATH)

        async def worker(n: int) -> None:
            for _ in range(n):
                await call(payload, timeout=30)

        await asyncio.gather(*(worker(50) for _ in range(16)))  # warm up
        rates = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            await asyncio.gather(*(worker(calls // 16) for _ in range(16)))
            rates.append((calls // 16) * 16 / (time.perf_counter() - t0))
    return rates


def measure_echo(calls: int = 4000, rounds: int = 3) -> list[float]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-echo"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        line = child.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError("the echo server did not start")
        return asyncio.run(echo_rate(int(line[1]), calls, rounds))
    finally:
        child.stdin.close()
        stop_process(child)


def stop_process(proc: subprocess.Popen[Any], *, group: bool = False) -> None:
    """SIGTERM, a bounded wait, then SIGKILL (the whole process group with ``group``)."""
    if proc.poll() is not None:
        return

    def send(sig: int) -> None:
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait(timeout=5)


# -- redis-server ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(binary: str, workdir: Path) -> tuple[subprocess.Popen[str], int]:
    """A throwaway redis-server: free port, no persistence, its files in ``workdir``."""
    port = free_port()
    log = (workdir / "redis.log").open("w")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
        + ["--save", "", "--appendonly", "no", "--daemonize", "no"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited: {(workdir / 'redis.log').read_text()[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError("redis-server did not answer PING within 10 s")


# -- the mesh rows --------------------------------------------------------------------


@dataclass
class StoreRow:
    label: str
    walls: list[float] = field(default_factory=list)
    workflow_ms: list[float] = field(default_factory=list)
    """1-task workflows, in-process client."""
    remote_ms: list[float] = field(default_factory=list)
    """1-task workflows, gRPC client."""
    direct_ms: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


async def run_store(row: StoreRow, store_url: str, args: argparse.Namespace, keys: Path) -> None:
    """Fan-out runs and 1-task latency samples on a node with ``store_url``; fills ``row``."""
    creds = DevCredentials.ensure(keys)
    config = MeshConfig(
        store_url=store_url,
        insecure_no_auth=args.insecure_no_auth,
        auth_public_key=str(creds.public_key),
        auth_private_key=str(creds.private_key),
        grpc_port=0,
        http_port=0,
        grace_s=0,
    )
    issuer = None if args.insecure_no_auth else creds.issuer()
    skill = "bench.noop" if args.price else "bench.free"
    node = await start_node(config, gateway=False)
    remote_pool = ChannelPool()
    try:
        async with AgentSupervisor(
            node.grpc_address,
            issuer=issuer,
            auth_public_key="" if issuer is None else str(creds.public_key),
            insecure_no_auth=args.insecure_no_auth,
            stop_grace_s=5.0,
            env={
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(BENCH), os.environ.get("PYTHONPATH")])
                ),
                "MESHWRIGHT_LOG_LEVEL": "WARNING",
            },
        ) as sup:
            for i in range(args.agents):
                await sup.start("_noop_agent:noop_agent", name=f"noop-{i}")
            async with asyncio.timeout(20):
                while True:
                    page = await node.clients["registry"].call(
                        "ListAgents",
                        registry_pb2.ListAgentsRequest(state=registry_pb2.AGENT_STATE_ACTIVE),
                    )
                    if len(page.agents) >= args.agents:
                        break
                    await asyncio.sleep(0.05)
            endpoints = [sup.status(f"noop-{i}").endpoint for i in range(args.agents)]
            fanout_budget = args.tasks * args.price
            one_budget = args.price
            payer = ""
            if args.price:
                assert node.economy is not None  # minted in-process: only admins mint over RPC
                payer = "bench"
                total = fanout_budget * args.runs + 2 * one_budget * (args.samples + WARMUP_SAMPLES)
                await node.economy.create_account(
                    payer, owner="client:bench", initial_balance=total
                )
            client = None if issuer is None else issuer.issue(Role.CLIENT, "bench")
            # In-process, as bench/fanout.py and an embedding program call it ...
            embedded = node.fronted[[c.service for c in node.fronted].index(WORKFLOW)]
            embedded = embedded.with_token(client)  # type: ignore[attr-defined]
            # ... and over gRPC to the node's port, as a separate client process does.
            remote = RemoteServiceClient(remote_pool.get(node.grpc_address), WORKFLOW, token=client)

            async def run_to_end(wfs: ServiceClient, definition: W.WorkflowDefinition) -> str:
                reply = await wfs.call(
                    "CreateWorkflow", W.CreateWorkflowRequest(definition=definition)
                )
                wf_id = str(reply.workflow.workflow_id)
                async for _ in wfs.stream(
                    "WatchWorkflow", W.WatchWorkflowRequest(workflow_id=wf_id)
                ):
                    pass
                return wf_id

            async def check(wf_id: str, spend: int) -> None:
                got = (
                    await embedded.call("GetWorkflow", W.GetWorkflowRequest(workflow_id=wf_id))
                ).workflow
                if got.state != W.WORKFLOW_STATE_SUCCEEDED:
                    raise RuntimeError(
                        f"workflow {wf_id} ended {W.WorkflowState.Name(got.state)}: {got.error}"
                    )
                if got.spent != spend:
                    raise RuntimeError(f"workflow {wf_id} spent {got.spent}, expected {spend}")

            # The fan-out, created and watched in-process (as bench/fanout.py).
            for run in range(args.runs):
                definition = fanout(args.tasks, skill, payer, fanout_budget)
                t0 = time.perf_counter()
                async with asyncio.timeout(FANOUT_TIMEOUT_S):
                    wf_id = await run_to_end(embedded, definition)
                wall = time.perf_counter() - t0
                await check(wf_id, fanout_budget)
                row.walls.append(wall)
                print(
                    f"  {row.label}: fan-out run {run + 1}: {args.tasks} tasks in {wall:.2f} s"
                    f" -> {args.tasks / wall:,.0f} tasks/s",
                    flush=True,
                )

            # 1-task workflows (embedded and gRPC clients) and direct ExecuteTask calls,
            # one at a time, interleaved so the machine's drift hits all three alike.
            agents = [node.channels.client(e, AGENT) for e in endpoints]
            one = W.WorkflowDefinition(name="one", budget=one_budget, payer_account_id=payer)
            one.tasks.add(id="only", skill=skill)
            for i in range(WARMUP_SAMPLES + args.samples):
                t0 = time.perf_counter()
                async with asyncio.timeout(SAMPLE_TIMEOUT_S):
                    embedded_id = await run_to_end(embedded, one)
                t1 = time.perf_counter()
                async with asyncio.timeout(SAMPLE_TIMEOUT_S):
                    remote_id = await run_to_end(remote, one)
                t2 = time.perf_counter()
                request = agent_pb2.ExecuteTaskRequest(task_id=f"direct-{i}", skill=skill)
                await agents[i % len(agents)].call("ExecuteTask", request, timeout=SAMPLE_TIMEOUT_S)
                t3 = time.perf_counter()
                if i < WARMUP_SAMPLES:
                    continue
                if i == WARMUP_SAMPLES:  # outside the timing
                    await check(embedded_id, one_budget)
                    await check(remote_id, one_budget)
                row.workflow_ms.append((t1 - t0) * 1000)
                row.remote_ms.append((t2 - t1) * 1000)
                row.direct_ms.append((t3 - t2) * 1000)
    finally:
        await remote_pool.close()
        try:
            await asyncio.wait_for(node.stop(), timeout=30)
        except TimeoutError:
            row.notes.append("node.stop() took over 30 s")


def fanout(n: int, skill: str, payer: str, budget: int) -> W.WorkflowDefinition:
    """root -> n-2 parallel -> join, as bench/fanout.py."""
    d = W.WorkflowDefinition(name=f"fanout-{n}", budget=budget, payer_account_id=payer)
    d.tasks.add(id="root", skill=skill)
    middle = [f"t{i:05d}" for i in range(n - 2)]
    for tid in middle:
        d.tasks.add(id=tid, skill=skill, depends_on=["root"])
    d.tasks.add(id="join", skill=skill, depends_on=middle)
    return d


def measure_store(label: str, store_url: str, args: argparse.Namespace, keys: Path) -> StoreRow:
    row = StoreRow(label)
    print(f"{label} store ({store_url}):", flush=True)
    try:
        asyncio.run(run_store(row, store_url, args, keys))
    except Exception as e:  # a failed row is reported, the rest runs
        row.error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        print(f"  {label}: FAILED: {row.error}", flush=True)
        if args.verbose:
            traceback.print_exc()
    return row


# -- the Celery row -------------------------------------------------------------------


@dataclass
class CeleryRow:
    walls: list[float] = field(default_factory=list)
    version: str = ""
    error: str = ""


def measure_celery(args: argparse.Namespace, redis_port: int, workdir: Path) -> CeleryRow:
    row = CeleryRow()
    print(f"Celery chord (prefork, concurrency {args.agents}):", flush=True)
    url = f"redis://127.0.0.1:{redis_port}/1"
    env = {
        **os.environ,
        "MESHWRIGHT_BENCH_CELERY_URL": url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")])),
    }
    probe = subprocess.run(
        [sys.executable, "-c", "import celery; print(celery.__version__)"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if probe.returncode != 0:
        row.error = "Celery is not installed (pip install -r bench/requirements-celery.txt)"
        print(f"  celery: FAILED: {row.error}", flush=True)
        return row
    row.version = probe.stdout.strip()
    log_path = workdir / "celery-worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "_celery_chord", "worker"]
            + ["--pool", "prefork", "--concurrency", str(args.agents), "--loglevel", "WARNING"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=BENCH,
            start_new_session=True,  # its pool processes stop with it (killpg)
        )
    try:
        client = subprocess.Popen(
            [sys.executable, str(BENCH / "_celery_chord.py")]
            + ["--tasks", str(args.tasks), "--runs", str(args.runs)]
            + ["--timeout", str(FANOUT_TIMEOUT_S)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=BENCH,
        )
        try:
            out, err = client.communicate(timeout=30 + FANOUT_TIMEOUT_S * args.runs)
        except subprocess.TimeoutExpired:
            client.kill()
            out, err = client.communicate(timeout=5)
            err += "\n(the Celery client timed out)"
        for line in out.splitlines():
            result = json.loads(line)
            if result["ok"]:  # a wrong join is no figure
                row.walls.append(float(result["wall_s"]))
            print(
                f"  celery: chord run {result['run']}: {args.tasks} tasks in"
                f" {result['wall_s']:.2f} s -> {args.tasks / result['wall_s']:,.0f} tasks/s"
                + ("" if result["ok"] else f" WRONG JOIN ({result['joined']} results)"),
                flush=True,
            )
        if client.returncode != 0 or len(row.walls) < args.runs:
            lines = err.strip().splitlines() or ["(no output)"]
            row.error = f"the Celery client failed (exit {client.returncode}): {lines[-1]}"
            print(f"  celery: FAILED: {row.error}", flush=True)
            print("  client stderr tail:", "\n".join(lines[-15:]), flush=True)
            print("  worker log tail:", log_path.read_text()[-800:], flush=True)
    finally:
        stop_process(worker, group=True)
    return row


# -- the report -----------------------------------------------------------------------


def report(
    args: argparse.Namespace,
    echo: list[float],
    echo_error: str,
    stores: list[StoreRow],
    celery: CeleryRow | None,
    doc: Results | None = None,
) -> None:
    """Print the figures and the goals; with ``doc``, add them to it beside their peers."""
    doc = doc if doc is not None else Results(bench="stores", title="")
    n = args.tasks
    echo_best = max(echo) if echo else 0.0
    print()
    print(
        f"== Figures (one run; fan-out of {n} tasks on {args.agents} agent processes,"
        f" best of {args.runs}) =="
    )
    if echo_error:
        print(f"  bare grpc.aio echo, 16 in flight        FAILED: {echo_error}")
    else:
        print(
            f"  bare grpc.aio echo, 16 in flight        {echo_best:8,.0f} req/s   (best of"
            f" {len(echo)} rounds before and after; worst {min(echo):,.0f})"
        )
        doc.add(
            "bare grpc.aio echo, 16 in flight (the ceiling)",
            "req/s",
            echo_best,
            note=f"best of {len(echo)} rounds before and after the rows; worst {min(echo):,.0f}",
        )
    if echo_error:
        doc.notes.append(f"bare grpc.aio echo: failed: {echo_error}")
    best: dict[str, float] = {}
    for row in stores:
        name = f"fan-out, {row.label} store"
        if row.walls:
            w = min(row.walls)
            best[row.label] = n / w
            runs = ", ".join(f"{x:.2f}" for x in row.walls)
            print(f"  {name:39s} {n / w:8,.0f} tasks/s wall {w:.2f} s   (runs {runs} s)")
        if row.error:
            print(f"  {name:39s} FAILED: {row.error}")
            doc.notes.append(f"{name}: failed: {row.error}")
    if celery is not None:
        name = f"Celery {celery.version} chord, prefork -c {args.agents}".replace("  ", " ")
        if celery.walls:
            w = min(celery.walls)
            best["celery"] = n / w
            runs = ", ".join(f"{x:.2f}" for x in celery.walls)
            print(f"  {name:39s} {n / w:8,.0f} tasks/s wall {w:.2f} s   (runs {runs} s)")
        if celery.error:
            print(f"  {name:39s} FAILED: {celery.error}")
            doc.notes.append(f"{name}: failed: {celery.error}")
    echo_v = echo_best or None
    celery_name = f"Celery {celery.version} chord, prefork -c {args.agents}" if celery else ""
    echo_peer = "bare grpc.aio echo, 16 in flight"
    # (row, peer, peer's tasks/s or req/s, goal as value / peer, the goal's text)
    fanouts: list[tuple[str, str, float | None, float | None, str]] = [
        ("redis", echo_peer, echo_v, GOAL_REDIS_ECHO, f">= {GOAL_REDIS_ECHO}x"),
        (
            "redis",
            f"{celery_name}, same Redis",
            best.get("celery"),
            GOAL_REDIS_CELERY,
            f">= {GOAL_REDIS_CELERY:.0f}x",
        ),
        ("redis", "fan-out, memory store", best.get("memory"), None, ""),
        (
            "memory",
            echo_peer,
            echo_v,
            BEFORE_MEMORY_ECHO,
            f">= ~{BEFORE_MEMORY_ECHO}x (before)",
        ),
    ]
    for label, peer, peer_value, goal_x, goal_text in fanouts:
        if label not in best or not peer_value:
            continue
        doc.add(
            f"fan-out of {n:,} tasks, {label} store",
            "tasks/s",
            best[label],
            peer=peer,
            peer_value=peer_value,
            goal=goal_text,
            met=None if goal_x is None else best[label] / peer_value >= goal_x,
            note=f"best of {args.runs} runs on {args.agents} agent processes",
        )
    overhead: dict[str, float] = {}
    for row in stores:
        if row.direct_ms:
            d50 = pct(row.direct_ms, 50)
            print(
                f"  1-task, {row.label:6s} direct ExecuteTask          p50 {d50:6.2f} ms"
                f"  p95 {pct(row.direct_ms, 95):6.2f} ms   ({len(row.direct_ms)} samples)"
            )
            goal_ms = GOAL_MEMORY_OVERHEAD_MS if row.label == "memory" else GOAL_REDIS_OVERHEAD_MS
            for key, name, values in (
                ("in-process", "in-process client", row.workflow_ms),
                ("gRPC", "gRPC client", row.remote_ms),
            ):
                w50 = pct(values, 50)
                overhead[f"{row.label}, {key}"] = w50 - d50
                print(
                    f"  1-task, {row.label:6s} workflow, {name:17s} p50 {w50:6.2f} ms"
                    f"  p95 {pct(values, 95):6.2f} ms   p50 - direct p50 {w50 - d50:+.2f} ms"
                )
                judged = key == "gRPC"  # the goal is judged on the gRPC client
                doc.add(
                    f"1-task workflow p50, {row.label} store, {name}",
                    "ms",
                    w50,
                    peer="direct ExecuteTask p50, same agents",
                    peer_value=d50,
                    goal=f"<= +{goal_ms:.0f} ms over the peer" if judged else "",
                    met=(w50 - d50 <= goal_ms) if judged else None,
                    note=f"+{w50 - d50:.2f} ms; p95 {pct(values, 95):.2f} ms vs direct"
                    f" {pct(row.direct_ms, 95):.2f} ms; {len(values)} samples"
                    + ("" if judged else "; no client hop, for information"),
                )
        for note in row.notes:
            print(f"  note ({row.label}): {note}")

    def verdict(value: float | None, goal: float, *, at_most: bool = False) -> str:
        if value is None:
            return "n/a (a row failed or was skipped)"
        ok = value <= goal if at_most else value >= goal
        return "met" if ok else "not met"

    def ratio(a: str, b: float | None) -> float | None:
        return best[a] / b if a in best and b else None

    def fmt(v: float | None, unit: str = "x") -> str:
        if v is None:
            return f"{'-':>9s}"
        return f"{v:+6.2f} ms" if unit == "ms" else f"{v:8.2f}x"

    lines = [
        (
            "Redis store / echo ceiling",
            ratio("redis", echo_v),
            f">= {GOAL_REDIS_ECHO}x",
            GOAL_REDIS_ECHO,
            False,
            "x",
        ),
        (
            "Redis store / Celery best",
            ratio("redis", best.get("celery")),
            f">= {GOAL_REDIS_CELERY:.0f}x",
            GOAL_REDIS_CELERY,
            False,
            "x",
        ),
        (
            "memory store / echo ceiling",
            ratio("memory", echo_v),
            f">= ~{BEFORE_MEMORY_ECHO}x (before issue 7)",
            BEFORE_MEMORY_ECHO,
            False,
            "x",
        ),
        (
            "memory store / Celery best",
            ratio("memory", best.get("celery")),
            "(info)",
            None,
            False,
            "x",
        ),
        (
            "1-task overhead p50, memory (gRPC client)",
            overhead.get("memory, gRPC"),
            f"<= +{GOAL_MEMORY_OVERHEAD_MS:.0f} ms",
            GOAL_MEMORY_OVERHEAD_MS,
            True,
            "ms",
        ),
        (
            "1-task overhead p50, redis (gRPC client)",
            overhead.get("redis, gRPC"),
            f"<= +{GOAL_REDIS_OVERHEAD_MS:.0f} ms",
            GOAL_REDIS_OVERHEAD_MS,
            True,
            "ms",
        ),
        (
            "1-task overhead p50, memory (in-process)",
            overhead.get("memory, in-process"),
            "(info: no client hop)",
            None,
            True,
            "ms",
        ),
        (
            "1-task overhead p50, redis (in-process)",
            overhead.get("redis, in-process"),
            "(info: no client hop)",
            None,
            True,
            "ms",
        ),
    ]
    print()
    print("== Goals (issue 7) ==")
    for label, value, goal_text, goal, at_most, unit in lines:
        status = "" if goal is None else verdict(value, goal, at_most=at_most)
        print(f"  {label:42s} {fmt(value, unit)}   goal {goal_text:32s} {status}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=2000, help="fan-out size (root + N-2 + join)")
    p.add_argument(
        "--runs",
        type=int,
        default=3,
        help="fan-out runs per system (Celery, each store); best counts",
    )
    p.add_argument("--samples", type=int, default=300, help="1-task latency samples per store")
    p.add_argument("--agents", type=int, default=2, help="agent processes = Celery concurrency")
    p.add_argument(
        "--price",
        type=int,
        default=1,
        choices=(0, 1),
        help="price of the no-op skill: 1 pays every task from escrow, as bench/fanout.py",
    )
    p.add_argument("--skip-celery", action="store_true")
    p.add_argument("--redis-server", default="/usr/bin/redis-server")
    p.add_argument(
        "--insecure-no-auth", action="store_true", help="run with authentication off (to compare)"
    )
    p.add_argument("--verbose", action="store_true", help="tracebacks of failed rows")
    p.add_argument("--serve-echo", action="store_true", help=argparse.SUPPRESS)
    add_json_flag(p)
    args = p.parse_args()
    if args.serve_echo:
        serve_echo()
        return
    if args.tasks < 3 or args.runs < 1 or args.samples < 2 or args.agents < 1:
        p.error("need --tasks >= 3, --runs >= 1, --samples >= 2, --agents >= 1")
    os.environ.setdefault("MESHWRIGHT_LOG_LEVEL", "WARNING")
    workdir = Path(tempfile.mkdtemp(prefix="meshwright-bench-stores-"))
    redis_proc: subprocess.Popen[str] | None = None
    t_start = time.perf_counter()
    try:
        echo: list[float] = []
        echo_errors: list[str] = []

        def echo_rounds(when: str) -> None:
            print(f"bare grpc.aio echo ({when}):", flush=True)
            try:
                rates = measure_echo()
            except Exception as e:  # reported, the rest runs
                echo_errors.append(f"{type(e).__name__}: {e}")
                print(f"  echo: FAILED: {echo_errors[-1]}", flush=True)
                return
            echo.extend(rates)
            print("  " + ", ".join(f"{r:,.0f} req/s" for r in rates), flush=True)

        # The ceiling is measured before and after the rows: its best round counts, and
        # the spread shows how far the machine drifted during the run.
        echo_rounds("before")
        redis_proc, redis_port = start_redis(args.redis_server, workdir)
        keys = workdir / "keys"
        stores = [
            measure_store("memory", "memory://", args, keys),
            measure_store("redis", f"redis://127.0.0.1:{redis_port}/0", args, keys),
        ]
        celery = None if args.skip_celery else measure_celery(args, redis_port, workdir)
        echo_rounds("after")
        echo_error = "" if echo else "; ".join(echo_errors)
        doc = Results(bench="stores", title="Workflow stores side by side")
        report(args, echo, echo_error, stores, celery, doc)
        doc.notes.append(
            f"price {args.price} a task; auth {'off' if args.insecure_no_auth else 'on'};"
            f" 1-task latency: {args.samples} samples per store"
        )
        doc.write(args.json)
        print(f"\n(whole run {time.perf_counter() - t_start:.0f} s)")
    finally:
        if redis_proc is not None:
            stop_process(redis_proc)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
