"""The `meshwright` command as a user runs it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time

import pytest

from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.client import ChannelPool
from meshwright.workflow.v1 import workflow_pb2 as W
from tests.e2e.conftest import Mesh

pytestmark = pytest.mark.asyncio(loop_scope="module")
ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}


async def meshwright(*args: str, timeout: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meshwright",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=ENV,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode()


async def test_up_demo_runs_the_diamond_on_agent_processes() -> None:
    rc, out = await meshwright(
        "up", "--demo", "--exit-after-demo", "--grpc-port", "0", "--http-port", "0"
    )
    assert rc == 0, out
    assert re.search(r"agent sysinfo-\w+ at 127\.0\.0\.1:\d+: system\.snapshot \(3\)", out), out
    for task in ("snapshot", "load", "memory", "report"):
        assert re.search(rf"TASK_SUCCEEDED\s+{task} on \S+ paid", out), out
    assert "WORKFLOW_SUCCEEDED spent 12, refunded 88" in out
    assert "demo account balance 988" in out


async def test_up_stops_cleanly_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meshwright",
        "up",
        "--grpc-port",
        "0",
        "--http-port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=ENV,
    )
    assert proc.stdout is not None
    seen = []
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line, "".join(seen)
        seen.append(line)
        if "ready; Ctrl-C stops the mesh" in line:
            break
    # A workflow still running at shutdown is cancelled, not waited for.
    grpc_address = re.search(r"gRPC\s+(127\.0\.0\.1:\d+)", "".join(seen))
    assert grpc_address, seen
    pool = ChannelPool()
    try:
        wfs = pool.client(grpc_address.group(1), W.DESCRIPTOR.services_by_name["WorkflowService"])
        d = W.WorkflowDefinition()
        task = d.tasks.add(id="long", skill="demo.sleep")
        task.input["seconds"] = 20
        await wfs.call("CreateWorkflow", W.CreateWorkflowRequest(definition=d))
    finally:
        await pool.close()
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, "".join(seen) + rest.decode()
    assert "stopping" in rest.decode()
    assert time.monotonic() - started < 15  # did not wait out the 20 s task


async def test_workflow_run_follow_against_a_running_mesh(mesh: Mesh) -> None:
    await mesh.economy.call(
        "CreateAccount", economy_pb2.CreateAccountRequest(account_id="demo", initial_balance=50)
    )
    target = mesh.node.grpc_address
    rc, out = await meshwright(
        "workflow", "--target", target, "run", "demo", "--follow", "--budget", "20"
    )
    assert rc == 0, out
    assert "WORKFLOW_SUCCEEDED" in out
    wf_id = re.search(r"created (wf-\w+)", out)
    assert wf_id, out
    rc, out = await meshwright("workflow", "--target", target, "get", wf_id.group(1), "--json")
    assert rc == 0 and '"WORKFLOW_STATE_SUCCEEDED"' in out, out
    rc, out = await meshwright("agents", "--target", target)
    assert rc == 0 and "sysinfo" in out and "ACTIVE" in out, out
    assert "[system.snapshot]" in out, out  # user text is not eaten as markup
    rc, out = await meshwright("workflow", "--target", target, "get", "wf-nope")
    assert rc == 1 and "WORKFLOW_NOT_FOUND" in out, out
