"""The ledger kernel on Redis against a bare Lua transfer, in one run.

Prints transfers/s, all measured in this one run on this machine against a
redis-server this script starts on a free port (no persistence):

a. a bare Lua transfer script: SET NX of an idempotency key, a balance check,
   two HINCRBY postings, one XADD of a stream entry: the least a transfer on
   Redis can do, called through redis-py from ``--concurrency`` coroutines;
b. ``RedisLedgerStore.commit`` of a TRANSFER-shaped plan (one FieldIs check on
   the ``params`` version, the transfer and its fee to the treasury as two
   moves (``--moves 3``: a third move, e.g. a reward cut), the entry, an
   idempotency key, read_back of both accounts) under the same concurrency;
   the goal is b / a >= 0.6;
c. ``MemoryLedgerStore.commit`` of the same plan (for scale: no I/O).

Rows a and b alternate over ``--rounds`` rounds (the machine drifts); the best
round of each counts and the median of the per-round ratios is shown beside it.

    python bench/ledger_kernel.py            # --transfers 5000 --rounds 5 --concurrency 50
    python bench/ledger_kernel.py --json PATH   # also the figures as JSON (make bench)
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis
from _results import Results, add_json_flag

from meshwright.economy.kernel import (
    ISSUANCE,
    Entry,
    FieldIs,
    Idem,
    Move,
    Plan,
    Put,
    account_record,
)
from meshwright.economy.memory_store import MemoryLedgerStore
from meshwright.economy.redis_store import RedisLedgerStore

GOAL = 0.6

BARE_TRANSFER = """
-- KEYS[1] idempotency key  KEYS[2] debit account hash  KEYS[3] credit account hash
-- KEYS[4] ledger stream    ARGV[1] amount  ARGV[2] entry  ARGV[3] idempotency ttl ms
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[3]) then
  return 0
end
local amount = tonumber(ARGV[1])
if tonumber(redis.call('HGET', KEYS[2], 'CREDIT') or '0') < amount then
  return -1
