"""What ``meshwright up --demo`` does once the mesh is up.

The demo follows the real flow of a secured mesh: the admin mints the payer's
funds into an account owned by the client principal, and the client (with its
own token, through the same pipeline as any remote caller) runs and pays for
the workflow.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class DemoClients:
    """Who does what in the demo."""

    admin_economy: ServiceClient
    """Economy as the admin: mints the payer's funds, reads the agents' pay, audits."""
    economy: ServiceClient
    """Economy as the client that owns the payer account."""
    workflows: ServiceClient
    """Workflow service as that client."""
    owner: str
    """The client's principal (``client:<sub>``) that owns the payer account; empty with auth
    off."""


async def run_demo(clients: DemoClients, console: Console) -> bool:
    """Fund the demo account, run the demo workflow live, show the bill and the audit."""
    from meshwright.cli import audit_lines, demo_definition

    economy, workflows = clients.economy, clients.workflows
    try:
        await clients.admin_economy.call(
            "CreateAccount",
            economy_pb2.CreateAccountRequest(
                account_id=DEMO_ACCOUNT,
                display_name="Demo payer",
                initial_balance=DEMO_FUNDS,
                owner=clients.owner,
            ),
        )
        owned = f", owned by {clients.owner}" if clients.owner else ""
        console.print(escape(f"  admin minted {DEMO_FUNDS} into account {DEMO_ACCOUNT}{owned}"))
    except AlreadyExists:
        pass
    definition = demo_definition()
    who = f" as {clients.owner}" if clients.owner else ""
    console.rule(
        f"demo workflow [bold]{escape(definition.name)}[/bold], budget {definition.budget}"
        f"{escape(who)}"
    )
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
        acct = await clients.admin_economy.call(
            "GetAccount", economy_pb2.GetAccountRequest(account_id=agent_id)
        )
        console.print(escape(f"  paid {amount:>4} to {agent_id} (balance {acct.account.balance})"))
    console.print(
        f"  demo account balance {payer.account.balance} "
        f"(spent {final.spent} of {definition.budget}, rest refunded)"
    )
    # Every move above is a balanced ledger transaction: replaying them gives the balances.
    audit = await clients.admin_economy.call("AuditLedger", economy_pb2.AuditLedgerRequest())
    for line in audit_lines(audit):
        console.print(escape(f"  {line}"))
    return final.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED and audit.ok
