"""A distributed cluster under a workflow load: what bench/soak.py and bench/scale.py share.

``async with loaded_cluster(tmp, workflow_replicas=N, agents=M) as load:`` starts a
``meshwright.cluster.Cluster`` (its own redis-server with AOF, registry/economy/workflow
replicas on the Consul double ``tests.consul_double.ConsulDoubleProcess``, the gateway
alone, M no-op agent processes from bench/_noop_agent.py; auth on), waits until every
agent is ACTIVE, opens an account funded for any run a bench makes, and stops it all in
``finally``. ``load`` then drives small workflows (default: a fan-out of 5 ``bench.noop``
tasks into a ``bench.noop`` join, 6 tasks costing 6, budget 12):

* ``await load.closed_loop(k, duration)``: K workflows in flight at all times, each the
  next one started as soon as one ends (throughput at a given concurrency);
* ``await load.open_loop(rate, duration)``: workflows started at a fixed rate (even
  spacing, or Poisson arrivals), whether or not earlier ones ended (latency at a given
  load; no coordinated omission: a latency counts from the *scheduled* start).

Each workflow is one ``CreateWorkflow`` with a fresh request_id, then a ``WatchWorkflow``
stream (on the replica the balanced client picks: any replica follows any workflow,
through Redis) to its terminal event; its latency is create (scheduled) -> that event
received. The watch, not polling ``GetWorkflow``, because it is the cheaper of the two
for the same precision: one stream per workflow in flight, on which the server pushes
each event as it is appended (``XREAD BLOCK`` on its own Redis pool), about two events
per task; the end is seen the moment it is written. Polling would quantise every latency
to the poll interval and cost K / interval ``GetWorkflow`` calls a second, each reading
and sending the whole workflow with its task runs; to resolve latencies of tens of ms
that is thousands of calls a second, more than the load being measured.

Also here: per-window statistics (completed, p50/p99 by nearest rank), RSS of every
cluster process read from ``/proc/<pid>/status`` (VmRSS) at its *current* pid (a
restarted process has a new one), and growth between two samples. The statistics are
pure functions, tested in tests/bench_cluster.

The load generator (this process) runs on the same CPUs as the cluster: on a small
machine it takes its share of them, and every figure is of the whole machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:  # tests.consul_double lives in the repository, not the package
    sys.path.insert(0, str(ROOT))

from meshwright.cluster import Cluster, ClusterConfig  # noqa: E402
from meshwright.economy.v1 import economy_pb2 as E  # noqa: E402
from meshwright.mesh.balancer import BalancedClient, StaticEndpoints  # noqa: E402
from meshwright.mesh.client import ChannelPool  # noqa: E402
from meshwright.mesh.errors import MeshError, grpc_code  # noqa: E402
from meshwright.mesh.targets import service_client  # noqa: E402
from meshwright.registry.v1 import registry_pb2 as R  # noqa: E402
from meshwright.workflow.v1 import workflow_pb2 as W  # noqa: E402
from tests.consul_double import ConsulDoubleProcess  # noqa: E402

WORKFLOW = W.DESCRIPTOR.services_by_name["WorkflowService"]
AGENT_TARGET = "_noop_agent:noop_agent"
PAYER = "bench-load"
FUNDS = 10**12
"""The payer's balance: more than any run spends (each workflow spends 6 of it)."""
END_EVENTS = {
    W.WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED: "succeeded",
    W.WORKFLOW_EVENT_TYPE_WORKFLOW_FAILED: "failed",
    W.WORKFLOW_EVENT_TYPE_WORKFLOW_CANCELLED: "cancelled",
}
TRANSIENT = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN", "ABORTED")
CREATE_TIMEOUT_S = 30.0
WORKFLOW_TIMEOUT_S = 120.0
"""Longest one workflow may take before it is counted as an error."""
DRAIN_S = 60.0
"""After a load's duration: how long the workflows in flight may take to end."""
AGENTS_TIMEOUT_S = 60.0
KINDS = ("redis", "registry", "economy", "workflow", "gateway", "agent")
"""Every kind of cluster process; a process's name starts with its kind."""


