"""The explicit single-process option: a shared HS256 secret instead of a key pair."""

from __future__ import annotations

from typing import Any

import pytest

from meshwright.agent import Agent
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.auth import Role, TokenIssuer
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.errors import Unauthenticated
from meshwright.mesh.security import Security
from meshwright.node import start_node
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import eventually

SECRET = "a shared secret of at least thirty-two bytes"


async def test_one_process_with_an_hs256_secret_runs_a_paid_workflow() -> None:
    config = MeshConfig(grpc_port=0, http_port=0, grace_s=0, auth_hs256_secret=SECRET)
    security = Security.from_config(config)
    assert security.token is not None  # it minted its own service token with the secret
    node = await start_node(config, gateway=False, security=security)
    issuer = TokenIssuer(SECRET.encode(), algorithm="HS256")
    agent = Agent("hs")

    @agent.skill("hs.echo", price=2)
    async def echo(input: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return dict(input)

    runtime = await agent.start(
        node.grpc_address,
        token=issuer.issue(Role.AGENT, "hs-agent"),
        auth_hs256_secret=SECRET,
        lease_ttl_s=5,
    )
    try:
        await runtime.wait_registered(10)
        admin = [("authorization", "Bearer " + issuer.issue(Role.ADMIN, "ops"))]
        client = [("authorization", "Bearer " + issuer.issue(Role.CLIENT, "ann"))]
        economy, workflows = (
            next(c for c in node.fronted if c.service.name == name)
            for name in ("EconomyService", "WorkflowService")
        )
        await economy.call(
            "CreateAccount",
            economy_pb2.CreateAccountRequest(
                account_id="ann", owner="client:ann", initial_balance=5
            ),
            metadata=admin,
        )
        created = await workflows.call(
            "CreateWorkflow",
            workflow_pb2.CreateWorkflowRequest(
                definition=workflow_pb2.WorkflowDefinition(
                    budget=2,
                    payer_account_id="ann",
                    tasks=[workflow_pb2.TaskSpec(id="t", skill="hs.echo")],
                )
            ),
            metadata=client,
        )
        request = workflow_pb2.GetWorkflowRequest(workflow_id=created.workflow.workflow_id)

        async def succeeded() -> bool:
            reply = await workflows.call("GetWorkflow", request, metadata=client)
            return reply.workflow.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED

        await eventually(succeeded)
        paid = await economy.call(
            "GetAccount", economy_pb2.GetAccountRequest(account_id="hs-agent"), metadata=admin
        )
        assert paid.account.balance == 2
        # A token signed with another secret is refused.
        stranger = TokenIssuer(b"another secret of thirty-two bytes!!", algorithm="HS256")
        with pytest.raises(Unauthenticated):
            await workflows.call(
                "GetWorkflow",
                request,
                metadata=[("authorization", "Bearer " + stranger.issue(Role.ADMIN, "x"))],
            )
    finally:
        await runtime.stop()
        await node.stop()
