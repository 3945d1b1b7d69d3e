"""What a heartbeat costs a Python gRPC server as a unary call vs as a message on a stream.

The registry's CPU under heartbeat load is almost all gRPC's per-call cost
(bench/registry.py: a Heartbeat is 1.3-1.5 bare echo calls of server CPU). This
measures, in one run on this machine, a raw grpc.aio server (a child process, no
meshwright code) answering the same 60-byte message

1. as unary calls, 64 in flight;
2. as messages on 64 bidirectional streams, one in flight on each (write, read);

and prints requests/s and the server's CPU per call or message (from /proc).

    python bench/grpc_streams.py               # 20,000 of each
    python bench/grpc_streams.py --messages 2000
    python bench/grpc_streams.py --json PATH     # also the figures as JSON (make bench)
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stores  # noqa: E402 (bench/stores.py: stopping children)
from _results import Results, add_json_flag  # noqa: E402
from registry import cpu_s, machine  # noqa: E402

SERVICE = "bench.Beat"
PAYLOAD = b"x" * 60  # about a HeartbeatRequest
STREAMS = 64


def serve() -> None:
    """Unary ``Beat`` and bidirectional ``Beats`` (each message answered) until stdin closes."""

    async def beat(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def beats(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request

    async def main() -> None:
        server = grpc.aio.server()
        generic = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Beat": grpc.unary_unary_rpc_method_handler(beat),
                "Beats": grpc.stream_stream_rpc_method_handler(beats),
            },
        )
        server.add_generic_rpc_handlers((generic,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print("READY", port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop(0)

    asyncio.run(main())


async def measure(port: int, pid: int, messages: int) -> dict[str, tuple[float, float]]:
    """``{"unary"|"stream": (per second, server CPU us each)}``."""
    out: dict[str, tuple[float, float]] = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        unary = channel.unary_unary(f"/{SERVICE}/Beat")
        stream = channel.stream_stream(f"/{SERVICE}/Beats")
        each = messages // STREAMS

        async def calls(n: int) -> None:
            for _ in range(n):
                await unary(PAYLOAD, timeout=30)

        async def on_a_stream(n: int) -> None:
            call = stream(timeout=120)
            for _ in range(n):
                await call.write(PAYLOAD)
                await call.read()
            await call.done_writing()
            await call.code()

        for name, one in (("unary", calls), ("stream", on_a_stream)):
            await asyncio.gather(*(one(20) for _ in range(STREAMS)))  # warm up
            cpu0, t0 = cpu_s(pid), time.perf_counter()
            await asyncio.gather(*(one(each) for _ in range(STREAMS)))
            wall, cpu = time.perf_counter() - t0, cpu_s(pid) - cpu0
            done = each * STREAMS
            out[name] = (done / wall, cpu / done * 1e6)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    add_json_flag(p)
    args = p.parse_args()
    if args.serve:
        serve()
        return
    print(f"$ python bench/grpc_streams.py --messages {args.messages}")
    print(machine())
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        line = child.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError("the server did not start")
        figures = asyncio.run(measure(int(line[1]), child.pid, args.messages))
    finally:
        child.stdin.close()
        stores.stop_process(child)
    for name, (rate, cpu_us) in figures.items():
        label = "unary calls, 64 in flight" if name == "unary" else "messages, 64 streams"
        print(f"{label:<28} {rate:>8,.0f}/s   server CPU {cpu_us:>5.0f} us each")
    ratio = figures["stream"][1] / figures["unary"][1]
    print(f"a message on a stream costs the server {ratio:.2f}x a unary call")
    (u_rate, u_cpu), (s_rate, s_cpu) = figures["unary"], figures["stream"]
    doc = Results(bench="grpc_streams", title="A message on a stream vs a unary call")
    peer = f"unary calls, {STREAMS} in flight"
    doc.add(f"messages, {STREAMS} streams", "msg/s", s_rate, peer=peer, peer_value=u_rate)
    doc.add(
        "server CPU a stream message", "us", s_cpu, peer=f"{peer}: CPU a call", peer_value=u_cpu
    )
    doc.notes.append(
        f"{args.messages:,} of each; a raw grpc.aio server (no meshwright code), 60-byte messages"
    )
    doc.write(args.json)


if __name__ == "__main__":
    main()