# -- statistics (pure) -------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile: the smallest value with at least q% of the
    values at or below it (p50 of 1..10 is 5, p99 is 10); None for no values."""
    s = sorted(values)
    if not s:
        return None
    rank = max(1, math.ceil(q / 100 * len(s)))
    return s[min(rank, len(s)) - 1]


@dataclass(frozen=True, slots=True)
class Completion:
    """One workflow's end, ``end_s`` seconds after its load began."""

    end_s: float
    latency_s: float
    ok: bool = True
    """Succeeded (False: it failed or was cancelled)."""


@dataclass(frozen=True, slots=True)
class WindowStats:
    """The workflows that ended in ``(start_s, end_s]``."""

    start_s: float
    end_s: float
    completed: int
    """Succeeded."""
    failed: int
    p50_ms: float | None
    p99_ms: float | None
    """Of the succeeded ones (None when there are none)."""

    @property
    def rate(self) -> float:
        """Succeeded workflows a second."""
        span = self.end_s - self.start_s
        return self.completed / span if span > 0 else 0.0


def window_stats(completions: Iterable[Completion], start_s: float, end_s: float) -> WindowStats:
    """Statistics of the workflows that ended after ``start_s`` and at or before ``end_s``."""
    inside = [c for c in completions if start_s < c.end_s <= end_s]
    ok = [c.latency_s * 1000 for c in inside if c.ok]
    return WindowStats(
        start_s=start_s,
        end_s=end_s,
        completed=len(ok),
        failed=len(inside) - len(ok),
        p50_ms=percentile(ok, 50),
        p99_ms=percentile(ok, 99),
    )


def windows(completions: Sequence[Completion], width_s: float, total_s: float) -> list[WindowStats]:
    """Consecutive windows ``(0, w], (w, 2w], ...`` up to ``total_s`` (a last, shorter one
    when ``total_s`` is not a multiple of ``width_s``)."""
    if width_s <= 0:
        raise ValueError(f"a window must be longer than 0 s, not {width_s}")
    out = []
    start = 0.0
    while start < total_s - 1e-9:
        end = min(start + width_s, total_s)
        out.append(window_stats(completions, start, end))
        start = end
    return out


def split_p99(
    completions: Sequence[Completion], start_s: float, end_s: float, parts: int = 3
) -> list[float | None]:
    """The p99 latency (ms) of each of ``parts`` equal spans of ``(start_s, end_s]``."""
    step = (end_s - start_s) / parts
    return [
        window_stats(completions, start_s + i * step, start_s + (i + 1) * step).p99_ms
        for i in range(parts)
    ]


def growth_pct(first: float, last: float) -> float:
    """How much ``last`` is above ``first``, in % of ``first`` (negative: it shrank)."""
    if first <= 0:
        raise ValueError(f"growth from {first} is undefined")
    return (last - first) / first * 100


def kind_of(name: str) -> str:
    """The kind of a cluster process from its name (``workflow-2`` -> ``workflow``)."""
    for kind in KINDS:
        if name == kind or name.startswith(kind + "-"):
            return kind
    raise ValueError(f"{name!r} is no cluster process name")


# -- RSS ------------------------------------------------------------------------------------


def read_rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB from /proc/<pid>/status; None if it is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])  # "VmRSS:   123456 kB"
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def cluster_pids(cluster: Cluster) -> dict[str, int | None]:
    """Every process of the cluster by name, at its current pid (members, then agents)."""
    pids: dict[str, int | None] = {name: m.pid for name, m in cluster.members.items()}
    if cluster.agents is not None:
        pids |= {s.name: s.pid for s in cluster.agents.statuses()}
    return pids


