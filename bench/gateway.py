"""Direct gRPC against the REST gateway: the same calls at equal concurrency, in one run.

What: a child process serves the mesh as a user starts it, ``python -m meshwright
serve --grpc-port 0 --http-port 0 --insecure-no-auth --rate-limit-rps 0`` (registry,
economy, workflow and the REST gateway in one process; auth off, so every caller is an
admin; no rate limit, which with auth off would put every call in the loopback peer's
one bucket). This process creates the accounts it needs over gRPC, then, for each C
of ``--concurrency`` (1 and 16), calls

a. GetAccount (a read) through the gRPC stub (grpc.aio, one channel, C coroutines)
   and as ``GET /v1/accounts/{id}`` through the gateway (aiohttp.ClientSession, HTTP/1.1,
   a keep-alive pool of C connections, C coroutines), ``--calls`` calls each;
b. Transfer (a write: 1 CREDIT between the coroutine's own two accounts, a fresh
   request id each) through the stub and as ``POST /v1/accounts/{id}:transfer``,
   ``--transfers`` calls each (0 skips them).

The two modes alternate over ``--rounds`` rounds (which goes first changes every
round: this machine drifts); each figure is the median over the rounds, printed as
requests/s and p50 latency per mode, and the ratio REST / gRPC. Both clients parse
what they get (the stub its protobuf, aiohttp its JSON), and this process shares the
machine's cores with the server: a figure is the client's cost and the server's
together, as a caller on the same host sees it.

Why: the gateway is the door of browsers, scripts and anything without a gRPC stack;
it turns JSON into the RPC's request, calls the service in-process through the same
pipeline and turns the answer back into JSON. What that costs on top of the gRPC call
is the figure to hold.

    python bench/gateway.py        # --calls 2000 --transfers 1000 --rounds 3 --concurrency 1 16
    python bench/gateway.py --calls 200 --transfers 100 --rounds 1   # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stores  # noqa: E402 (bench/stores.py: stopping children)
from _results import Results, add_json_flag  # noqa: E402

from meshwright.economy.v1 import economy_pb2 as E  # noqa: E402
from meshwright.economy.v1 import economy_pb2_grpc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0
CALL_TIMEOUT_S = 30.0
FUNDS = 10**12
"""CREDIT each source account starts with: no round runs out."""
WARMUP_CALLS = 100
MODES = ("gRPC", "REST")


# -- the server (child process) ---------------------------------------------------------


@dataclass
class Server:
    """``meshwright serve`` in a child process: its gRPC address and gateway URL."""

    proc: subprocess.Popen[str]
    grpc_address: str
    http_url: str
    log: Path

    @classmethod
    def start(cls, workdir: Path) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWRIGHT_")}
        env.update(
            COLUMNS="200",
            NO_COLOR="1",
            MESHWRIGHT_CONFIG_DIR=str(workdir / "config"),  # no token or config of the user's
            MESHWRIGHT_LOG_LEVEL="WARNING",
        )
        log = workdir / "serve.log"
        with log.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "meshwright", "serve", "--grpc-port", "0"]
                + ["--http-port", "0", "--insecure-no-auth", "--rate-limit-rps", "0"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,  # a file: a pipe nobody reads could fill and stall it
                text=True,
                env=env,
                cwd=ROOT,
            )
        assert proc.stdout is not None
        # A thread reads its output (the rest is dropped, so it never blocks on a full pipe).
        lines: queue.Queue[str] = queue.Queue()
        stdout = proc.stdout

        def pump() -> None:
            for line in iter(stdout.readline, ""):
                lines.put(line)
            lines.put("")  # its end

        threading.Thread(target=pump, daemon=True).start()
        out = ""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not re.search(r"gateway on (http://\S+)", out):
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if not line:  # its end, or the deadline
                stores.stop_process(proc)
                raise RuntimeError(
                    f"meshwright serve did not print its addresses:\n{out}{log.read_text()}"
                )
            out += line
        grpc_found = re.search(r"serving .* on (\S+:\d+)", out)
        http_found = re.search(r"gateway on (http://\S+)", out)
        assert grpc_found and http_found
        return cls(proc, grpc_found.group(1), http_found.group(1).rstrip("/"), log)

    def stop(self) -> None:
        stores.stop_process(self.proc)  # SIGTERM: serve stops its node


# -- the clients ------------------------------------------------------------------------


Call = Callable[[int, int], Awaitable[None]]
"""One call by coroutine ``w``, its ``n``-th."""


class Clients:
    """The gRPC stub over one channel and one aiohttp session per concurrency."""

    def __init__(self, server: Server, concurrency: list[int]) -> None:
        self.channel = grpc.aio.insecure_channel(server.grpc_address)
        self.stub = economy_pb2_grpc.EconomyServiceStub(self.channel)
        # aiohttp, not httpx: httpx spends 4-6 ms of this process's CPU a request at 16 in
        # flight (measured here), which made the client the bottleneck rather than the gateway.
        self.http = {
            c: aiohttp.ClientSession(
                base_url=server.http_url,
                connector=aiohttp.TCPConnector(limit=c),
                timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT_S),
            )
            for c in concurrency
        }
        self._round = 0

    async def close(self) -> None:
        for client in self.http.values():
            await client.close()
        await self.channel.close()

    def next_round(self) -> None:
        self._round += 1

    def _request_id(self, mode: str, c: int, w: int, n: int) -> str:
        return f"bench-gw-{mode}-{c}-{self._round}-{w}-{n}"

    def calls(self, c: int) -> dict[tuple[str, str], Call]:
        """``(operation, mode) -> call`` at concurrency ``c``."""
        http = self.http[c]

        async def grpc_get(w: int, n: int) -> None:
            reply = await self.stub.GetAccount(
                E.GetAccountRequest(account_id=f"src-{w}"), timeout=CALL_TIMEOUT_S
            )
            if reply.account.account_id != f"src-{w}":
                raise RuntimeError(f"GetAccount answered {reply}")

        async def rest_get(w: int, n: int) -> None:
            async with http.get(f"/v1/accounts/src-{w}") as r:
                body = await r.json()
                if r.status != 200 or body["account"]["accountId"] != f"src-{w}":
                    raise RuntimeError(f"GET /v1/accounts/src-{w}: {r.status} {body}")

        async def grpc_transfer(w: int, n: int) -> None:
            request = E.TransferRequest(
                from_account_id=f"src-{w}",
                to_account_id=f"dst-{w}",
                amount=1,
                request_id=self._request_id("grpc", c, w, n),
            )
            reply = await self.stub.Transfer(request, timeout=CALL_TIMEOUT_S)
            if reply.transaction.amount != 1:
                raise RuntimeError(f"Transfer answered {reply}")

        async def rest_transfer(w: int, n: int) -> None:
            body = {
                "toAccountId": f"dst-{w}",
                "amount": "1",
                "requestId": self._request_id("rest", c, w, n),
            }
            async with http.post(f"/v1/accounts/src-{w}:transfer", json=body) as r:
                reply = await r.json()
                if r.status != 200 or reply["transaction"]["amount"] != "1":
                    raise RuntimeError(f"POST ...:transfer: {r.status} {reply}")

        return {
            ("GetAccount", "gRPC"): grpc_get,
            ("GetAccount", "REST"): rest_get,
            ("Transfer", "gRPC"): grpc_transfer,
            ("Transfer", "REST"): rest_transfer,
        }


async def timed(call: Call, calls: int, concurrency: int) -> tuple[float, float]:
    """``calls`` calls from ``concurrency`` coroutines: (requests/s, p50 ms)."""
    each = max(1, calls // concurrency)
    latencies: list[float] = []

    async def worker(w: int) -> None:
        for n in range(each):
            t0 = time.perf_counter()
            await call(w, n)
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    wall = time.perf_counter() - t0
    return each * concurrency / wall, statistics.median(latencies) * 1000


# -- the run ----------------------------------------------------------------------------


@dataclass
class Figures:
    rates: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)
    server_us: list[float] = field(default_factory=list)
    """The server process's CPU per call (/proc), microseconds."""
    client_us: list[float] = field(default_factory=list)
    """This process's CPU per call (the client library's share), microseconds."""


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def create_accounts(stub: economy_pb2_grpc.EconomyServiceStub, pairs: int) -> None:
    for w in range(pairs):
        await stub.CreateAccount(
            E.CreateAccountRequest(account_id=f"src-{w}", initial_balance=FUNDS),
            timeout=CALL_TIMEOUT_S,
        )
        await stub.CreateAccount(E.CreateAccountRequest(account_id=f"dst-{w}"))


