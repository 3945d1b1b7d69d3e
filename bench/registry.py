"""Registry discovery under heartbeat load: N agents heartbeating, ListAgents by skill beside.

Prints, all measured in this one run on this machine, for each backend:

1. the registry as a real separate process: ``python -m meshwright serve
   --services registry --registry <URL> --insecure-no-auth --no-gateway
   --health-check-interval 0 --rate-limit-rps 0`` on a free loopback port.
   The agents are registrations with no agent process behind them: every one
   names the same endpoint, a child serving grpc.health.v1 (always SERVING).
   The embedded registry's prober is off (leases only: an agent is ACTIVE
   while it heartbeats), so the registry's own load is the heartbeats and the
   listings; with auth off every call would share one rate-limit bucket (the
   loopback peer's, 500/s by default), so the limit is off too.
   ``--backend consul`` serves it on ``consul://`` against the Consul HTTP
   double (``python -m tests.consul_double``, a child process) that runs each
   agent's GRPC check once at registration, then at most every
   ``--consul-check-interval`` (an hour): probing is Consul's work, not the
   registry's, and the Python double would otherwise spend these two cores on it;
2. ``--loaders`` load-generator processes register ``--agents`` agents
   (default 10,000; 1-3 skills each from a pool of ``--skills`` skill ids,
   lease ttl ``--lease-ttl``) through RegisterAgent, then heartbeat every
   agent every ``--period`` seconds for ``--duration`` seconds, spread evenly
   in time (a scheduler: heartbeat k of a loader is due at start + k / rate,
   the loaders' schedules interleaved; "lag" is how late a beat left), at most
   ``--max-in-flight`` each; each beat reports load 0 (``--vary-load``: a
   different load every time, so every beat is a change Consul must publish).
   ``--heartbeats stream`` gives every agent its own ``StreamHeartbeats``
   stream (``HeartbeatStream``, as the agent SDK does; each opened by a first
   heartbeat before the load starts), ``unary`` sends each beat as a
   ``Heartbeat`` call (the peer), ``both`` (the default) runs the two one
   after the other, each with a fresh registry;
3. meanwhile this process runs one discovery loop: ListAgents(skill=<a random
   skill of the pool>, page_size=100), one call at a time back to back (or at
   ``--discovery-rate`` calls/s), each call's latency recorded;
4. after the load: every agent's state (all should be ACTIVE: no lease
   lapsed), then the same discovery loop for ``--idle`` seconds with no
   heartbeats: the peer the loaded figures are compared against; and before
   the backends, the bare grpc.aio echo of bench/stores.py (16 in flight): the
   ceiling of a Python gRPC server here and its CPU per call;
5. CPU over the load phase from /proc: the registry's (and the Consul
   double's), the loaders', this process's, and the rest of the machine's (other
   work on the same cores skews every figure: it is printed so a run can be
   judged); the registry's CPU per ListAgents (idle phase) and per Heartbeat
   (the load phase less its listings); RSS; and the goal: the registry holds
   the heartbeat rate (2,000/s at the defaults: achieved >= 99% of target, no
   errors, every agent ACTIVE) with discovery p99 < 5 ms.

``--profile`` samples the registry process with py-spy (``--gil``) over the
load phase and prints its GIL time by RPC and by leaf function (sampling slows
it: take the rates from a run without it). ``--gc-log`` runs the same CLI
through this script with a ``gc.callbacks`` timer and prints the registry's
collections in the load phase.

    python bench/registry.py                               # 10,000 agents, 5 s, 30 s, memory
    python bench/registry.py --backend both                # memory and consul side by side
    python bench/registry.py --agents 200 --duration 3     # smoke run, seconds
    python bench/registry.py --json PATH                   # also the figures as JSON
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from meshwright.agent.heartbeats import HeartbeatStream
from meshwright.agent.v1 import agent_pb2
from meshwright.mesh.client import ChannelPool, RemoteServiceClient
from meshwright.mesh.errors import MeshError
from meshwright.registry.v1 import registry_pb2 as R

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stores  # noqa: E402 (bench/stores.py: free_port, stopping children)
from _results import Results, add_json_flag  # noqa: E402

REGISTRY = R.DESCRIPTOR.services_by_name["RegistryService"]
ROOT = Path(__file__).resolve().parent.parent
GOAL_P99_MS = 5.0
GOAL_RATE_SHARE = 0.99
"""Achieved heartbeats/s over target that counts as holding the rate."""
CALL_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 30.0
"""Longest the registry (or the Consul double) may take to answer after starting."""
REGISTER_IN_FLIGHT = 32
PROFILE_RATE_HZ = 200
DERIVE_MIN_BEATS = 10_000
"""Fewest heartbeats to derive the CPU of one from (with fewer, the ListAgents share it is
derived beside swamps it)."""
CLK_TCK = os.sysconf("SC_CLK_TCK")


def agent_id(i: int) -> str:
    return f"bench-agent-{i:05d}"


def skill_pool(n: int) -> list[str]:
    return [f"bench.skill-{s:02d}" for s in range(n)]


def skills_of(i: int, pool: list[str]) -> list[str]:
    """Agent ``i``'s 1-3 skills, the same in every process (seeded by ``i``)."""
    rng = random.Random(i)
    return rng.sample(pool, k=1 + rng.randrange(3))