def sample_rss_mib(cluster: Cluster) -> dict[str, float | None]:
    """RSS of every cluster process now, MiB (None: not running at this instant)."""
    out: dict[str, float | None] = {}
    for name, pid in cluster_pids(cluster).items():
        kib = read_rss_kib(pid) if pid is not None else None
        out[name] = None if kib is None else round(kib / 1024, 2)
    return out


# -- the workload ---------------------------------------------------------------------------


def fanout_definition(width: int = 5, payer: str = PAYER) -> W.WorkflowDefinition:
    """``width`` parallel ``bench.noop`` tasks into a ``bench.noop`` join: width+1 tasks,
    each costing 1; the budget is twice that (a retried task may cost again)."""
    tasks = width + 1
    d = W.WorkflowDefinition(name=f"bench-fanout-{width}", budget=2 * tasks, payer_account_id=payer)
    parts = [f"f{i}" for i in range(width)]
    for tid in parts:
        d.tasks.add(id=tid, skill="bench.noop")
    d.tasks.add(id="join", skill="bench.noop", depends_on=parts)
    return d


@dataclass(slots=True)
class LoadResult:
    """What one load did. Times are seconds since the load began; the measured span is
    ``(warmup_s, warmup_s + duration_s]``."""

    label: str
    duration_s: float
    warmup_s: float = 0.0
    started: int = 0
    completions: list[Completion] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    """Creates or watches that failed, by gRPC code (or ``timeout``)."""
    unfinished: int = 0
    """Still in flight when the drain after the load gave up on them."""

    def measured(self) -> WindowStats:
        return window_stats(self.completions, self.warmup_s, self.warmup_s + self.duration_s)

    def latencies_ms(self) -> list[float]:
        """Latencies of the succeeded workflows that ended in the measured span."""
        lo, hi = self.warmup_s, self.warmup_s + self.duration_s
        return [c.latency_s * 1000 for c in self.completions if c.ok and lo < c.end_s <= hi]