async def measure(server: Server, args: argparse.Namespace) -> dict[tuple[str, int, str], Figures]:
    """``(operation, concurrency, mode) -> figures of every round``."""
    clients = Clients(server, args.concurrency)
    out: dict[tuple[str, int, str], Figures] = {}
    operations = [("GetAccount", args.calls)] + (
        [("Transfer", args.transfers)] if args.transfers else []
    )
    try:
        await create_accounts(clients.stub, max(args.concurrency))
        for c in args.concurrency:  # warm up: channels, connections, caches
            for call in clients.calls(c).values():
                await timed(call, WARMUP_CALLS, c)
        for r in range(args.rounds):
            clients.next_round()
            order = MODES if r % 2 == 0 else MODES[::-1]
            for c in args.concurrency:
                calls = clients.calls(c)
                for operation, n in operations:
                    line = []
                    for mode in order:
                        server0, client0 = cpu_s(server.proc.pid), time.process_time()
                        rate, p50 = await timed(calls[(operation, mode)], n, c)
                        done = max(1, n // c) * c
                        figures = out.setdefault((operation, c, mode), Figures())
                        figures.rates.append(rate)
                        figures.p50s.append(p50)
                        figures.server_us.append((cpu_s(server.proc.pid) - server0) / done * 1e6)
                        figures.client_us.append((time.process_time() - client0) / done * 1e6)
                        line.append(f"{mode} {rate:,.0f}/s p50 {p50:.2f} ms")
                    print(
                        f"  round {r + 1}, {operation}, {c} in flight: " + ", ".join(line),
                        flush=True,
                    )
    finally:
        await clients.close()
    return out


def report(
    args: argparse.Namespace, out: dict[tuple[str, int, str], Figures], doc: Results
) -> None:
    print()
    print(f"== Figures (one run, medians of {args.rounds} rounds; REST / gRPC) ==")
    for operation, route in (
        ("GetAccount", "GET /v1/accounts/{id}"),
        ("Transfer", "POST /v1/accounts/{id}:transfer"),
    ):
        for c in args.concurrency:
            if (operation, c, "gRPC") not in out:
                continue
            g, h = out[(operation, c, "gRPC")], out[(operation, c, "REST")]
            g_rate, h_rate = statistics.median(g.rates), statistics.median(h.rates)
            g_p50, h_p50 = statistics.median(g.p50s), statistics.median(h.p50s)
            print(
                f"  {operation:10s} {c:>3} in flight   gRPC {g_rate:8,.0f}/s p50 {g_p50:6.2f} ms"
                f"   REST {h_rate:8,.0f}/s p50 {h_p50:6.2f} ms"
                f"   REST/gRPC {h_rate / g_rate:.2f}x req/s, {h_p50 / g_p50:.2f}x p50"
            )
            per_round = statistics.median(a / b for a, b in zip(h.rates, g.rates, strict=True))
            peer = f"{operation} over gRPC (grpc.aio stub), {c} in flight"
            doc.add(
                f"{operation} through the gateway ({route}), {c} in flight",
                "req/s",
                h_rate,
                peer=peer,
                peer_value=g_rate,
                note=f"median of {len(h.rates)} rounds; median of per-round ratios"
                f" {per_round:.2f}x",
            )
            g_srv, h_srv = statistics.median(g.server_us), statistics.median(h.server_us)
            g_cli, h_cli = statistics.median(g.client_us), statistics.median(h.client_us)
            print(
                f"  {'':10s} {'':>3}              server CPU a call: gRPC {g_srv:,.0f} us, REST "
                f"{h_srv:,.0f} us; client CPU a call: gRPC {g_cli:,.0f} us, REST {h_cli:,.0f} us"
            )
            doc.add(
                f"server CPU a {operation} through the gateway, {c} in flight",
                "us",
                h_srv,
                peer=f"server CPU a {operation} over gRPC",
                peer_value=g_srv,
                note="lower is better; from /proc of the serve process",
            )
            doc.add(
                f"client CPU a {operation} with aiohttp, {c} in flight",
                "us",
                h_cli,
                peer=f"client CPU a {operation} with the grpc.aio stub",
                peer_value=g_cli,
                note="lower is better; this process's CPU time a call",
            )
            doc.add(
                f"{operation} p50 through the gateway, {c} in flight",
                "ms",
                h_p50,
                peer=f"{peer}, p50",
                peer_value=g_p50,
                note="lower is better",
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=2000, help="GetAccount calls a round and mode")
    p.add_argument(
        "--transfers", type=int, default=1000, help="Transfer calls a round and mode; 0 skips"
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    add_json_flag(p)
    args = p.parse_args()
    if args.rounds < 1 or args.calls < 1 or min(args.concurrency) < 1 or args.transfers < 0:
        p.error("need --rounds >= 1, --calls >= 1, --concurrency >= 1, --transfers >= 0")
    t_start = time.perf_counter()
    doc = Results(bench="gateway", title="Direct gRPC vs the REST gateway")
    with tempfile.TemporaryDirectory(prefix="meshwright-bench-gateway-") as tmp:
        server = Server.start(Path(tmp))
        try:
            print(
                f"meshwright serve (auth off): gRPC {server.grpc_address}, gateway"
                f" {server.http_url}; {args.calls} GetAccount and {args.transfers} Transfer"
                f" calls a round and mode, {args.rounds} rounds,"
                f" {' and '.join(map(str, args.concurrency))} in flight",
                flush=True,
            )
            out = asyncio.run(measure(server, args))
        finally:
            server.stop()
    report(args, out, doc)
    doc.notes.append(
        "one `meshwright serve` process (auth off, no rate limit); the gateway calls the"
        " services in-process; this process is both clients (aiohttp HTTP/1.1 keep-alive pool"
        " of C connections, grpc.aio one channel) and shares the cores with the server"
    )
    doc.write(args.json)
    print(f"\n(whole run {time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
