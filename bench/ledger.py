"""The economy's Transfer through gRPC against a bare grpc.aio echo, in one run.

Prints requests/s, all measured in this one run on this machine:

a. ``Transfer`` through the gRPC EconomyService (the embedded node with
   ``--services economy``, auth off) served by a child process on the Redis
   ledger (``redis://`` on a redis-server this script starts, no persistence),
   from ``C`` coroutines in this process over one channel, for each C of
   ``--concurrency`` (16 and 64): each coroutine moves 1 CREDIT between its own
   two accounts with a fresh request id (so every call writes its idempotency
   record, as the engine's calls do), no two coroutines on one account;
b. the bare grpc.aio unary echo (bytes in, the same bytes out; the server of
   bench/stores.py) in a child process, at the same concurrency: the ceiling
   of a Python gRPC server on this machine. The goal is a / b >= 0.6;
c. the same Transfer on the memory ledger (another child; no I/O behind it).

Requests are serialized here and responses are not parsed (one per round is,
and checked), so the client costs the echo and the ledger rows alike. Rows
alternate over ``--rounds`` rounds (the machine drifts); the best round of
each counts and the median of the per-round ratios is shown beside it. Then,
unless ``--no-kernel``, bench/ledger_kernel.py runs (the kernel on Redis
without gRPC: a bare Lua transfer against ``RedisLedgerStore.commit``).

``--profile`` samples the echo server and the Redis economy server with
py-spy (``--gil``: only while a thread holds the GIL, so idle waits do not
count) for the whole run and prints where each spends its time per call, by
area (gRPC's Cython core and asyncio's C task steps under ``Handle._run``,
asyncio's Python, redis-py, the mesh pipeline, the economy). Sampling slows
the servers: take the rates from a run without it.

    python bench/ledger.py        # --transfers 4000 --rounds 3 --concurrency 16 64
    python bench/ledger.py --json PATH   # also the figures as JSON (make bench; not the kernel's)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from meshwright.economy.v1 import economy_pb2 as E

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stores  # noqa: E402 (bench/stores.py: the echo server, redis-server, stopping children)
from _results import Results, add_json_flag  # noqa: E402

BENCH = Path(__file__).resolve().parent
TRANSFER_PATH = "/meshwright.economy.v1.EconomyService/Transfer"
GOAL = 0.6
FUNDS = 10**12
"""CREDIT each source account starts with: no round runs out."""


# -- the economy server (child process) ---------------------------------------------------


def serve_economy(store_url: str, accounts: int) -> None:
    """An economy-only node on ``store_url`` (auth off; an empty ledger) with ``accounts``
    funded source accounts ``src-<i>`` and their sinks ``dst-<i>``, until stdin closes."""
    from meshwright.mesh.config import MeshConfig
    from meshwright.node import start_node

    async def main() -> None:
        config = MeshConfig(
            store_url=store_url,
            insecure_no_auth=True,
            grpc_port=0,
            http_port=0,
            grace_s=0,
            rate_limit_rps=0,
        )
        node = await start_node(config, services=["economy"], gateway=False)
        economy = node.economy
        assert economy is not None
        for i in range(accounts):
            await economy.create_account(f"src-{i}", initial_balance=FUNDS)
            await economy.create_account(f"dst-{i}")
        print("READY", node.server.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await node.stop()

    asyncio.run(main())


@dataclass
class Child:
    """A server child process and its port; stdin closing stops it."""

    proc: subprocess.Popen[str]
    port: int

    @classmethod
    def start(cls, *argv: str) -> Child:
        proc = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if not line or line[0] != "READY":
            stores.stop_process(proc)
            raise RuntimeError(f"{' '.join(argv)} did not start")
        return cls(proc, int(line[1]))

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        stores.stop_process(self.proc)


# -- profiling ------------------------------------------------------------------------------

PROFILE_RATE_HZ = 250


def start_profile(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` (GIL-holding samples, raw stacks) into ``out`` until it
    exits."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    return subprocess.Popen(
        [spy, "record", "-p", str(pid), "--gil", "--nonblocking", "-f", "raw"]
        + ["-r", str(PROFILE_RATE_HZ), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def area(frame: str) -> str:
    """The part of the stack a leaf frame (``function (file:line)``) belongs to."""
    if frame.startswith("Handle._run "):
        return "gRPC core (Cython) and C task steps"
    path = frame.rpartition("(")[2]
    if "/redis/" in path or path.startswith("redis/"):
        return "redis-py"
    if "services/economy/" in path:
        return "economy (servicer, domain, store)"
    if "services/mesh/" in path:
        return "mesh (server, pipeline)"
    if "asyncio/" in path or "selectors.py" in path:
        return "asyncio (Python)"
    return "other Python"


def profile_areas(raw: Path) -> collections.Counter[str]:
    """Samples per area of a py-spy raw file (one ``stack count`` line per stack)."""
    out: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            out[area(re.sub(r"^.*;", "", stack))] += int(count)
    return out


def report_profile(profiles: dict[str, tuple[Path, int]]) -> None:
    """Microseconds of GIL-holding time per call of each profiled server, by area."""
    print("\nwhere the servers' time goes (py-spy --gil), us per call:")
    for label, (raw, calls) in profiles.items():
        if not raw.exists() or not calls:
            print(f"  {label}: no profile")
            continue
        areas = profile_areas(raw)
        per_sample_us = 1e6 / PROFILE_RATE_HZ
        total = sum(areas.values()) * per_sample_us / calls
        print(f"  {label}: {total:,.0f} us per call")
        for name, samples in areas.most_common():
            print(f"    {samples * per_sample_us / calls:8.0f} us  {name}")


# -- measuring ------------------------------------------------------------------------------


async def rate(call: Callable[[int, int], Awaitable[Any]], calls: int, concurrency: int) -> float:
    """Requests/s of ``calls`` calls of ``call(worker, n)`` from ``concurrency`` coroutines."""
    each = calls // concurrency

    async def worker(w: int) -> None:
        for n in range(each):
            await call(w, n)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return each * concurrency / (time.perf_counter() - t0)


class TransferClient:
    """Transfers from ``src-<w>`` to ``dst-<w>`` with fresh request ids."""

    def __init__(self, channel: grpc.aio.Channel, tag: str) -> None:
        self._call = channel.unary_unary(TRANSFER_PATH)  # bytes out, bytes back
        self._tag = tag
        self._round = 0
        self.calls = 0

    def next_round(self) -> None:
        self._round += 1

    def request(self, w: int, n: int) -> E.TransferRequest:
        return E.TransferRequest(
            from_account_id=f"src-{w}",
            to_account_id=f"dst-{w}",
            amount=1,
            request_id=f"bench-{self._tag}-{self._round}-{w}-{n}",
        )

    async def __call__(self, w: int, n: int) -> bytes:
        self.calls += 1
        body: bytes = await self._call(self.request(w, n).SerializeToString(), timeout=30)
        return body

    async def check(self) -> None:
        """One transfer, its response parsed: the row measures what it says."""
        reply = E.TransferResponse.FromString(await self(0, -1))
        if reply.transaction.amount != 1 or reply.from_account.account_id != "src-0":
            raise RuntimeError(f"unexpected Transfer response: {reply}")


@dataclass
class Row:
    label: str
    rates: dict[int, list[float]] = field(default_factory=dict)
    """Concurrency -> requests/s of each round."""
    error: str = ""
    calls: int = 0
    """Calls its server answered in all (warm-up included)."""


async def measure(
    args: argparse.Namespace, echo_port: int, ledgers: dict[str, int]
) -> tuple[Row, dict[str, Row]]:
    echo_row = Row("bare grpc.aio echo")
    rows = {label: Row(f"Transfer, {label} ledger") for label in ledgers}
    payload = b"x" * 80  # about a TransferRequest
    async with grpc.aio.insecure_channel(f"127.0.0.1:{echo_port}") as echo_channel:
        echo = echo_channel.unary_unary(stores.ECHO_PATH)

        async def echo_call(w: int, n: int) -> bytes:
            echo_row.calls += 1
            body: bytes = await echo(payload, timeout=30)
            return body

        channels = {
            label: grpc.aio.insecure_channel(f"127.0.0.1:{port}") for label, port in ledgers.items()
        }
        clients = {label: TransferClient(ch, label) for label, ch in channels.items()}
        try:
            top = max(args.concurrency)
            await rate(echo_call, 50 * top, top)  # warm up
            for client in clients.values():
                await client.check()
                await rate(client, 10 * top, top)
            for c in args.concurrency:
                for r in range(args.rounds):
                    echo_row.rates.setdefault(c, []).append(
                        await rate(echo_call, args.transfers, c)
                    )
                    for label, client in clients.items():
                        row = rows[label]
                        if row.error:
                            continue
                        client.next_round()
                        try:
                            got = await rate(client, args.transfers, c)
                            await client.check()
                        except Exception as err:  # report the row, keep the rest
                            row.error = f"{type(err).__name__}: {err}"
                            continue
                        row.rates.setdefault(c, []).append(got)
                    print(
                        f"  {c} in flight, round {r + 1}: echo {echo_row.rates[c][-1]:,.0f}/s"
                        + "".join(
                            f", {label} {rows[label].rates[c][-1]:,.0f}/s"
                            for label in ledgers
                            if not rows[label].error
                        ),
                        flush=True,
                    )
        finally:
            for ch in channels.values():
                await ch.close()
    for label, client in clients.items():
        rows[label].calls = client.calls
    return echo_row, rows


def report(args: argparse.Namespace, echo_row: Row, rows: dict[str, Row], doc: Results) -> None:
    """Print the figures, and add them to ``doc`` beside their echo peers."""
    print()
    print(f"{'':34}" + "".join(f"{f'{c} in flight':>26}" for c in args.concurrency))
    print(
        f"{echo_row.label:34}"
        + "".join(f"{max(echo_row.rates[c]):>22,.0f} /s " for c in args.concurrency)
    )
    for row in rows.values():
        if row.error:
            print(f"{row.label:34}  failed: {row.error}")
            doc.notes.append(f"{row.label}: failed: {row.error}")
            continue
        cells = ""
        for c in args.concurrency:
            best = max(row.rates[c]) / max(echo_row.rates[c])
            per_round = statistics.median(
                a / b for a, b in zip(row.rates[c], echo_row.rates[c], strict=True)
            )
            cells += f"{max(row.rates[c]):>9,.0f} /s {best:.2f}x ({per_round:.2f}x)"
            redis = row is rows.get("Redis")
            doc.add(
                f"{row.label}, {c} in flight",
                "req/s",
                max(row.rates[c]),
                peer=f"{echo_row.label}, {c} in flight",
                peer_value=max(echo_row.rates[c]),
                goal=f">= {GOAL}x echo" if redis else "",
                met=best >= GOAL if redis else None,
                note=f"best of {len(row.rates[c])} rounds; median of per-round ratios "
                f"{per_round:.2f}x",
            )
        print(f"{row.label:34}{cells}")
    print()
    print("ratio = best round / best echo round (median of per-round ratios)")
    redis_row = rows.get("Redis")
    if redis_row is not None and not redis_row.error:
        for c in args.concurrency:
            ratio = max(redis_row.rates[c]) / max(echo_row.rates[c])
            verdict = "met" if ratio >= GOAL else "not met"
            print(f"goal: Redis Transfer >= {GOAL}x echo at {c} in flight: {ratio:.2f}x, {verdict}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--transfers", type=int, default=4000, help="calls per round and row")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    p.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    p.add_argument("--no-kernel", action="store_true", help="skip bench/ledger_kernel.py")
    p.add_argument("--profile", action="store_true", help="py-spy the echo and Redis servers")
    p.add_argument("--serve-economy", metavar="STORE_URL", help=argparse.SUPPRESS)
    p.add_argument("--accounts", type=int, default=0, help=argparse.SUPPRESS)
    add_json_flag(p)
    args = p.parse_args()
    if args.serve_economy:
        serve_economy(args.serve_economy, args.accounts)
        return
    accounts = str(max(args.concurrency))
    children: list[Child] = []
    spies: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="meshwright-ledger-bench-") as tmp:
        redis, redis_port = stores.start_redis(args.redis_server, Path(tmp))
        try:
            echo = Child.start(str(BENCH / "stores.py"), "--serve-echo")
            children.append(echo)
            ledgers: dict[str, int] = {}
            for label, url in (
                ("Redis", f"redis://127.0.0.1:{redis_port}/0"),
                ("memory", "memory://"),
            ):
                child = Child.start(__file__, "--serve-economy", url, "--accounts", accounts)
                children.append(child)
                ledgers[label] = child.port
            if args.profile:
                spies = [
                    start_profile(echo.proc.pid, Path(tmp) / "echo.txt"),
                    start_profile(children[1].proc.pid, Path(tmp) / "redis.txt"),  # Redis row
                ]
            print(
                f"Transfer over gRPC vs bare echo: {args.transfers} calls a round, "
                f"{args.rounds} rounds, {' and '.join(map(str, args.concurrency))} in flight",
                flush=True,
            )
            echo_row, rows = asyncio.run(measure(args, echo.port, ledgers))
        finally:
            for child in children:
                child.stop()  # py-spy ends with its target
            for spy in spies:
                spy.wait(timeout=60)
            stores.stop_process(redis)
        doc = Results(bench="ledger", title="Economy Transfer over gRPC vs a bare echo")
        report(args, echo_row, rows, doc)
        doc.notes.append(
            f"{args.transfers:,} calls a round, {args.rounds} rounds; auth off; "
            "bench/ledger_kernel.py has its own document"
        )
        doc.write(args.json)
        if args.profile:
            report_profile(
                {
                    "bare grpc.aio echo": (Path(tmp) / "echo.txt", echo_row.calls),
                    "Transfer, Redis ledger": (Path(tmp) / "redis.txt", rows["Redis"].calls),
                }
            )
    kernel = BENCH / "ledger_kernel.py"
    if not args.no_kernel and kernel.exists():
        print(f"\n$ python {kernel.relative_to(BENCH.parent)}", flush=True)
        subprocess.run([sys.executable, str(kernel)], check=False)


if __name__ == "__main__":
    main()