class LoadedCluster:
    """A running cluster, a workflow client on its workflow replicas, and the loads."""

    def __init__(self, cluster: Cluster, pool: ChannelPool, width: int) -> None:
        self.cluster = cluster
        self.width = width
        self.tasks_per_workflow = width + 1
        self.definition = fanout_definition(width)
        # A balanced client for one replica too: the client side is the same in every
        # configuration a bench compares (power of two choices over the replicas).
        self.flows = BalancedClient(
            WORKFLOW, StaticEndpoints(cluster.targets("workflow").split(",")), pool
        )
        self._tag = f"bench-{os.getpid()}-{secrets.token_hex(3)}"
        self._ids = itertools.count()
        self.in_flight = 0

    def rss_mib(self) -> dict[str, float | None]:
        return sample_rss_mib(self.cluster)

    async def one(self, t0: float, scheduled: float, result: LoadResult) -> bool:
        """Run one workflow (create, watch to its end) and record it in ``result``;
        ``scheduled`` (monotonic) is when it was due to start, ``t0`` when the load began.
        False when it ended in an error (counted in ``result.errors``)."""
        result.started += 1
        self.in_flight += 1
        try:
            async with asyncio.timeout(WORKFLOW_TIMEOUT_S):
                ok, end = await self._create_and_watch()
        except TimeoutError:
            result.errors["timeout"] += 1
            return False
        except MeshError as err:
            result.errors[grpc_code(err).name] += 1
            return False
        finally:
            self.in_flight -= 1
        if ok is None:
            result.errors["watch ended early"] += 1
            return False
        result.completions.append(Completion(end - t0, end - scheduled, ok))
        return True

    async def _create_and_watch(self) -> tuple[bool | None, float]:
        """(True: succeeded, False: failed or cancelled, None: the watch ended without the
        workflow's end (it expired); when its terminal event arrived, monotonic)."""
        request = W.CreateWorkflowRequest(request_id=f"{self._tag}-{next(self._ids)}")
        request.definition.CopyFrom(self.definition)
        reply = await self.flows.call("CreateWorkflow", request, timeout=CREATE_TIMEOUT_S)
        workflow_id = reply.workflow.workflow_id
        after = 0
        end: int | None = None
        at = 0.0
        while True:  # resumes after the last event seen if a stream breaks
            try:
                async for r in self.flows.stream(
                    "WatchWorkflow",
                    W.WatchWorkflowRequest(workflow_id=workflow_id, after_sequence=after),
                ):
                    after = r.event.sequence
                    if r.event.type in END_EVENTS:
                        end, at = r.event.type, time.monotonic()
                # The server ends the stream right after the terminal event.
                if end is None:
                    return None, time.monotonic()
                return end == W.WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED, at
            except MeshError as err:
                if grpc_code(err).name not in TRANSIENT:
                    raise
            await asyncio.sleep(0.1)

    async def closed_loop(self, k: int, duration: float, *, warmup: float = 0.0) -> LoadResult:
        """K workflows in flight for ``warmup + duration`` seconds; a workflow that ends is
        followed at once by the next (one that fails: after 0.1 s). The workflows in flight
        at the end are waited for (up to DRAIN_S), so the next load starts on a quiet
        cluster; only those that ended inside the measured span count."""
        result = LoadResult(f"closed loop, K={k}", duration, warmup)
        t0 = time.monotonic()
        stop_at = t0 + warmup + duration

        async def worker() -> None:
            while time.monotonic() < stop_at:
                if not await self.one(t0, time.monotonic(), result):
                    await asyncio.sleep(0.1)

        workers = [asyncio.create_task(worker()) for _ in range(k)]
        await self._drain(workers, stop_at, result)
        return result

    async def open_loop(
        self,
        rate: float,
        duration: float,
        *,
        poisson: bool = False,
        seed: int = 1,
        every_s: float = 0.0,
        on_tick: Callable[[float, LoadResult], None] | None = None,
        max_in_flight: int = 2000,
    ) -> LoadResult:
        """Start workflows at ``rate`` a second for ``duration`` seconds (evenly spaced, or
        Poisson arrivals), each whatever the others do; latency counts from the scheduled
        start. A start due while ``max_in_flight`` are running is counted as an error
        (``overloaded``) and skipped. ``on_tick(t, result)`` is called every ``every_s``
        seconds of the load (t = seconds since it began), e.g. to print a window and
        sample RSS; then the workflows in flight are waited for (up to DRAIN_S)."""
        if rate <= 0:
            raise ValueError(f"the rate must be > 0 workflows/s, not {rate}")
        result = LoadResult(f"open loop, {rate:g}/s", duration)
        rng = random.Random(seed)
        t0 = time.monotonic()
        stop_at = t0 + duration
        running: set[asyncio.Task[bool]] = set()
        ticker = None
        if on_tick is not None and every_s > 0:
            ticker = asyncio.create_task(self._tick(t0, every_s, duration, on_tick, result))
        due = t0
        while True:
            due += rng.expovariate(rate) if poisson else 1 / rate
            if due >= stop_at:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(running) >= max_in_flight:
                result.errors["overloaded"] += 1
                continue
            task = asyncio.create_task(self.one(t0, due, result))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        if ticker is not None:
            await ticker
        await self._drain(list(running), stop_at, result)
        return result

    @staticmethod
    async def _tick(
        t0: float,
        every_s: float,
        duration: float,
        on_tick: Callable[[float, LoadResult], None],
        result: LoadResult,
    ) -> None:
        for n in itertools.count(1):
            t = min(n * every_s, duration)
            await asyncio.sleep(max(0.0, t0 + t - time.monotonic()))
            on_tick(t, result)
            if t >= duration:
                return

    @staticmethod
    async def _drain(
        tasks: Sequence[asyncio.Task[Any]], stop_at: float, result: LoadResult
    ) -> None:
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=DRAIN_S)
        result.unfinished = len(pending)
        for t in pending:
            t.cancel()
        for t in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def _wait_agents(cluster: Cluster, pool: ChannelPool, n: int) -> None:
    registry = service_client(
        pool, cluster.targets("registry"), R.DESCRIPTOR.services_by_name["RegistryService"]
    )
    deadline = time.monotonic() + AGENTS_TIMEOUT_S
    while True:
        page = await registry.call(
            "ListAgents", R.ListAgentsRequest(state=R.AGENT_STATE_ACTIVE, page_size=100)
        )
        if len(page.agents) >= n:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(page.agents)} of {n} agents active in {AGENTS_TIMEOUT_S:g}s")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def loaded_cluster(
    directory: Path,
    *,
    workflow_replicas: int = 1,
    service_replicas: int = 1,
    agents: int = 4,
    width: int = 5,
    serve_args: Sequence[str] = (),
    agent_args: Sequence[str] = (),
) -> AsyncIterator[LoadedCluster]:
    """A cluster in ``directory`` with ``workflow_replicas`` workflow replicas,
    ``service_replicas`` registry and economy replicas each, the gateway, ``agents`` no-op
    agents (``agent-1``...), all ACTIVE, and the payer account funded; stopped (and the
    Consul double with it) in ``finally``."""
    consul = ConsulDoubleProcess(args=("--first-check-at-once", "--min-check-interval-s", "0.2"))
    consul.start()
    try:
        config = ClusterConfig(
            directory=Path(directory),
            registry_url=consul.url,
            replicas={
                "registry": service_replicas,
                "economy": service_replicas,
                "workflow": workflow_replicas,
            },
            agents=[(f"agent-{i}", AGENT_TARGET) for i in range(1, agents + 1)],
            http_port=0,
            serve_args=tuple(serve_args),
            agent_args=tuple(agent_args),
            env={
                "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT)]),
                "MESHWRIGHT_LOG_LEVEL": os.environ.get("MESHWRIGHT_LOG_LEVEL", "WARNING"),
            },
        )
        async with Cluster(config) as cluster:
            admin = ChannelPool(token=cluster.token("admin"))
            pool = ChannelPool(token=cluster.token("client"))
            load: LoadedCluster | None = None
            try:
                await _wait_agents(cluster, admin, agents)
                economy = service_client(
                    admin,
                    cluster.targets("economy"),
                    E.DESCRIPTOR.services_by_name["EconomyService"],
                )
                await economy.call(
                    "CreateAccount",
                    E.CreateAccountRequest(
                        account_id=PAYER,
                        owner="client:dev",
                        initial_balance=FUNDS,
                        request_id=f"{PAYER}-open",
                    ),
                )
                load = LoadedCluster(cluster, pool, width)
                yield load
            finally:
                if load is not None:
                    await load.flows.close()
                await pool.close()
                await admin.close()
    finally:
        consul.stop()


def run_in_dir(run: Callable[[Any, Path], Awaitable[None]], args: Any, *, prefix: str) -> None:
    """``asyncio.run(run(args, directory))`` in ``args.dir`` when given (kept, with the
    cluster's logs), else in a temporary directory removed afterwards."""
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
        asyncio.run(run(args, Path(args.dir)))
    else:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            asyncio.run(run(args, Path(tmp)))


def parse_with_quick(parser: Any, quick: Sequence[str]) -> Any:
    """``parser.parse_args()``; with ``--quick``, ``quick`` (flag, value pairs) become the
    defaults first, so flags given explicitly still win."""
    args = parser.parse_args()
    if args.quick:
        pairs = zip(quick[::2], quick[1::2], strict=True)
        parser.set_defaults(**{k.lstrip("-").replace("-", "_"): v for k, v in pairs})
        args = parser.parse_args()
    return args