end
redis.call('HINCRBY', KEYS[2], 'CREDIT', -amount)
redis.call('HINCRBY', KEYS[3], 'CREDIT', amount)
redis.call('XADD', KEYS[4], '*', 'e', ARGV[2])
return 1
"""

FUNDS = 10**12


# -- redis-server ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(binary: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A throwaway redis-server: free port, no persistence, its files in ``workdir``."""
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
        + ["--save", "", "--appendonly", "no", "--daemonize", "no"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("redis-server exited at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.05)
    stop(proc)
    raise RuntimeError("redis-server did not answer PING within 10 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# -- the rows -------------------------------------------------------------------------


async def rate(
    op: Callable[[int, int], Awaitable[object]], transfers: int, concurrency: int
) -> float:
    """Transfers/s of ``transfers`` calls of ``op(worker, i)`` from ``concurrency`` coroutines."""
    each = transfers // concurrency

    async def worker(w: int) -> None:
        for i in range(each):
            await op(w, i)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return each * concurrency / (time.perf_counter() - t0)


def transfer_plan(w: int, n: str, moves: int) -> Plan:
    """What ``Economy.transfer`` hands the kernel: check, moves, entry, idem, read_back."""
    payer, payee = f"payer-{w}", f"payee-{w}"
    legs = [Move(payer, payee, "CREDIT", 10), Move(payer, "system:treasury", "CREDIT", 1)]
    if moves >= 3:
        legs.append(Move(payer, "system:rewards", "CREDIT", 1))
    return Plan(
        checks=[FieldIs("params", "version", "1")],
        moves=legs,
        entry=Entry(
            transaction_id=f"tx-{n}",
            kind="TRANSFER",
            time=time.time(),
            request_id=f"req-{n}",
            caller=f"client:{payer}",
        ),
        idem=Idem(key=f"client:{payer}:req-{n}", fingerprint="transfer:payee:10:CREDIT"),
        read_back=[account_record(payer), account_record(payee)],
    )


def setup_plan(workers: int) -> Plan:
    writes = [Put("params", {"version": "1"})]
    for name in (ISSUANCE, "system:treasury", "system:rewards"):
        writes.append(Put(account_record(name), {"kind": "SYSTEM", "CREDIT": "0"}))
    for w in range(workers):
        for name in (f"payer-{w}", f"payee-{w}"):
            writes.append(
                Put(
                    account_record(name),
                    {
                        "kind": "USER",
                        "owner": f"client:{name}",
                        "display_name": name,
                        "create_time": "1700000000.0",
                        "CREDIT": str(FUNDS),
                        "GOV": "0",
                        "escrowed": "0",
                        "streak": "0",
                        "vote_version": "0",
                    },
                )
            )
    return Plan(writes=writes)


async def measure(args: argparse.Namespace, url: str, doc: Results) -> None:
    """Run the rows, print the figures and add them to ``doc``."""
    conc = args.concurrency
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=20)
    bare_client = aioredis.Redis.from_pool(pool)
    bare = bare_client.register_script(BARE_TRANSFER)
    store = RedisLedgerStore.from_url(url, max_connections=64)
    memory = MemoryLedgerStore()
    await store.commit(setup_plan(conc))
    await memory.commit(setup_plan(conc))
    for w in range(conc):
        await bare_client.hset(f"bare:a:payer-{w}", mapping={"CREDIT": FUNDS})
    entry_json = (
        '{"transaction_id":"tx-0000000000","kind":"TRANSFER","time":1700000000.123,'
        '"request_id":"req-0000000000","caller":"client:payer-0","memo":"","refs":{},'
        '"postings":[["payer-0","CREDIT",-10],["payee-0","CREDIT",10]]}'
    )
    counter = [0]

    def next_id() -> str:
        counter[0] += 1
        return f"{counter[0]:010d}"

    async def op_bare(w: int, i: int) -> None:
        keys = [f"bare:k:{next_id()}", f"bare:a:payer-{w}", f"bare:a:payee-{w}", "bare:ledger"]
        if await bare(keys=keys, args=[10, entry_json, 86_400_000]) != 1:
            raise RuntimeError("the bare transfer refused")

    async def op_store(w: int, i: int) -> None:
        await store.commit(transfer_plan(w, next_id(), args.moves))

    async def op_memory(w: int, i: int) -> None:
        await memory.commit(transfer_plan(w, next_id(), args.moves))

    try:
        # Warm up: connections, scripts loaded, the interpreter's caches.
        await rate(op_bare, 1000, conc)
        await rate(op_store, 1000, conc)
        bare_rates: list[float] = []
        store_rates: list[float] = []
        for r in range(args.rounds):
            a = await rate(op_bare, args.transfers, conc)
            b = await rate(op_store, args.transfers, conc)
            bare_rates.append(a)
            store_rates.append(b)
            print(
                f"  round {r + 1}: a {a:8,.0f}/s   b {b:8,.0f}/s   b/a {b / a:.2f}",
                flush=True,
            )
        memory_rate = max([await rate(op_memory, args.transfers, conc) for _ in range(3)])
        info = await bare_client.info("commandstats")
        calls = {k: v for k, v in info.items() if k in ("cmdstat_evalsha",)}
    finally:
        await store.close()
        await bare_client.aclose()

    a_best, b_best = max(bare_rates), max(store_rates)
    ratios = [b / a for a, b in zip(bare_rates, store_rates, strict=True)]
    print()
    print(
        f"== Figures (one run; {args.transfers} transfers per round, {conc} coroutines,"
        f" best of {args.rounds} rounds; TRANSFER plan with {args.moves} moves) =="
    )
    print(f"  a. bare Lua transfer script            {a_best:9,.0f} transfers/s")
    print(f"  b. RedisLedgerStore.commit             {b_best:9,.0f} transfers/s")
    print(f"  c. MemoryLedgerStore.commit            {memory_rate:9,.0f} commits/s")
    verdict = "met" if b_best / a_best >= GOAL else "not met"
    print(
        f"  b / a (best rounds)                    {b_best / a_best:9.2f}"
        f"   (median of rounds {statistics.median(ratios):.2f})   goal >= {GOAL}   {verdict}"
    )
    for name, stats in calls.items():
        print(f"  server: {name} {stats}")
    peer = "a. bare Lua transfer script"
    median = statistics.median(ratios)
    doc.add(
        "b. RedisLedgerStore.commit",
        "transfers/s",
        b_best,
        peer=peer,
        peer_value=a_best,
        goal=f">= {GOAL}x",
        met=b_best / a_best >= GOAL,
        note=f"best of {args.rounds} rounds; median of per-round ratios {median:.2f}x",
    )
    doc.add(
        "c. MemoryLedgerStore.commit (no I/O, for scale)",
        "commits/s",
        memory_rate,
        peer=peer,
        peer_value=a_best,
    )
    doc.notes.append(
        f"{args.transfers:,} transfers a round, {conc} coroutines, TRANSFER plan with"
        f" {args.moves} moves"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--transfers", type=int, default=5000, help="transfers per round and row")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=50, help="coroutines calling at once")
    p.add_argument("--moves", type=int, default=2, choices=(2, 3), help="moves in the plan")
    p.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    add_json_flag(p)
    args = p.parse_args()
    doc = Results(bench="ledger_kernel", title="Ledger kernel on Redis vs a bare Lua transfer")
    with tempfile.TemporaryDirectory(prefix="meshwright-bench-ledger-") as tmp:
        proc, port = start_redis(args.redis_server, Path(tmp))
        try:
            asyncio.run(measure(args, f"redis://127.0.0.1:{port}/0", doc))
        finally:
            stop(proc)
    doc.write(args.json)


if __name__ == "__main__":
    main()
