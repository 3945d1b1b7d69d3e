"""What ``meshwright up --demo`` does once the mesh is up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape

from meshwright._console import follow, workflow_table
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.client import ServiceClient
from meshwright.mesh.errors import AlreadyExists
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.v1 import workflow_pb2

DEMO_ACCOUNT = "demo"
DEMO_FUNDS = 1_000


async def wait_for_agents(
    registry: ServiceClient, count: int, *, timeout_s: float = 30.0
) -> list[registry_pb2.Agent]:
    """The active agents once at least ``count`` are registered."""
    deadline = time.monotonic() + timeout_s
    while True:
        page = await registry.call(
            "ListAgents",
            registry_pb2.ListAgentsRequest(state=registry_pb2.AGENT_STATE_ACTIVE, page_size=1000),
        )
        if len(page.agents) >= count:
            return list(page.agents)
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(page.agents)} of {count} agents registered")
        await asyncio.sleep(0.1)


async def run_demo(clients: Mapping[str, ServiceClient], console: Console) -> bool:
    """Fund the demo account, run the demo workflow live, show the bill."""
    from meshwright.cli import demo_definition

    economy, workflows = clients["economy"], clients["workflow"]
    try:
        await economy.call(
            "CreateAccount",
            economy_pb2.CreateAccountRequest(
                account_id=DEMO_ACCOUNT, display_name="Demo payer", initial_balance=DEMO_FUNDS
            ),
        )
    except AlreadyExists:
        pass
    definition = demo_definition()
    console.rule(f"demo workflow [bold]{definition.name}[/bold], budget {definition.budget}")
    reply = await workflows.call(
        "CreateWorkflow", workflow_pb2.CreateWorkflowRequest(definition=definition)
    )
    final = await follow(workflows, reply.workflow.workflow_id, console)
    console.print(workflow_table(final))
    report = next((t for t in final.tasks if t.task_id == "report"), None)
    if report is not None and "markdown" in report.output.fields:
        console.print(Markdown(report.output.fields["markdown"].string_value))
    payer = await economy.call("GetAccount", economy_pb2.GetAccountRequest(account_id=DEMO_ACCOUNT))
    paid = {t.agent_id: 0 for t in final.tasks if t.agent_id}
    for t in final.tasks:
        if t.agent_id:
            paid[t.agent_id] += t.cost
    for agent_id, amount in sorted(paid.items()):
        acct = await economy.call("GetAccount", economy_pb2.GetAccountRequest(account_id=agent_id))
        console.print(escape(f"  paid {amount:>4} to {agent_id} (balance {acct.account.balance})"))
    console.print(
        f"  demo account balance {payer.account.balance} "
        f"(spent {final.spent} of {definition.budget}, rest refunded)"
    )
    return final.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED
