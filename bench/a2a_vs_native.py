"""Native ExecuteTask vs our A2A endpoint vs an a2a-sdk agent: the same skill, one run.

What: two child processes serve the same trivial skill (upper-case a short text):

a. native: a meshwright agent process (the sample ``analyst_agent``, auth off, serving
   A2A too, ``a2a_port=0``) called with ExecuteTask over gRPC (grpc.aio, one channel);
b. ours: the same process's A2A endpoint (``meshwright.agent.a2a``: a2a-sdk's request
   handler and JSON-RPC routes in front of the agent's own servicer, called in-process
   through its pipeline), called with the official a2a-sdk client, ``message/send``
   blocking (JSON-RPC over HTTP/1.1, httpx);
c. reference: an agent written with a2a-sdk alone (the app of
   tests/agent/_a2a_reference_agent.py under plain uvicorn, its ``upper`` skill: an
   AgentExecutor that marks the task working, then completes it with the output as an
   artifact), called with the same a2a-sdk client. (That script's own launcher leaves
   TCP_NODELAY off: ``--reference-launcher`` measures it so, ~40 ms more a call.)

For each C of ``--concurrency`` (1 and 16) each mode runs ``--calls`` calls from C
coroutines; the modes take turns over ``--rounds`` rounds (the order rotates every
round: this machine drifts). Figures are the medians over the rounds: requests/s,
p50 and p99 latency, the serving process's CPU a call (from /proc), and each A2A mode
against native. This process is every client and shares the 2 cores with the servers,
so a figure is what a caller on the same host sees, client costs included (the a2a-sdk
client over httpx is far heavier than a grpc.aio stub: the server CPU a call separates
the servers' own cost).

    python bench/a2a_vs_native.py        # --calls 1000 --rounds 3 --concurrency 1 16
    python bench/a2a_vs_native.py --calls 100 --rounds 1   # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stores  # noqa: E402 (bench/stores.py: stopping children)
from _results import Results, add_json_flag  # noqa: E402

from meshwright.agent.v1 import agent_pb2  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "tests" / "agent" / "_a2a_reference_agent.py"
READY_TIMEOUT_S = 60.0
CALL_TIMEOUT_S = 30.0
WARMUP_CALLS = 50
TEXT = "hello from the a2a bench"
TITLE = "A2A: native vs our A2A endpoint vs an a2a-sdk agent"
MODES = ("native", "ours", "reference")
TITLES = {
    "native": "ExecuteTask over gRPC (meshwright agent)",
    "ours": "message/send to our A2A endpoint (same agent process)",
    "reference": "message/send to an a2a-sdk agent",
}


# -- the servers (child processes) --------------------------------------------------------


def serve_agent() -> None:
    """Child mode: the analyst sample agent with A2A on; prints its ports, runs until stdin
    closes."""
    from meshwright.agent.samples import analyst_agent

    async def main() -> None:
        runtime = await analyst_agent.start(None, insecure_no_auth=True, a2a_port=0)
        assert runtime.a2a is not None
        print(f"READY grpc={runtime.server.port} a2a={runtime.a2a.url}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runtime.stop()

    asyncio.run(main())


def serve_reference() -> None:
    """Child mode: the a2a-sdk reference agent's app (``build_app`` of
    tests/agent/_a2a_reference_agent.py) under plain uvicorn; prints its URL.

    Not that script's own launcher: its listening socket has proto 0, so asyncio leaves
    TCP_NODELAY off on its connections and every answer waits ~40 ms for the client's
    delayed ACK, which would measure Nagle, not a2a-sdk. Here the socket is made with
    proto IPPROTO_TCP, as ``getaddrinfo`` (and our agent's server) make it.
    """
    import socket

    import uvicorn

    sys.path.insert(0, str(REFERENCE.parent))
    from _a2a_reference_agent import build_app  # type: ignore[import-not-found]

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = build_app(url)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    print(f"A2A_AGENT url={url}", flush=True)
    asyncio.run(server.serve(sockets=[sock]))


@dataclass
class Child:
    proc: subprocess.Popen[str]
    fields: dict[str, str]

    @classmethod
    def start(cls, argv: list[str], prefix: str, log: Path) -> Child:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWRIGHT_")}
        env["MESHWRIGHT_LOG_LEVEL"] = "WARNING"
        with log.open("w") as err:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,  # a file: a pipe nobody reads could fill and stall it
                text=True,
                env=env,
                cwd=ROOT,
            )
        assert proc.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(prefix):
                fields = dict(p.split("=", 1) for p in line.split()[1:] if "=" in p)
                return cls(proc, fields)
        stores.stop_process(proc)
        raise RuntimeError(f"{argv} did not print {prefix!r}:\n{log.read_text()}")

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the agent child stops when stdin closes
        stores.stop_process(self.proc)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the clients -------------------------------------------------------------------------


Call = Callable[[], Awaitable[None]]


class Clients:
    """A grpc.aio channel to the agent; one a2a-sdk client a server and concurrency."""

    def __init__(self, grpc_address: str) -> None:
        self.channel = grpc.aio.insecure_channel(grpc_address)
        self.execute = self.channel.unary_unary(
            "/meshwright.agent.v1.AgentService/ExecuteTask",
            request_serializer=agent_pb2.ExecuteTaskRequest.SerializeToString,
            response_deserializer=agent_pb2.ExecuteTaskResponse.FromString,
        )
        self.http: list[httpx.AsyncClient] = []

    async def a2a(self, url: str, concurrency: int) -> object:
        from a2a.client import ClientConfig, ClientFactory

        http = httpx.AsyncClient(
            timeout=CALL_TIMEOUT_S,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self.http.append(http)
        return await ClientFactory(
            ClientConfig(httpx_client=http, streaming=False)
        ).create_from_url(url)

    def native(self) -> Call:
        async def call() -> None:
            request = agent_pb2.ExecuteTaskRequest(task_id=uuid.uuid4().hex, skill="text.upper")
            request.input["text"] = TEXT
            reply = await self.execute(request, timeout=CALL_TIMEOUT_S)
            assert reply.task.output["text"] == TEXT.upper(), reply

        return call

    @staticmethod
    def send(client: object, skill: str) -> Call:
        from a2a.client import Client
        from a2a.types import Message, Part, Role, SendMessageRequest, TaskState

        assert isinstance(client, Client)

        async def call() -> None:
            msg = Message(message_id=uuid.uuid4().hex, role=Role.ROLE_USER, parts=[Part(text=TEXT)])
            msg.metadata["skill"] = skill
            events = [e async for e in client.send_message(SendMessageRequest(message=msg))]
            task = events[-1].task
            assert task.status.state == TaskState.TASK_STATE_COMPLETED, task
            output = next(a for a in task.artifacts if a.name == "output")
            assert output.parts[0].data.struct_value["text"] == TEXT.upper(), task

        return call

    async def close(self) -> None:
        await self.channel.close()
        for http in self.http:
            await http.aclose()


async def timed(call: Call, calls: int, concurrency: int) -> tuple[float, list[float]]:
    """``calls`` calls from ``concurrency`` coroutines: (requests/s, latencies in ms)."""
    each = max(1, calls // concurrency)
    latencies: list[float] = []

    async def worker() -> None:
        for _ in range(each):
            t0 = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return each * concurrency / (time.perf_counter() - t0), latencies


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


# -- the run -----------------------------------------------------------------------------


@dataclass
class Figures:
    rates: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    server_us: list[float] = field(default_factory=list)


async def measure(
    agent: Child, reference: Child, args: argparse.Namespace
) -> dict[tuple[int, str], Figures]:
    clients = Clients(f"127.0.0.1:{agent.fields['grpc']}")
    pids = {"native": agent.proc.pid, "ours": agent.proc.pid, "reference": reference.proc.pid}
    out: dict[tuple[int, str], Figures] = {}
    try:
        calls: dict[tuple[int, str], Call] = {}
        for c in args.concurrency:
            calls[(c, "native")] = clients.native()
            ours = await clients.a2a(agent.fields["a2a"], c)
            calls[(c, "ours")] = clients.send(ours, "text.upper")
            ref = await clients.a2a(reference.fields["url"], c)
            calls[(c, "reference")] = clients.send(ref, "upper")
        for (c, _), call in calls.items():  # warm up: channels, connections, caches
            await timed(call, WARMUP_CALLS, c)
        for r in range(args.rounds):
            order = MODES[r % 3 :] + MODES[: r % 3]
            for c in args.concurrency:
                line = []
                for mode in order:
                    before = cpu_s(pids[mode])
                    rate, latencies = await timed(calls[(c, mode)], args.calls, c)
                    done = len(latencies)
                    figures = out.setdefault((c, mode), Figures())
                    figures.rates.append(rate)
                    figures.p50s.append(statistics.median(latencies))
                    figures.p99s.append(p99(latencies))
                    figures.server_us.append((cpu_s(pids[mode]) - before) / done * 1e6)
                    line.append(f"{mode} {rate:,.0f}/s p50 {figures.p50s[-1]:.2f} ms")
                print(f"  round {r + 1}, {c} in flight: " + ", ".join(line), flush=True)
    finally:
        await clients.close()
    return out


def report(args: argparse.Namespace, out: dict[tuple[int, str], Figures], doc: Results) -> None:
    med = statistics.median
    print()
    print(f"== Figures (one run, medians of {args.rounds} rounds; ratios vs native) ==")
    for c in args.concurrency:
        native = out[(c, "native")]
        n_rate, n_p50 = med(native.rates), med(native.p50s)
        for mode in MODES:
            f = out[(c, mode)]
            rate, p50, p99_ms, srv = med(f.rates), med(f.p50s), med(f.p99s), med(f.server_us)
            print(
                f"  {c:>3} in flight  {mode:9s} {rate:8,.0f}/s  p50 {p50:7.2f} ms"
                f"  p99 {p99_ms:7.2f} ms  server CPU {srv:6,.0f} us/call"
                + ("" if mode == "native" else f"  {rate / n_rate:.3f}x native req/s")
            )
            peer = {} if mode == "native" else {"peer": TITLES["native"], "peer_value": n_rate}
            doc.add(f"{TITLES[mode]}, {c} in flight", "req/s", rate, **peer)
            p50_peer = {} if mode == "native" else {"peer": "native p50", "peer_value": n_p50}
            doc.add(
                f"{TITLES[mode]} p50, {c} in flight", "ms", p50, note="lower is better", **p50_peer
            )
            doc.add(f"{TITLES[mode]} p99, {c} in flight", "ms", p99_ms, note="lower is better")
            doc.add(
                f"{TITLES[mode]}: serving process CPU a call, {c} in flight",
                "us",
                srv,
                note="lower is better; /proc of the serving process",
            )
        ours, ref = med(out[(c, "ours")].rates), med(out[(c, "reference")].rates)
        print(f"  {c:>3} in flight  ours / reference: {ours / ref:.3f}x req/s")
        doc.add(
            f"our A2A endpoint vs the a2a-sdk agent, {c} in flight",
            "req/s",
            ours,
            peer=TITLES["reference"],
            peer_value=ref,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--serve-agent", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--serve-reference", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--reference-launcher",
        action="store_true",
        help="start the a2a-sdk agent with its own script (its socket leaves Nagle on)",
    )
    p.add_argument("--calls", type=int, default=1000, help="calls a round, mode and concurrency")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    add_json_flag(p)
    args = p.parse_args()
    if args.serve_agent:
        serve_agent()
        return
    if args.serve_reference:
        serve_reference()
        return
    if args.rounds < 1 or args.calls < 1 or min(args.concurrency) < 1:
        p.error("need --rounds >= 1, --calls >= 1, --concurrency >= 1")
    t_start = time.perf_counter()
    doc = Results(bench="a2a_vs_native", title=TITLE)
    with tempfile.TemporaryDirectory(prefix="meshwright-bench-a2a-") as tmp:
        agent = Child.start(
            [sys.executable, __file__, "--serve-agent"], "READY ", Path(tmp) / "agent.log"
        )
        try:
            reference = Child.start(
                [sys.executable, str(REFERENCE), "--port", "0"]
                if args.reference_launcher
                else [sys.executable, __file__, "--serve-reference"],
                "A2A_AGENT ",
                Path(tmp) / "reference.log",
            )
            try:
                print(
                    f"agent gRPC :{agent.fields['grpc']}, its A2A {agent.fields['a2a']}, a2a-sdk"
                    f" agent {reference.fields['url']}; {args.calls} calls a round, mode and"
                    f" concurrency, {args.rounds} rounds,"
                    f" {' and '.join(map(str, args.concurrency))} in flight",
                    flush=True,
                )
                out = asyncio.run(measure(agent, reference, args))
            finally:
                reference.stop()
        finally:
            agent.stop()
    report(args, out, doc)
    doc.notes.append(
        "auth off everywhere; one agent process serves native and our A2A; the a2a-sdk"
        " agent is its own process (its app under plain uvicorn, TCP_NODELAY on as"
        " asyncio sets it for proto-TCP sockets); this process is every client (grpc.aio;"
        " a2a-sdk client over httpx, a keep-alive pool of C connections) and shares the 2"
        " cores with them"
    )
    doc.write(args.json)
    print(f"\n(whole run {time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
