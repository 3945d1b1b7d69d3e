"""The `meshwright` command as a user runs it."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from meshwright.economy import ECONOMY_SERVICE, Economy, EconomyServicer, MemoryLedgerStore
from meshwright.economy.kernel import Plan, Put, account_record
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh import MeshServer
from meshwright.mesh.client import ChannelPool
from meshwright.mesh.security import insecure_pipeline
from meshwright.workflow.v1 import workflow_pb2 as W
from tests.conftest import free_port
from tests.e2e._proc import Running, cli_env, meshwright
from tests.e2e.conftest import Mesh

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A private config dir per test: `up` writes its dev keys there, not in ~/.config."""
    return cli_env(tmp_path / "config")


async def test_up_stops_cleanly_on_sigterm(env: dict[str, str]) -> None:
    up = await Running.start("up", "--grpc-port", "0", "--http-port", "0", env=env)
    try:
        await up.wait_for("ready; Ctrl-C stops the mesh")
        grpc_address = (await up.wait_for(r"gRPC\s+(127\.0\.0\.1:\d+)")).group(1)
        # A workflow still running at shutdown is cancelled, not waited for.
        token = (Path(env["MESHWRIGHT_CONFIG_DIR"]) / "client.token").read_text().strip()
        pool = ChannelPool(token=token)
        try:
            wfs = pool.client(grpc_address, W.DESCRIPTOR.services_by_name["WorkflowService"])
            d = W.WorkflowDefinition()
            task = d.tasks.add(id="long", skill="demo.sleep")
            task.input["seconds"] = 20
            await wfs.call("CreateWorkflow", W.CreateWorkflowRequest(definition=d))
        finally:
            await pool.close()
        started = time.monotonic()
    finally:
        rc = await up.stop()
    assert rc == 0, up.output
    assert "stopping" in up.output
    assert time.monotonic() - started < 15  # did not wait out the 20 s task


async def test_workflow_run_follow_against_a_running_mesh(mesh: Mesh, env: dict[str, str]) -> None:
    await mesh.economy.call(
        "CreateAccount", economy_pb2.CreateAccountRequest(account_id="demo", initial_balance=50)
    )
    target = mesh.node.grpc_address
    rc, out = await meshwright(
        "workflow", "--target", target, "run", "demo", "--follow", "--budget", "20", env=env
    )
    assert rc == 0, out
    assert "WORKFLOW_SUCCEEDED" in out
    wf_id = re.search(r"created (wf-\w+)", out)
    assert wf_id, out
    rc, out = await meshwright(
        "workflow", "get", wf_id.group(1), "--json", "--target", target, env=env
    )
    assert rc == 0 and '"WORKFLOW_STATE_SUCCEEDED"' in out, out
    rc, out = await meshwright("agents", "--target", target, env=env)
    assert rc == 0 and "sysinfo" in out and "ACTIVE" in out, out
    assert "[system.snapshot]" in out, out  # user text is not eaten as markup
    # Replicas: a dead one first, the call still lands on the live one.
    replicas = f"127.0.0.1:{free_port()},{target}"
    rc, out = await meshwright("agents", "--target", replicas, env=env)
    assert rc == 0 and "sysinfo" in out, out
    rc, out = await meshwright("agents", "--target", target, "--state", "stopped", env=env)
    assert rc == 0 and "sysinfo" not in out, out  # the filter reaches the registry
    rc, out = await meshwright("agents", "--target", target, "--state", "sleeping", env=env)
    assert rc == 2 and "'sleeping' is not one of" in out, out
    rc, out = await meshwright("workflow", "--target", target, "get", "wf-nope", env=env)
    assert rc == 1 and "WORKFLOW_NOT_FOUND" in out, out