def pct(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


# -- /proc ------------------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of every thread of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def machine_busy_s() -> float:
    """CPU seconds every core of the machine spent busy so far (/proc/stat, all processes)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK  # less idle and iowait


def rss_mib(pid: int) -> tuple[float, float]:
    """Resident set now and its peak, MiB."""
    status = Path(f"/proc/{pid}/status").read_text()

    def kib(key: str) -> float:
        m = re.search(rf"^{key}:\s+(\d+) kB", status, re.M)
        return int(m.group(1)) / 1024 if m else float("nan")

    return kib("VmRSS"), kib("VmHWM")


def machine() -> str:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.partition(":")[2].strip()
            break
    mem_kib = int(re.findall(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[0])
    return (
        f"{os.cpu_count()} cores ({model or platform.processor()}), "
        f"{mem_kib / 2**20:.0f} GiB, Python {platform.python_version()}, grpcio {grpc.__version__}"
    )


# -- the load generator (child process) ------------------------------------------------------


def card(i: int, pool: list[str]) -> agent_pb2.AgentCard:
    c = agent_pb2.AgentCard(name=f"bench agent {i}", version="1.0.0")
    for s in skills_of(i, pool):
        c.skills.add(id=s, name=s, price=1)
    return c


async def register_all(
    client: RemoteServiceClient, ids: list[int], pool: list[str], ttl_s: float, endpoint: str
) -> tuple[dict[int, str], list[str]]:
    """Register agents ``ids`` (``REGISTER_IN_FLIGHT`` at once): their lease ids, errors."""
    leases: dict[int, str] = {}
    errors: list[str] = []
    queue = collections.deque(ids)

    async def worker() -> None:
        while queue:
            i = queue.popleft()
            request = R.RegisterAgentRequest(
                agent_id=agent_id(i),
                card=card(i, pool),
                endpoint=endpoint,
                tags=["bench"],
                capacity=4,
            )
            request.lease_ttl.FromNanoseconds(int(ttl_s * 1e9))
            try:
                reply = await client.call("RegisterAgent", request, timeout=CALL_TIMEOUT_S)
                leases[i] = reply.agent.lease_id
            except MeshError as err:
                errors.append(f"{type(err).__name__}: {err}")

    await asyncio.gather(*(worker() for _ in range(REGISTER_IN_FLIGHT)))
    return leases, errors


Send = Callable[[int, R.HeartbeatRequest], Awaitable[Any]]
"""Sends agent i's heartbeat (a unary call, or a message on its stream)."""


def unary_sender(client: RemoteServiceClient) -> Send:
    async def send(i: int, request: R.HeartbeatRequest) -> Any:
        return await client.call("Heartbeat", request, timeout=CALL_TIMEOUT_S)

    return send


def stream_sender(streams: dict[int, HeartbeatStream]) -> Send:
    async def send(i: int, request: R.HeartbeatRequest) -> Any:
        return await streams[i].beat(request, timeout=CALL_TIMEOUT_S)

    return send


async def open_streams(
    client: RemoteServiceClient, leases: dict[int, str]
) -> tuple[dict[int, HeartbeatStream], list[str]]:
    """One heartbeat stream per agent, each opened by a first heartbeat (as an agent's
    first heartbeat opens its stream), ``REGISTER_IN_FLIGHT`` at once."""
    streams = {i: HeartbeatStream(client) for i in leases}
    errors: list[str] = []
    queue = collections.deque(leases)

    async def worker() -> None:
        while queue:
            i = queue.popleft()
            request = R.HeartbeatRequest(agent_id=agent_id(i), lease_id=leases[i])
            try:
                await streams[i].beat(request, timeout=CALL_TIMEOUT_S)
            except MeshError as err:
                errors.append(f"{type(err).__name__}: {err}")

    await asyncio.gather(*(worker() for _ in range(REGISTER_IN_FLIGHT)))
    return streams, errors


async def heartbeat_schedule(
    send: Send,
    leases: dict[int, str],
    *,
    start: float,
    period_s: float,
    duration_s: float,
    max_in_flight: int,
    vary_load: bool,
) -> dict[str, Any]:
    """Heartbeat every agent of ``leases`` once a period, evenly spread, from ``start``
    (a CLOCK_MONOTONIC time, the same clock in every process) for ``duration_s``."""
    agents = sorted(leases)
    rate = len(agents) / period_s
    total = int(duration_s * rate)
    latencies_ms: list[float] = []
    lag_ms: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    in_flight = 0
    tasks: set[asyncio.Task[None]] = set()

    beats: collections.Counter[int] = collections.Counter()
    examples: dict[str, str] = {}

    async def beat(i: int) -> None:
        nonlocal in_flight
        # Load 0 repeats the registration's report; --vary-load alternates 1, 0, 1, ...
        load = (beats[i] + 1) % 2 if vary_load else 0
        beats[i] += 1
        t = time.monotonic()
        try:
            await send(i, R.HeartbeatRequest(agent_id=agent_id(i), lease_id=leases[i], load=load))
            latencies_ms.append((time.monotonic() - t) * 1000)
        except MeshError as err:
            errors[type(err).__name__] += 1
            examples.setdefault(type(err).__name__, f"{err} (after {time.monotonic() - t:.1f}s)")
        finally:
            in_flight -= 1

    cpu0 = sum(os.times()[:2])
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    k = 0
    while k < total:
        now = time.monotonic()
        due = min(total, int((now - start) * rate) + 1)
        while k < due and in_flight < max_in_flight:
            lag_ms.append((now - (start + k / rate)) * 1000)
            in_flight += 1
            task = asyncio.create_task(beat(agents[k % len(agents)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            k += 1
        wait = start + k / rate - time.monotonic()
        await asyncio.sleep(wait if in_flight < max_in_flight else 0.001)
    issued_end = time.monotonic()
    if tasks:
        await asyncio.wait(tasks, timeout=CALL_TIMEOUT_S + 1)
    end = time.monotonic()
    return {
        "issued": k,
        "ok": len(latencies_ms),
        "errors": dict(errors),
        "error_examples": examples,
        "latencies_ms": [round(x, 3) for x in latencies_ms],
        "lag_p99_ms": pct(lag_ms, 99),
        "lag_max_ms": max(lag_ms, default=0.0),
        "issue_s": issued_end - start,
        "wall_s": end - start,
        "cpu_s": sum(os.times()[:2]) - cpu0,
    }


def run_loader(args: argparse.Namespace) -> None:
    """One load generator: register its share, say so, wait for GO <start>, heartbeat,
    print the result as one JSON line."""

    async def main() -> None:
        index, count = (int(x) for x in args.loader.split("/"))
        ids = list(range(index, args.agents, count))
        pool = skill_pool(args.skills)
        channels = ChannelPool()
        try:
            client = channels.client(args.target, REGISTRY)
            t0 = time.monotonic()
            leases, errors = await register_all(client, ids, pool, args.lease_ttl, args.endpoint)
            streams: dict[int, HeartbeatStream] = {}
            if args.heartbeats == "stream":
                streams, open_errors = await open_streams(client, leases)
                errors += open_errors
            print(
                json.dumps(
                    {
                        "registered": len(leases),
                        "seconds": time.monotonic() - t0,
                        "errors": errors[:5],
                        "error_count": len(errors),
                    }
                ),
                flush=True,
            )
            line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            if not line.startswith("GO "):
                return
            # The loaders' schedules interleave: loader j's first beat is j slots late.
            start = float(line.split()[1]) + index * args.period / args.agents
            send = stream_sender(streams) if streams else unary_sender(client)
            result = await heartbeat_schedule(
                send,
                leases,
                start=start,
                period_s=args.period,
                duration_s=args.duration,
                max_in_flight=args.max_in_flight,
                vary_load=args.vary_load,
            )
            result["streams_opened"] = sum(st.opened for st in streams.values())
            print(json.dumps(result), flush=True)
            for st in streams.values():
                await st.close()
        finally:
            await channels.close()

    asyncio.run(main())


# -- the agents' health endpoint (child process) ----------------------------------------------


def serve_health() -> None:
    """grpc.health.v1.Health/Check answering SERVING to every call, until stdin closes: the
    endpoint every bench agent names, so Consul's GRPC check of each passes."""
    from grpc_health.v1 import health_pb2

    serving = health_pb2.HealthCheckResponse(
        status=health_pb2.HealthCheckResponse.SERVING
    ).SerializeToString()

    async def check(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return serving

    stores.serve_raw("grpc.health.v1.Health", "Check", check)


# -- children of the benchmark ---------------------------------------------------------------


@dataclass
class Children:
    """Every process this run started, stopped in reverse order by ``stop``."""

    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def start(self, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(argv, **kw)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.stdin is not None:
                proc.stdin.close()
            # Killed before its stdout closes: a reader thread blocked on it sees EOF.
            stores.stop_process(proc)
            if proc.stdout is not None:
                proc.stdout.close()


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_health(children: Children) -> str:
    """The agents' health endpoint (``serve_health``) in a child; its address."""
    proc = children.start(
        [sys.executable, __file__, "--serve-health"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line or line[0] != "READY":
        raise RuntimeError("the agents' health endpoint did not start")
    return f"127.0.0.1:{line[1]}"


def start_consul_double(children: Children, workdir: Path, check_interval_s: float) -> int:
    """The Consul HTTP double on a free port, each GRPC check run at registration and then
    every ``check_interval_s`` at the most often; returns the port once it answers."""
    if not (ROOT / "tests" / "consul_double.py").exists():
        raise RuntimeError("tests/consul_double.py does not exist (yet)")
    port = stores.free_port()
    log = workdir / "consul-double.log"
    with log.open("w") as out:
        proc = children.start(
            [sys.executable, "-m", "tests.consul_double", "--port", str(port)]
            + ["--first-check-at-once", "--min-check-interval-s", str(check_interval_s)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Consul double exited {proc.returncode}:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status/leader", timeout=1):
                return port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the Consul double did not answer in {READY_TIMEOUT_S:.0f}s")


def serve_gc_logged(argv: list[str]) -> None:
    """``meshwright <argv>`` in this process, each collection of generation 1 or 2 (and
    any of 1 ms or more) written to stderr as ``GC <generation> <monotonic start> <ms>``."""
    import gc

    from meshwright.cli import main as meshwright

    began = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.monotonic()
            return
        ms = (time.monotonic() - began[0]) * 1000
        if info["generation"] or ms >= 1:
            print(f"GC {info['generation']} {began[0]:.6f} {ms:.3f}", file=sys.stderr, flush=True)

    gc.callbacks.append(on_gc)
    sys.exit(meshwright(argv))


def gc_pauses(log: Path, start: float, end: float) -> dict[int, list[float]]:
    """Collections the registry logged between ``start`` and ``end``: generation -> ms."""
    out: dict[int, list[float]] = collections.defaultdict(list)
    for line in log.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "GC" and start <= float(parts[2]) <= end:
            out[int(parts[1])].append(float(parts[3]))
    return out


def start_registry(
    children: Children, url: str, workdir: Path, *, gc_log: bool
) -> tuple[subprocess.Popen[Any], int]:
    port = stores.free_port()
    log = workdir / "registry.log"
    # With --gc-log the same CLI runs under this script, which times its collections.
    launcher = [__file__, "--meshwright"] if gc_log else ["-m", "meshwright"]
    argv = [sys.executable, *launcher, "serve", "--services", "registry"]
    argv += ["--registry", url, "--insecure-no-auth", "--host", "127.0.0.1"]
    argv += ["--grpc-port", str(port), "--no-gateway", "--health-check-interval", "0"]
    argv += ["--rate-limit-rps", "0"]
    with log.open("w") as out:
        proc = children.start(
            argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    return proc, port


async def wait_ready(client: RemoteServiceClient, proc: subprocess.Popen[Any], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the registry exited {proc.returncode}:\n{log_tail(log)}")
        try:
            await client.call("ListAgents", R.ListAgentsRequest(page_size=1), timeout=1)
            return
        except MeshError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the registry did not answer in {READY_TIMEOUT_S:.0f}s:\n{log_tail(log)}"
                ) from None
            await asyncio.sleep(0.1)


async def read_json(proc: subprocess.Popen[str], timeout_s: float, what: str) -> dict[str, Any]:
    """The next line a loader prints, as JSON (bounded in time)."""
    assert proc.stdout is not None
    loop = asyncio.get_running_loop()
    try:
        line = await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline), timeout_s)
    except TimeoutError:
        raise TimeoutError(f"a loader did not finish {what} in {timeout_s:.0f}s") from None
    if not line:
        raise RuntimeError(f"a loader exited ({proc.poll()}) without a result")
    result: dict[str, Any] = json.loads(line)
    return result


# -- discovery --------------------------------------------------------------------------------


@dataclass
class Discovery:
    latencies_ms: list[float] = field(default_factory=list)
    returned: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    wall_s: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.wall_s if self.wall_s else 0.0


async def discover(
    client: RemoteServiceClient, pool: list[str], seconds: float, rate: float, seed: int
) -> Discovery:
    """ListAgents by a random skill, one at a time: back to back (``rate`` 0) or due every
    1/``rate`` s."""
    rng = random.Random(seed)
    out = Discovery()
    start = time.monotonic()
    n = 0
    while (now := time.monotonic()) - start < seconds:
        if rate > 0:
            due = start + n / rate
            if due > now:
                await asyncio.sleep(due - now)
        n += 1
        request = R.ListAgentsRequest(skill=rng.choice(pool), page_size=100)
        t = time.monotonic()
        try:
            reply = await client.call("ListAgents", request, timeout=CALL_TIMEOUT_S)
            out.latencies_ms.append((time.monotonic() - t) * 1000)
            out.returned += len(reply.agents)
        except MeshError as err:
            out.errors[type(err).__name__] += 1
    out.wall_s = time.monotonic() - start
    return out


async def states(client: RemoteServiceClient) -> collections.Counter[str]:
    """How many agents are in each state (every page)."""
    out: collections.Counter[str] = collections.Counter()
    token = ""
    while True:
        page = await client.call(
            "ListAgents",
            R.ListAgentsRequest(page_size=1000, page_token=token),
            timeout=CALL_TIMEOUT_S * 4,
        )
        for a in page.agents:
            out[R.AgentState.Name(a.state).removeprefix("AGENT_STATE_")] += 1
        token = page.next_page_token
        if not token:
            return out


# -- profiling --------------------------------------------------------------------------------


def py_spy() -> str | None:
    """py-spy beside this interpreter, else on PATH."""
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")


def start_profile(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [py_spy() or "py-spy", "record", "-p", str(pid), "--gil", "--nonblocking", "-f", "raw"]
        + ["-r", str(PROFILE_RATE_HZ), "-d", str(max(1, int(seconds))), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def function_of(frame: str) -> str:
    """``function (path:line)`` as ``function (path)``, the path cut to its package tail."""
    name, _, where = frame.partition(" (")
    where = re.sub(r":\d+\)?$", "", where.rstrip(")"))
    where = re.sub(r"^.*?/(site-packages|lib/python3\.\d+|work/main)/", "", where)
    return f"{name} ({where})"


RPC_FRAMES = {
    "Heartbeat": "RegistryServicer.Heartbeat",
    "ListAgents": "RegistryServicer.ListAgents",
}


def report_profile(raw: Path, seconds: float, calls: dict[str, int], top: int = 12) -> None:
    """Where the registry's GIL time went: by RPC (servicer frames, inclusive), by leaf
    function (self time), as shares of the sampled wall time."""
    if not raw.exists():
        print("  no profile (py-spy missing or not allowed to attach?)")
        return
    leaf: collections.Counter[str] = collections.Counter()
    rpc: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        leaf[function_of(frames[-1])] += n
        for label, marker in RPC_FRAMES.items():
            if any(marker in f for f in frames):
                rpc[label] += n
                break
        else:
            if any("services/mesh/" in f for f in frames):
                rpc["mesh server handler and pipeline, outside the servicers"] += n
            else:
                rpc["no meshwright frame: gRPC's Cython core, asyncio, GC in them"] += n
    if not total:
        print("  no samples")
        return
    wall = PROFILE_RATE_HZ * seconds

    def share(n: int) -> str:
        return f"{100 * n / wall:5.1f}%"

    print(f"  the GIL was held {share(total)} of the {seconds:.0f}s sampled; by RPC (inclusive):")
    for label, n in rpc.most_common():
        per = (
            f", {n / PROFILE_RATE_HZ / calls[label] * 1e6:.0f} us a call" if label in calls else ""
        )
        print(f"    {share(n)}  {label}{per}")
    print("  self time by function (Handle._run: gRPC's Cython core and asyncio's C steps):")
    for f, n in leaf.most_common(top):
        print(f"    {share(n)}  {f}")


# -- the peer: a bare grpc.aio echo ------------------------------------------------------------


@dataclass
class Echo:
    rate: float = 0.0
    """Best round, calls/s, 16 in flight."""
    cpu_us: float = 0.0
    """The echo server's CPU per call over the measured rounds."""


def measure_echo(calls: int, rounds: int) -> Echo:
    """The bare grpc.aio unary echo of bench/stores.py in a child process: the ceiling of
    a Python gRPC server on this machine, and what one call costs it."""
    children = Children()
    try:
        proc = children.start(
            [sys.executable, stores.__file__, "--serve-echo"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError("the echo server did not start")
        cpu0 = cpu_s(proc.pid)
        rates = asyncio.run(stores.echo_rate(int(line[1]), calls, rounds))
        # echo_rate's warm-up (16 x 50 calls) is in the CPU too.
        used = cpu_s(proc.pid) - cpu0
        return Echo(max(rates), used / ((calls // 16) * 16 * rounds + 800) * 1e6)
    finally:
        children.stop()


# -- one backend ------------------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    error: str = ""
    registered: int = 0
    register_s: float = 0.0
    register_errors: int = 0
    target_rate: float = 0.0
    issued: int = 0
    ok: int = 0
    hb_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    hb_error_examples: dict[str, str] = field(default_factory=dict)
    hb_latencies_ms: list[float] = field(default_factory=list)
    lag_p99_ms: float = 0.0
    lag_max_ms: float = 0.0
    issue_s: float = 0.0
    loader_cpu: list[float] = field(default_factory=list)
    loaded: Discovery | None = None
    idle: Discovery | None = None
    states: collections.Counter[str] = field(default_factory=collections.Counter)
    cpu: dict[str, float] = field(default_factory=dict)
    """Process label -> CPU % of one core over the load phase."""
    rss: dict[str, tuple[float, float]] = field(default_factory=dict)
    machine_cpu: float = 0.0
    """Every process on the machine over the load phase, % of one core."""
    load_cpu_s: float = 0.0
    """The registry's CPU seconds over the load phase."""
    idle_cpu_s: float = 0.0
    """The registry's CPU seconds over the idle discovery phase."""
    streams_opened: int = 0
    """Heartbeat streams the loaders opened (one per agent; more if some broke)."""
    gc: dict[int, list[float]] | None = None
    """With --gc-log: the registry's collections in the load phase, generation -> ms."""

    def cpu_per_call_us(self) -> tuple[float, float]:
        """The registry's CPU per ListAgents (idle phase) and per Heartbeat (the load
        phase's CPU less its ListAgents at the idle cost), microseconds."""
        if not (self.idle and self.idle.latencies_ms and self.loaded and self.ok):
            return float("nan"), float("nan")
        per_list = self.idle_cpu_s / len(self.idle.latencies_ms)
        beats = self.load_cpu_s - per_list * len(self.loaded.latencies_ms)
        return per_list * 1e6, beats / self.ok * 1e6

    @property
    def achieved_rate(self) -> float:
        return self.ok / self.issue_s if self.issue_s else 0.0

    def holds(self) -> bool:
        return (
            self.achieved_rate >= GOAL_RATE_SHARE * self.target_rate
            and not self.hb_errors
            and self.states.get("ACTIVE", 0) == self.registered
        )


async def run_backend(
    args: argparse.Namespace, backend: str, heartbeats: str, workdir: Path
) -> Result:
    result = Result(f"{backend}, {heartbeats}")
    children = Children()
    pool = skill_pool(args.skills)
    channels = ChannelPool()
    spy: subprocess.Popen[bytes] | None = None
    try:
        endpoint = start_health(children)
        watched: dict[str, int] = {}
        if backend == "consul":
            consul_port = start_consul_double(children, workdir, args.consul_check_interval)
            url = f"consul://127.0.0.1:{consul_port}"
            watched["Consul double"] = children.procs[-1].pid
        else:
            url = "memory://"
        registry, port = start_registry(children, url, workdir, gc_log=args.gc_log)
        watched = {"registry": registry.pid, **watched}
        target = f"127.0.0.1:{port}"
        client = channels.client(target, REGISTRY)
        await wait_ready(client, registry, workdir / "registry.log")
        print(
            f"[{result.backend}] registry {url} serving on {target} (pid {registry.pid})",
            flush=True,
        )

        loaders = [
            children.start(
                [sys.executable, __file__, "--loader", f"{j}/{args.loaders}", "--target", target]
                + ["--endpoint", endpoint]
                + ["--agents", str(args.agents), "--skills", str(args.skills)]
                + ["--period", str(args.period), "--duration", str(args.duration)]
                + ["--lease-ttl", str(args.lease_ttl), "--max-in-flight", str(args.max_in_flight)]
                + (["--vary-load"] if args.vary_load else [])
                + ["--heartbeats", heartbeats],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for j in range(args.loaders)
        ]
        t0 = time.monotonic()
        reg_timeout = 60 + args.agents / 50
        regs = [await read_json(p, reg_timeout, "registering") for p in loaders]
        result.register_s = time.monotonic() - t0
        result.registered = sum(r["registered"] for r in regs)
        result.register_errors = sum(r["error_count"] for r in regs)
        print(
            f"[{result.backend}] registered {result.registered:,} agents in "
            f"{result.register_s:.1f}s "
            f"({result.registered / result.register_s:,.0f}/s, {REGISTER_IN_FLIGHT} in flight "
            f"per loader), {result.register_errors} errors"
            + "".join(f"; e.g. {e}" for r in regs for e in r["errors"][:1]),
            flush=True,
        )
        if not result.registered:
            raise RuntimeError("no agent registered")

        result.target_rate = result.registered / args.period
        start = time.monotonic() + 0.5
        for p in loaders:
            assert p.stdin is not None
            p.stdin.write(f"GO {start}\n")
            p.stdin.flush()
        if args.profile:
            spy = start_profile(registry.pid, workdir / f"{backend}.prof", args.duration)
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        cpu0 = {label: cpu_s(pid) for label, pid in watched.items()}
        own0 = sum(os.times()[:2])
        busy0 = machine_busy_s()
        w0 = time.monotonic()
        result.loaded = await discover(client, pool, args.duration, args.discovery_rate, args.seed)
        w1 = time.monotonic()
        wall = w1 - w0
        result.load_cpu_s = cpu_s(registry.pid) - cpu0["registry"]
        result.cpu = {
            label: 100 * (cpu_s(pid) - cpu0[label]) / wall for label, pid in watched.items()
        }
        result.cpu["discovery (this process)"] = 100 * (sum(os.times()[:2]) - own0) / wall
        result.machine_cpu = 100 * (machine_busy_s() - busy0) / wall
        result.rss = {label: rss_mib(pid) for label, pid in watched.items()}
        for p in loaders:
            r = await read_json(p, args.duration + 30, "heartbeating")
            result.issued += r["issued"]
            result.ok += r["ok"]
            result.hb_errors.update(r["errors"])
            for kind, example in r["error_examples"].items():
                result.hb_error_examples.setdefault(kind, example)
            result.hb_latencies_ms += r["latencies_ms"]
            result.lag_p99_ms = max(result.lag_p99_ms, r["lag_p99_ms"])
            result.lag_max_ms = max(result.lag_max_ms, r["lag_max_ms"])
            result.issue_s = max(result.issue_s, r["issue_s"])
            result.loader_cpu.append(100 * r["cpu_s"] / r["wall_s"])
            result.streams_opened += r.get("streams_opened", 0)
        result.states = await states(client)
        if spy is not None:
            spy.wait(timeout=args.duration + 30)
        idle0 = cpu_s(registry.pid)
        result.idle = await discover(client, pool, args.idle, args.discovery_rate, args.seed + 1)
        result.idle_cpu_s = cpu_s(registry.pid) - idle0
        if args.gc_log:
            result.gc = gc_pauses(workdir / "registry.log", w0, w1)
        print(f"[{result.backend}] done", flush=True)
    except Exception as err:  # report the backend, keep the rest
        result.error = f"{type(err).__name__}: {err}"
        print(f"[{result.backend}] failed: {result.error}", flush=True)
    finally:
        await channels.close()
        if spy is not None and spy.poll() is None:
            stores.stop_process(spy)
        children.stop()
    if args.profile and not result.error and result.loaded is not None:
        print(f"\n[{result.backend}] where the registry's time goes (py-spy --gil, load phase):")
        calls = {"Heartbeat": result.ok, "ListAgents": len(result.loaded.latencies_ms)}
        report_profile(workdir / f"{backend}.prof", args.duration, calls)
    return result


# -- report -----------------------------------------------------------------------------------


def report(
    args: argparse.Namespace, results: list[Result], echo: Echo | None, doc: Results | None = None
) -> None:
    """Print the table and the goals; with ``doc``, add the figures to it beside their peers."""
    doc = doc if doc is not None else Results(bench="registry", title="")
    if echo is not None:
        doc.add(
            "bare grpc.aio echo, 16 in flight",
            "calls/s",
            echo.rate,
            note=f"{echo.cpu_us:.0f} us of server CPU a call",
        )
    ok = [r for r in results if not r.error]
    for r in results:
        if r.error:
            print(f"\n{r.backend}: failed: {r.error}")
            doc.notes.append(f"{r.backend}: failed: {r.error}")
    add_figures(doc, ok, echo)
    if not ok:
        return
    mode = (
        "back to back, 1 in flight"
        if args.discovery_rate <= 0
        else f"at {args.discovery_rate:g}/s, 1 in flight"
    )
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, fn: Any) -> None:
        rows.append((label, [fn(r) for r in ok]))

    def lat(d: Discovery | None, q: int) -> str:
        return f"{pct(d.latencies_ms, q):.2f} ms" if d else "-"

    row("agents registered", lambda r: f"{r.registered:,} ({r.register_errors} errors)")
    row("registration rate", lambda r: f"{r.registered / r.register_s:,.0f}/s")
    row("heartbeats/s target", lambda r: f"{r.target_rate:,.0f}")
    row("heartbeats/s achieved", lambda r: f"{r.achieved_rate:,.0f}")
    row("heartbeats ok / issued", lambda r: f"{r.ok:,} / {r.issued:,}")
    row(
        "heartbeat errors",
        lambda r: ", ".join(f"{k} {v}" for k, v in r.hb_errors.items()) or "0",
    )
    row(
        "heartbeat p50 / p99",
        lambda r: f"{pct(r.hb_latencies_ms, 50):.2f} / {pct(r.hb_latencies_ms, 99):.2f} ms",
    )
    row("heartbeat streams opened", lambda r: f"{r.streams_opened:,}")
    row("schedule lag p99 / max", lambda r: f"{r.lag_p99_ms:.1f} / {r.lag_max_ms:.1f} ms")
    row("states after the load", lambda r: ", ".join(f"{k} {v:,}" for k, v in r.states.items()))
    row("discovery calls/s, loaded", lambda r: f"{r.loaded.rate:,.0f}" if r.loaded else "-")
    row("discovery p50, loaded", lambda r: lat(r.loaded, 50))
    row("discovery p99, loaded", lambda r: lat(r.loaded, 99))
    row(
        "discovery max, loaded",
        lambda r: f"{max(r.loaded.latencies_ms, default=0):.2f} ms" if r.loaded else "-",
    )
    row(
        "agents per page, loaded",
        lambda r: (
            f"{r.loaded.returned / max(1, len(r.loaded.latencies_ms)):.0f}" if r.loaded else "-"
        ),
    )
    row(
        "discovery errors, loaded",
        lambda r: (
            ", ".join(f"{k} {v}" for k, v in r.loaded.errors.items()) or "0" if r.loaded else "-"
        ),
    )
    row("discovery calls/s, idle", lambda r: f"{r.idle.rate:,.0f}" if r.idle else "-")
    row("discovery p50 / p99, idle", lambda r: f"{lat(r.idle, 50)} / {lat(r.idle, 99)}")
    row(
        "p99 loaded / idle",
        lambda r: (
            f"{pct(r.loaded.latencies_ms, 99) / pct(r.idle.latencies_ms, 99):.2f}x"
            if r.loaded and r.idle
            else "-"
        ),
    )
    labels = sorted({k for r in ok for k in r.cpu}, key=lambda k: (k != "registry", k))
    for label in labels:
        row(f"CPU, {label}", lambda r, k=label: f"{r.cpu[k]:.0f}%" if k in r.cpu else "-")
    row("CPU, loaders", lambda r: " + ".join(f"{c:.0f}%" for c in r.loader_cpu))
    row(
        "CPU, the rest of the machine",
        lambda r: (
            f"{r.machine_cpu - sum(r.cpu.values()) - sum(r.loader_cpu):.0f}% "
            f"of {100 * (os.cpu_count() or 1)}%"
        ),
    )
    row("registry CPU / ListAgents", lambda r: f"{r.cpu_per_call_us()[0]:,.0f} us (idle)")
    row(
        "registry CPU / Heartbeat",
        lambda r: (
            f"{r.cpu_per_call_us()[1]:,.0f} us (derived)"
            if r.ok >= DERIVE_MIN_BEATS
            else "- (too few heartbeats)"
        ),
    )
    if echo is not None:
        row(
            "  in bare echoes (CPU)",
            lambda r: (
                (
                    f"{r.cpu_per_call_us()[1] / echo.cpu_us:.1f} (beat), "
                    if r.ok >= DERIVE_MIN_BEATS
                    else ""
                )
                + f"{r.cpu_per_call_us()[0] / echo.cpu_us:.1f} (list)"
            ),
        )
    if args.gc_log:
        for gen in (0, 1, 2):
            row(
                f"GC gen {gen}, load phase",
                lambda r, g=gen: (
                    "-"
                    if r.gc is None
                    else f"{len(r.gc.get(g, []))}x, max {max(r.gc.get(g, [0])):.0f} ms, "
                    f"sum {sum(r.gc.get(g, [])):.0f} ms"
                ),
            )
    for label in [k for k in labels if k in ok[0].rss or any(k in r.rss for r in ok)]:
        row(
            f"RSS now / peak, {label}",
            lambda r, k=label: f"{r.rss[k][0]:.0f} / {r.rss[k][1]:.0f} MiB" if k in r.rss else "-",
        )

    print()
    print(
        f"{args.agents:,} agents, heartbeat every {args.period:g}s, {args.duration:g}s of load, "
        f"{args.loaders} loader process(es); discovery ListAgents(skill, page_size=100) {mode}; "
        f"idle peer {args.idle:g}s after the load"
    )
    load = "load 1, 0, 1, ... (a change each time)" if args.vary_load else "load 0 (no change)"
    print(
        "every agent names one health endpoint (grpc.health.v1, always SERVING); the registry's "
        "prober is off (--health-check-interval 0); the Consul double runs each agent's GRPC "
        f"check at registration, then every {args.consul_check_interval:g}s at most; "
        f"heartbeats report {load}"
    )
    width = max(len(label) for label, _ in rows) + 2
    print(f"{'':{width}}" + "".join(f"{r.backend:>28}" for r in ok))
    for label, cells in rows:
        print(f"{label:{width}}" + "".join(f"{c:>28}" for c in cells))
    print()
    for r in ok:
        for kind, example in r.hb_error_examples.items():
            print(f"[{r.backend}] a heartbeat's {kind}: {example}")
    for r in ok:
        assert r.loaded is not None
        p99 = pct(r.loaded.latencies_ms, 99)
        verdict = "met" if r.holds() and p99 < GOAL_P99_MS else "not met"
        print(
            f"goal [{r.backend}]: holds {r.target_rate:,.0f} heartbeats/s "
            f"({r.achieved_rate:,.0f}/s, {sum(r.hb_errors.values())} errors, "
            f"{r.states.get('ACTIVE', 0):,}/{r.registered:,} ACTIVE): "
            f"{'yes' if r.holds() else 'no'}; discovery p99 {p99:.2f} ms < {GOAL_P99_MS:g} ms: "
            f"{'yes' if p99 < GOAL_P99_MS else 'no'} -> {verdict}"
        )


def add_figures(doc: Results, ok: list[Result], echo: Echo | None) -> None:
    """Each backend's figures beside their peers: the idle registry, the target rate, the
    bare echo's CPU."""
    for r in ok:
        assert r.loaded is not None
        p99 = pct(r.loaded.latencies_ms, 99)
        idle = r.idle if r.idle and r.idle.latencies_ms else None
        idle_peer = "idle: no heartbeats, same registry"
        doc.add(
            f"[{r.backend}] discovery p99 under load",
            "ms",
            p99,
            peer=idle_peer if idle else "",
            peer_value=pct(idle.latencies_ms, 99) if idle else None,
            goal=f"< {GOAL_P99_MS:g} ms",
            met=p99 < GOAL_P99_MS,
            note=f"max {max(r.loaded.latencies_ms, default=0):.1f} ms",
        )
        doc.add(
            f"[{r.backend}] discovery p50 under load",
            "ms",
            pct(r.loaded.latencies_ms, 50),
            peer=idle_peer if idle else "",
            peer_value=pct(idle.latencies_ms, 50) if idle else None,
        )
        doc.add(
            f"[{r.backend}] discovery calls/s under load",
            "calls/s",
            r.loaded.rate,
            peer=idle_peer if idle else "",
            peer_value=idle.rate if idle else None,
        )
        errors = sum(r.hb_errors.values())
        doc.add(
            f"[{r.backend}] heartbeats/s achieved",
            "beats/s",
            r.achieved_rate,
            peer="target",
            peer_value=r.target_rate,
            goal=f">= {GOAL_RATE_SHARE:.0%} of target, no errors, all ACTIVE",
            met=r.holds(),
            note=f"{r.ok:,} of {r.issued:,} ok, {errors} errors, "
            f"{r.states.get('ACTIVE', 0):,} of {r.registered:,} ACTIVE",
        )
        doc.add(
            f"[{r.backend}] heartbeat p99",
            "ms",
            pct(r.hb_latencies_ms, 99),
            note=f"p50 {pct(r.hb_latencies_ms, 50):.2f} ms",
        )
        per_list, per_beat = r.cpu_per_call_us()
        echo_cpu = echo.cpu_us if echo is not None else None
        echo_peer = "bare echo, server CPU a call" if echo is not None else ""
        doc.add(
            f"[{r.backend}] registry CPU a ListAgents (idle)",
            "us",
            per_list,
            peer=echo_peer,
            peer_value=echo_cpu,
        )
        if r.ok >= DERIVE_MIN_BEATS:
            doc.add(
                f"[{r.backend}] registry CPU a Heartbeat (derived)",
                "us",
                per_beat,
                peer=echo_peer,
                peer_value=echo_cpu,
            )
        if "registry" in r.cpu:
            other = r.machine_cpu - sum(r.cpu.values()) - sum(r.loader_cpu)
            doc.add(
                f"[{r.backend}] registry CPU, load phase",
                "% of a core",
                r.cpu["registry"],
                note=f"the rest of the machine {other:.0f}% of {100 * (os.cpu_count() or 1)}%",
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=("memory", "consul", "both"), default="memory")
    p.add_argument("--agents", type=int, default=10_000)
    p.add_argument("--period", type=float, default=5.0, help="seconds between an agent's beats")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of heartbeat load")
    p.add_argument("--idle", type=float, default=5.0, help="seconds of discovery with no load")
    p.add_argument("--skills", type=int, default=50, help="skill ids in the pool")
    p.add_argument("--lease-ttl", type=float, default=15.0, help="lease each agent asks for")
    p.add_argument("--loaders", type=int, default=1, help="load-generator processes")
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=2000,
        help="heartbeats in flight per loader (past it the schedule waits: lag)",
    )
    p.add_argument(
        "--discovery-rate", type=float, default=0.0, help="ListAgents calls/s; 0: back to back"
    )
    p.add_argument("--seed", type=int, default=9)
    p.add_argument(
        "--echo-calls", type=int, default=4000, help="calls a round of the echo peer; 0 skips it"
    )
    p.add_argument("--profile", action="store_true", help="py-spy the registry (load phase)")
    p.add_argument("--gc-log", action="store_true", help="time the registry's garbage collections")
    p.add_argument("--meshwright", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.add_argument(
        "--consul-check-interval",
        type=float,
        default=3600.0,
        help="seconds between the Consul double's GRPC checks of one agent (each runs once "
        "at registration); Consul's probing is Consul's cost, not the registry's",
    )
    p.add_argument(
        "--vary-load",
        action="store_true",
        help="each heartbeat reports another load than the last (every one is a change)",
    )
    p.add_argument(
        "--heartbeats",
        choices=("stream", "unary", "both"),
        default="both",
        help="each agent heartbeats over its own StreamHeartbeats stream (as agents do), by "
        "unary Heartbeat calls (the peer), or both, one after the other",
    )
    p.add_argument("--loader", help=argparse.SUPPRESS)
    p.add_argument("--endpoint", help=argparse.SUPPRESS)
    p.add_argument("--serve-health", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--target", help=argparse.SUPPRESS)
    add_json_flag(p)
    args = p.parse_args()
    if args.meshwright:
        serve_gc_logged(args.meshwright)
    if args.serve_health:
        serve_health()
        return
    if args.loader:
        run_loader(args)
        return
    if args.profile and not py_spy():
        raise SystemExit("--profile needs py-spy (pip install py-spy) in the venv or on PATH")
    backends = ["memory", "consul"] if args.backend == "both" else [args.backend]
    print(f"$ python {' '.join([str(Path(__file__).relative_to(ROOT)), *sys.argv[1:]])}")
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {machine()}", flush=True)
    echo = None
    if args.echo_calls:
        echo = measure_echo(args.echo_calls, 3)
        print(
            f"peer: bare grpc.aio echo (bench/stores.py), 16 in flight: {echo.rate:,.0f} calls/s, "
            f"{echo.cpu_us:.0f} us of server CPU a call",
            flush=True,
        )
    modes = ["stream", "unary"] if args.heartbeats == "both" else [args.heartbeats]
    results = []
    for backend in backends:
        for mode in modes:
            prefix = f"meshwright-registry-bench-{backend}-{mode}-"
            with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
                results.append(asyncio.run(run_backend(args, backend, mode, Path(tmp))))
    doc = Results(bench="registry", title="Registry discovery under heartbeat load")
    report(args, results, echo, doc)
    pace = "back to back" if args.discovery_rate <= 0 else f"at {args.discovery_rate:g}/s"
    doc.notes.append(
        f"{args.agents:,} agents, a heartbeat every {args.period:g} s for {args.duration:g} s,"
        f" discovery ListAgents(skill, page_size=100) {pace}; idle peer {args.idle:g} s"
    )
    doc.write(args.json)


if __name__ == "__main__":
    main()
