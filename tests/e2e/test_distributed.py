"""Distributed mode: registry+economy in one process, workflow in another, agents apart.

The same services, split across processes with `meshwright serve`, reach each
other over gRPC with no code change.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from google.protobuf import json_format

from meshwright.agent.supervisor import AgentSupervisor
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.client import ChannelPool
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.v1 import workflow_pb2
from tests.e2e._proc import serve
from tests.e2e.conftest import wait_active
from tests.support_auth import test_keys

W = workflow_pb2


async def stop(proc: asyncio.subprocess.Process) -> int:
    proc.terminate()
    await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0


@pytest.fixture
async def split_mesh() -> AsyncIterator[tuple[str, str]]:
    """Two processes with auth on, as deployed: every process verifies with the public key;
    the workflow service calls the others with the service token it is given (env)."""
    keys = test_keys()
    public = str(keys.public_key_file)
    core, core_addr = await serve(
        "--services", "registry,economy", "--auth-public-key", public, env={}
    )
    flows = None
    try:
        flows, flows_addr = await serve(
            "--services",
            "workflow",
            "--registry-target",
            core_addr,
            "--economy-target",
            core_addr,
            "--auth-public-key",
            public,
            env={"MESHWRIGHT_TOKEN": keys.token("service", "workflow")},
        )
        yield core_addr, flows_addr
    finally:
        if flows is not None:
            assert await stop(flows) == 0
        assert await stop(core) == 0


async def test_a_workflow_runs_across_processes(split_mesh: tuple[str, str]) -> None:
    core_addr, flows_addr = split_mesh
    keys = test_keys()
    admin = ChannelPool(token=keys.token("admin", "ops"))
    pool = ChannelPool(token=keys.token("client", "payer"))
    try:
        registry = pool.client(
            core_addr, registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
        )
        economy = pool.client(core_addr, economy_pb2.DESCRIPTOR.services_by_name["EconomyService"])
        flows = pool.client(flows_addr, W.DESCRIPTOR.services_by_name["WorkflowService"])
        async with AgentSupervisor(
            core_addr, issuer=keys.issuer(), auth_public_key=str(keys.public_key_file)
        ) as sup:
            await sup.start("meshwright.agent.samples:sysinfo_agent")
            await sup.start("meshwright.agent.samples:analyst_agent")
            await wait_active(registry, 2)
            # The admin mints the client's funds; the client runs and pays.
            await admin.client(
                core_addr, economy_pb2.DESCRIPTOR.services_by_name["EconomyService"]
            ).call(
                "CreateAccount",
                economy_pb2.CreateAccountRequest(
                    account_id="split-payer", initial_balance=30, owner="client:payer"
                ),
            )
            d = json_format.ParseDict(
                {
                    "budget": 30,
                    "payerAccountId": "split-payer",
                    "tasks": [
                        {"id": "snap", "skill": "system.snapshot"},
                        {"id": "load", "skill": "metrics.load", "dependsOn": ["snap"]},
                    ],
                },
                W.WorkflowDefinition(),
            )
            reply = await flows.call("CreateWorkflow", W.CreateWorkflowRequest(definition=d))
            wf_id = reply.workflow.workflow_id
            events = [
                r.event
                async for r in flows.stream(
                    "WatchWorkflow", W.WatchWorkflowRequest(workflow_id=wf_id)
                )
            ]
            assert events[-1].type == W.WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED
            assert events[-1].amount == 30 - 5
            got = await economy.call(
                "GetAccount", economy_pb2.GetAccountRequest(account_id="split-payer")
            )
            assert got.account.balance == 25
    finally:
        await pool.close()
        await admin.close()