async def test_ledger_audit_exits_1_and_names_what_does_not_add_up(env: dict[str, str]) -> None:
    store = MemoryLedgerStore()
    economy = Economy(store)
    server = MeshServer(pipeline=insecure_pipeline(), port=0)
    server.add(EconomyServicer(economy), ECONOMY_SERVICE)
    await server.start()
    try:
        await economy.create_account("alice", initial_balance=100)
        rc, out = await meshwright("ledger", "audit", "--target", server.address, env=env)
        assert rc == 0 and "ledger OK: 1 transactions" in out, out
        # A balance written past the ledger (a bad restore, a hand edit): the replay disagrees.
        await store.commit(Plan(writes=[Put(account_record("alice"), {"CREDIT": "130"})]))
        rc, out = await meshwright("ledger", "audit", "--target", server.address, env=env)
        assert rc == 1, out
        assert "ledger MISMATCHED: 1 transactions" in out, out
        assert "CREDIT issued 100  held 130" in out, out
        assert "mismatch alice CREDIT: stored 130, replayed 100" in out, out
    finally:
        await server.stop(0)


async def test_up_takes_the_economys_starting_parameters(
    env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "params.json"
    bad.write_text('{"transfer_fee_bps": 25000}')
    rc, out = await meshwright(
        "up", "--grpc-port", "0", "--http-port", "0", "--agents", "0",
        "--economy-params", str(bad), env=env,
    )  # fmt: skip
    assert rc == 2, out
    assert "transfer_fee_bps: must be 0..10000 basis points" in out, out
    good = tmp_path / "good.json"
    good.write_text('{"transfer_fee_bps": 25}')
    up = await Running.start(
        "up", "--grpc-port", "0", "--http-port", "0", "--agents", "0",
        "--economy-params", str(good), env=env,
    )  # fmt: skip
    try:
        await up.wait_for("ready; Ctrl-C stops the mesh")
        grpc_address = (await up.wait_for(r"gRPC\s+(127\.0\.0\.1:\d+)")).group(1)
        rc, out = await meshwright("ledger", "params", "--target", grpc_address, env=env)
        assert rc == 0 and '"transferFeeBps": 25' in out, out
    finally:
        assert await up.stop() == 0, up.output


async def test_up_keeps_the_demos_trace_for_the_cli_and_the_gateway(env: dict[str, str]) -> None:
    """`meshwright up --demo`, then `meshwright workflow trace <id>` draws the run's
    waterfall from the spans `up` kept; GET /v1/workflows/{id}/trace serves the same;
    each sample agent names its /metrics, which counts the tasks it ran."""
    import httpx

    up = await Running.start("up", "--grpc-port", "0", "--http-port", "0", "--demo", env=env)
    try:
        await up.wait_for("ready; Ctrl-C stops the mesh", timeout=90)
        grpc_address = (await up.wait_for(r"gRPC\s+(127\.0\.0\.1:\d+)")).group(1)
        http_url = (await up.wait_for(r"REST\s+(http://\S+)")).group(1)
        agent_metrics = re.findall(r"; metrics\s+(http://\S+/metrics)", up.output)
        assert len(agent_metrics) == 2, up.output
        rc, out = await meshwright("workflow", "list", "--target", grpc_address, env=env)
        assert rc == 0, out
        wf_id = re.search(r"(wf-\S+)\s+SUCCEEDED", out).group(1)  # type: ignore[union-attr]
        rc, out = await meshwright("workflow", "trace", wf_id, "--target", grpc_address, env=env)
        assert rc == 0, out
        assert re.search(r"trace [0-9a-f]{32} · .* · 4 tasks \(0 retries\) · 4 payments", out), out
        for task in ("snapshot", "load", "memory", "report"):
            assert f"task {task}" in out
        assert "economy CaptureEscrow" in out and "workflow end" in out
        token = (Path(env["MESHWRIGHT_CONFIG_DIR"]) / "client.token").read_text().strip()
        async with httpx.AsyncClient(
            base_url=http_url, headers={"authorization": f"Bearer {token}"}, timeout=10
        ) as http:
            body = (await http.get(f"/v1/workflows/{wf_id}/trace")).json()
            names = {s["name"] for s in body["spans"]}
            assert {"task snapshot", "task report", "workflow end"} <= names
            assert len(body["traceId"]) == 32
            served = 0.0
            for url in agent_metrics:
                text = (await http.get(url)).text
                served += sum(
                    float(line.split()[-1])
                    for line in text.splitlines()
                    if line.startswith("meshwright_agent_task_duration_seconds_count")
                )
            assert served == 4  # the demo's four tasks, each run by one of the agents
    finally:
        rc = await up.stop()
    assert rc == 0, up.output
