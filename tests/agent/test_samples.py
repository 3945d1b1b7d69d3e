"""The sample agents, served for real: snapshots, verdicts, reports, text, demos."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from meshwright.agent import SERVICE, AgentServicer
from meshwright.agent._struct import struct_to_dict
from meshwright.agent.samples import VERDICTS, analyst_agent, sysinfo_agent
from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import MeshServer, RemoteServiceClient
from meshwright.mesh.security import insecure_pipeline

pytestmark = pytest.mark.timeout(20)

COMPLETED = agent_pb2.TASK_STATE_COMPLETED


class Clients:
    def __init__(self, sysinfo: RemoteServiceClient, analyst: RemoteServiceClient) -> None:
        self.sysinfo = sysinfo
        self.analyst = analyst
        self._n = 0

    async def run(
        self,
        client: RemoteServiceClient,
        skill: str,
        input: dict[str, Any] | None = None,
        upstream: dict[str, dict[str, Any]] | None = None,
    ) -> agent_pb2.Task:
        self._n += 1
        request = agent_pb2.ExecuteTaskRequest(task_id=f"t{self._n}", skill=skill)
        request.input.update(input or {})
        for key, value in (upstream or {}).items():
            request.upstream_outputs[key].update(value)
        return (await client.call("ExecuteTask", request)).task

    async def output(self, client: RemoteServiceClient, skill: str, **kw: Any) -> dict[str, Any]:
        task = await self.run(client, skill, **kw)
        assert task.status.state == COMPLETED, task.status.message
        return struct_to_dict(task.output)


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    servers, channels = [], []
    for agent in (sysinfo_agent, analyst_agent):
        server = MeshServer(pipeline=insecure_pipeline(), port=0)
        server.add(AgentServicer(agent), SERVICE)
        await server.start()
        servers.append(server)
        channels.append(grpc.aio.insecure_channel(server.address))
    try:
        yield Clients(*(RemoteServiceClient(ch, SERVICE) for ch in channels))
    finally:
        for ch in channels:
            await ch.close()
        for server in servers:
            await server.stop(0)


def snapshot(load_1m: float, cpus: int, total: int = 1000, available: int = 800) -> dict[str, Any]:
    return {
        "kind": "system.snapshot",
        "hostname": "box",
        "cpu_count": cpus,
        "load": {"1m": load_1m, "5m": load_1m, "15m": load_1m},
        "memory": {"total_bytes": total, "available_bytes": available},
        "disk": {"path": "/", "total_bytes": 100, "used_percent": 50.0},
        "uptime_s": 90061,
    }


def test_prices() -> None:
    prices = {s.id: s.price for s in sysinfo_agent.card().skills}
    assert prices == {"system.snapshot": 3}
    prices = {s.id: s.price for s in analyst_agent.card().skills}
    assert prices == {
        "metrics.load": 2,
        "metrics.memory": 2,
        "report.compose": 5,
        "text.wordcount": 1,
        "text.upper": 1,
        "demo.sleep": 0,
        "demo.fail": 0,
    }


async def test_system_snapshot_reads_this_machine(clients: Clients) -> None:
    snap = await clients.output(clients.sysinfo, "system.snapshot")
    assert snap["kind"] == "system.snapshot"
    assert snap["hostname"] == socket.gethostname()
    assert snap["cpu_count"] == os.cpu_count()
    assert set(snap["load"]) == {"1m", "5m", "15m"}
    assert snap["memory"]["total_bytes"] > snap["memory"]["available_bytes"] > 0
    assert 0 < snap["memory"]["used_percent"] < 100
    assert snap["disk"]["path"] == "/" and snap["disk"]["total_bytes"] > 0
    assert snap["uptime_s"] > 0


@pytest.mark.parametrize(("load", "verdict"), [(0.2, "ok"), (1.6, "busy"), (3.0, "overloaded")])
async def test_load_verdicts_from_upstream(clients: Clients, load: float, verdict: str) -> None:
    out = await clients.output(
        clients.analyst, "metrics.load", upstream={"snap": snapshot(load, cpus=2)}
    )
    assert out["verdict"] == verdict
    assert out["load_per_core"] == pytest.approx(load / 2)
    assert out["hosts"][0]["hostname"] == "box"


async def test_memory_verdict_and_thresholds(clients: Clients) -> None:
    out = await clients.output(
        clients.analyst,
        "metrics.memory",
        upstream={"snap": snapshot(0.1, 1, total=1000, available=50)},
    )
    assert (out["verdict"], out["used_percent"]) == ("overloaded", 95.0)
    out = await clients.output(
        clients.analyst,
        "metrics.memory",
        input={"busy_at": 96, "overloaded_at": 99},
        upstream={"snap": snapshot(0.1, 1, total=1000, available=50)},
    )
    assert out["verdict"] == "ok"
    bad = await clients.run(
        clients.analyst, "metrics.memory", input={"busy_at": 50, "overloaded_at": 10}
    )
    assert bad.status.state == agent_pb2.TASK_STATE_REJECTED


async def test_metrics_alone_take_their_own_snapshot(clients: Clients) -> None:
    load = await clients.output(clients.analyst, "metrics.load")
    memory = await clients.output(clients.analyst, "metrics.memory")
    assert load["verdict"] in VERDICTS and memory["verdict"] in VERDICTS
    assert load["hosts"][0]["cpu_count"] == os.cpu_count()
    assert memory["hosts"][0]["hostname"] == socket.gethostname()


async def test_report_merges_upstream_across_agents(clients: Clients) -> None:
    snap = await clients.output(clients.sysinfo, "system.snapshot")
    load = await clients.output(
        clients.analyst, "metrics.load", upstream={"snapshot": snapshot(4.0, 2)}
    )
    task = await clients.run(
        clients.analyst,
        "report.compose",
        input={"title": "Fleet"},
        upstream={"snapshot": snap, "load": load, "notes": {"owner": "ops", "n": [1, 2]}},
    )
    assert task.status.state == COMPLETED
    out = struct_to_dict(task.output)
    md = out["markdown"]
    assert md.startswith("# Fleet\n")
    assert "**Overall: OVERLOADED**" in md
    assert "## load (metrics.load)" in md and "## notes" in md and "- owner: ops" in md
    assert f"| host | {socket.gethostname()} |" in md
    summary = out["summary"]
    assert summary["verdict"] == "overloaded"
    assert summary["verdicts"]["load"] == "overloaded"
    assert "memory" in summary["verdicts"]  # derived from the snapshot
    assert summary["hosts"] == sorted({socket.gethostname(), "box"})
    assert [a.name for a in task.artifacts] == ["report.md"]


async def test_report_on_metrics_only_as_in_the_demo_workflow(clients: Clients) -> None:
    snap = snapshot(0.2, cpus=2, total=1000, available=150)
    load = await clients.output(clients.analyst, "metrics.load", upstream={"snapshot": snap})
    memory = await clients.output(clients.analyst, "metrics.memory", upstream={"snapshot": snap})
    out = await clients.output(
        clients.analyst, "report.compose", upstream={"load": load, "memory": memory}
    )
    assert out["summary"]["verdicts"] == {"load": "ok", "memory": "busy"}
    assert out["summary"]["verdict"] == "busy"
    assert out["summary"]["hosts"] == ["box"]
    assert "hosts: box" in out["markdown"]
    assert "- box: memory used 85 % of 1000 B → busy" in out["markdown"]


async def test_report_alone(clients: Clients) -> None:
    out = await clients.output(clients.analyst, "report.compose")
    assert out["markdown"].startswith("# System report")
    assert set(out["summary"]["verdicts"]) == {"load", "memory"}


async def test_text_skills(clients: Clients) -> None:
    out = await clients.output(
        clients.analyst, "text.wordcount", input={"text": "To be, or not to be\nthat is it"}
    )
    assert (out["words"], out["lines"]) == (9, 2)
    assert out["top_words"][:2] == [["to", 2], ["be", 2]]
    out = await clients.output(clients.analyst, "text.upper", upstream={"a": {"text": "hi"}})
    assert out == {"text": "HI"}
    task = await clients.run(clients.analyst, "text.upper")
    assert task.status.state == agent_pb2.TASK_STATE_REJECTED
    assert "input.text" in task.status.message


async def test_demo_fail_fails_n_times_per_key(clients: Clients) -> None:
    states = [
        (await clients.run(clients.analyst, "demo.fail", input={"key": "k1", "fail_times": 2}))
        for _ in range(3)
    ]
    assert [t.status.state for t in states] == [
        agent_pb2.TASK_STATE_FAILED,
        agent_pb2.TASK_STATE_FAILED,
        COMPLETED,
    ]
    assert "planned failure 1 of 2" in states[0].status.message
    assert struct_to_dict(states[2].output) == {"key": "k1", "attempts": 3}
    other = await clients.run(clients.analyst, "demo.fail", input={"key": "k2", "fail_times": 0})
    assert other.status.state == COMPLETED


async def test_demo_sleep_streams_progress_and_cancels(clients: Clients) -> None:
    request = agent_pb2.StreamTaskRequest(task_id="nap", skill="demo.sleep")
    request.input.update({"seconds": 0.2})
    fractions = [
        item.status_update.progress
        async for item in clients.analyst.stream("StreamTask", request)
        if not item.final
    ]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)

    request = agent_pb2.StreamTaskRequest(task_id="long-nap", skill="demo.sleep")
    request.input.update({"seconds": 1000})  # capped at 30 s; cancelled well before
    items = []
    async for item in clients.analyst.stream("StreamTask", request):
        items.append(item)
        if len(items) == 1:
            await clients.analyst.call(
                "CancelTask", agent_pb2.CancelTaskRequest(task_id="long-nap")
            )
    assert items[-1].final
    assert items[-1].task.status.state == agent_pb2.TASK_STATE_CANCELED


def test_struct_round_trip() -> None:
    s = struct_pb2.Struct()
    s.update({"i": 3, "f": 2.5, "b": True, "n": None, "l": [1, "x", {"y": 2}], "d": {"z": []}})
    assert struct_to_dict(s) == {
        "i": 3,
        "f": 2.5,
        "b": True,
        "n": None,
        "l": [1, "x", {"y": 2}],
        "d": {"z": []},
    }
    assert isinstance(struct_to_dict(s)["i"], int)
