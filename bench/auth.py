"""Cost of the call pipeline: the same calls with authentication on and off, in one run.

A child process serves the economy (embedded node) and one agent, with auth on
(ES256 tokens, policies, ownership lookups) or off (``--insecure-no-auth``);
this process is the client. Measured per mode: an economy GetAccount by the
account's owner (a client token: verify + policy + ownership lookup) and an
agent ExecuteTask by the mesh (a service token), one call at a time (p50) and
16 in flight (requests/s). Modes alternate over ``--rounds`` so machine noise
hits both; the figures are medians over rounds and the ratio on/off.

    python bench/auth.py --calls 2000 --rounds 3    # --json PATH: the figures as JSON
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
from pathlib import Path
from typing import Any

from _results import Results, add_json_flag

from meshwright.agent.v1 import agent_pb2
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.auth import Role, generate_key_pair, issuer_from_file, write_secret
from meshwright.mesh.client import ChannelPool

ECONOMY = economy_pb2.DESCRIPTOR.services_by_name["EconomyService"]
AGENT = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
GOAL_THROUGHPUT = 0.9
"""Auth on keeps at least this share of the throughput off (BENCHMARKS.md: under 10%)."""
FIGURES = {
    "GetAccount p50 ms": ("GetAccount by its owner (client token), p50", "ms"),
    "GetAccount req/s x16": ("GetAccount, 16 in flight", "req/s"),
    "ExecuteTask p50 ms": ("agent ExecuteTask (service token), p50", "ms"),
    "ExecuteTask req/s x16": ("agent ExecuteTask, 16 in flight", "req/s"),
}


async def serve(mode: str, keys: Path) -> None:
    """The child: an economy node and an agent, until stdin closes."""
    from meshwright.agent import Agent
    from meshwright.mesh.config import MeshConfig
    from meshwright.mesh.security import Security
    from meshwright.node import start_node

    config = MeshConfig(
        grpc_port=0,
        http_port=0,
        grace_s=0,
        rate_limit_rps=0,
        insecure_no_auth=mode == "off",
        auth_public_key=str(keys / "key.pub.pem"),
        auth_private_key=str(keys / "key.pem"),
    )
    security = Security.from_config(config)
    node = await start_node(config, services=["economy"], gateway=False, security=security)
    assert node.economy is not None
    await node.economy.create_account("bench", owner="client:bench", initial_balance=0)
    agent = Agent("bench-echo")

    @agent.skill("text.echo", price=0)
    async def echo(input: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return dict(input)

    runtime = await agent.start(
        None,
        insecure_no_auth=mode == "off",
        auth_public_key=str(keys / "key.pub.pem"),
    )
    print(f"READY {node.server.port} {runtime.server.port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runtime.stop()
    await node.stop()


async def measure(
    port: int, agent_port: int, client_token: str, service_token: str, calls: int
) -> dict[str, float]:
    pool = ChannelPool()
    economy = pool.client(f"127.0.0.1:{port}", ECONOMY)
    agent = pool.client(f"127.0.0.1:{agent_port}", AGENT)
    client_md = [("authorization", f"Bearer {client_token}")]
    service_md = [("authorization", f"Bearer {service_token}")]
    get = economy_pb2.GetAccountRequest(account_id="bench")
    out: dict[str, float] = {}
    counter = 0

    async def get_account() -> None:
        await economy.call("GetAccount", get, metadata=client_md)

    async def execute() -> None:
        nonlocal counter
        counter += 1
        request = agent_pb2.ExecuteTaskRequest(task_id=f"t{counter}", skill="text.echo")
        await agent.call("ExecuteTask", request, metadata=service_md)

    try:
        for name, fn in (("GetAccount", get_account), ("ExecuteTask", execute)):
            for _ in range(50):  # warm up channels and caches
                await fn()
            latencies = []
            for _ in range(calls):
                t0 = time.perf_counter()
                await fn()
                latencies.append(time.perf_counter() - t0)
            out[f"{name} p50 ms"] = statistics.median(latencies) * 1000

            async def worker(n: int, fn: Any = fn) -> None:
                for _ in range(n):
                    await fn()

            t0 = time.perf_counter()
            await asyncio.gather(*(worker(calls // 16) for _ in range(16)))
            out[f"{name} req/s x16"] = (calls // 16) * 16 / (time.perf_counter() - t0)
    finally:
        await pool.close()
    return out


def start_child(mode: str, keys: Path) -> tuple[subprocess.Popen[str], int, int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode, "--keys", str(keys)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "MESHWRIGHT_LOG_LEVEL": "ERROR"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line or line[0] != "READY":
        proc.kill()
        raise SystemExit(f"the {mode} server did not start")
    return proc, int(line[1]), int(line[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--keys", help=argparse.SUPPRESS)
    add_json_flag(parser)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, Path(args.keys)))
        return
    keys = Path(tempfile.mkdtemp(prefix="meshwright-bench-"))
    private, public = generate_key_pair()
    write_secret(keys / "key.pem", private)
    write_secret(keys / "key.pub.pem", public)
    issuer = issuer_from_file(str(keys / "key.pem"))
    client_token = issuer.issue(Role.CLIENT, "bench")
    service_token = issuer.issue(Role.SERVICE, "mesh")
    results: dict[str, dict[str, list[float]]] = {"on": {}, "off": {}}
    for _ in range(args.rounds):
        for mode in ("off", "on"):
            proc, port, agent_port = start_child(mode, keys)
            try:
                figures = asyncio.run(
                    measure(port, agent_port, client_token, service_token, args.calls)
                )
            finally:
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait(timeout=10)
            for k, v in figures.items():
                results[mode].setdefault(k, []).append(v)
    print(f"{args.calls} calls per figure, {args.rounds} rounds, medians; on/off ratio")
    doc = Results(bench="auth", title="Auth on vs off, one run")
    for key in results["off"]:
        off = statistics.median(results["off"][key])
        on = statistics.median(results["on"][key])
        print(f"  {key:24s} auth off {off:9.2f}   auth on {on:9.2f}   on/off {on / off:5.3f}")
        metric, unit = FIGURES.get(key, (key, ""))
        throughput = unit == "req/s"
        doc.add(
            f"{metric}, auth on",
            unit,
            on,
            peer="auth off, same run",
            peer_value=off,
            goal=f">= {GOAL_THROUGHPUT}x off" if throughput else "",
            met=on / off >= GOAL_THROUGHPUT if throughput else None,
        )
    doc.notes.append(
        f"{args.calls:,} calls per figure, medians of {args.rounds} rounds; modes alternate"
    )
    doc.write(args.json)


if __name__ == "__main__":
    main()
