"""Terminal rendering shared by the CLI commands (rich)."""

from __future__ import annotations

from google.protobuf import json_format
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from meshwright.mesh.client import ServiceClient
from meshwright.workflow.v1 import workflow_pb2

W = workflow_pb2

_STYLE = {
    W.WORKFLOW_EVENT_TYPE_WORKFLOW_CREATED: "bold cyan",
    W.WORKFLOW_EVENT_TYPE_TASK_STARTED: "yellow",
    W.WORKFLOW_EVENT_TYPE_TASK_SUCCEEDED: "green",
    W.WORKFLOW_EVENT_TYPE_TASK_RETRYING: "magenta",
    W.WORKFLOW_EVENT_TYPE_TASK_PROGRESS: "blue",
    W.WORKFLOW_EVENT_TYPE_TASK_FAILED: "bold red",
    W.WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED: "bold green",
    W.WORKFLOW_EVENT_TYPE_WORKFLOW_FAILED: "bold red",
    W.WORKFLOW_EVENT_TYPE_WORKFLOW_CANCELLED: "bold red",
}


def event_line(event: workflow_pb2.WorkflowEvent) -> str:
    """One event as a line of rich markup."""
    kind = W.WorkflowEventType.Name(event.type).removeprefix("WORKFLOW_EVENT_TYPE_")
    style = _STYLE.get(event.type, "white")
    parts = [f"[dim]#{event.sequence:<4}[/dim]", f"[{style}]{kind:<18}[/{style}]"]
    if event.task_id:
        parts.append(f"[bold]{escape(event.task_id)}[/bold]")
    if event.agent_id:
        parts.append(f"on {escape(event.agent_id)}")
    if event.attempt > 1 or event.type == W.WORKFLOW_EVENT_TYPE_TASK_RETRYING:
        parts.append(f"(attempt {event.attempt})")
    if event.type == W.WORKFLOW_EVENT_TYPE_TASK_PROGRESS and event.progress:
        parts.append(f"{event.progress:>4.0%}")
    if event.type == W.WORKFLOW_EVENT_TYPE_TASK_SUCCEEDED:
        parts.append(f"paid {event.amount}")
        keys = ", ".join(sorted(event.output.fields))
        if keys:
            parts.append(f"[dim]output: {escape(keys)}[/dim]")
    elif event.message:
        parts.append(f"[dim]{escape(event.message)}[/dim]")
    return " ".join(parts)


async def follow(
    workflows: ServiceClient, workflow_id: str, console: Console, *, after: int = 0
) -> workflow_pb2.Workflow:
    """Print a workflow's events until it ends; return its final state."""
    request = W.WatchWorkflowRequest(workflow_id=workflow_id, after_sequence=after)
    async for reply in workflows.stream("WatchWorkflow", request):
        console.print(event_line(reply.event), highlight=False)
    got = await workflows.call("GetWorkflow", W.GetWorkflowRequest(workflow_id=workflow_id))
    wf: workflow_pb2.Workflow = got.workflow
    return wf


def workflow_table(wf: workflow_pb2.Workflow) -> Table:
    """A workflow's tasks as a table."""
    state = W.WorkflowState.Name(wf.state).removeprefix("WORKFLOW_STATE_")
    table = Table(title=escape(f"{wf.workflow_id} {wf.name} — {state}, spent {wf.spent}"))
    for col in ("task", "skill", "state", "agent", "attempts", "cost"):
        table.add_column(col)
    for tr in wf.tasks:
        table.add_row(
            escape(tr.task_id),
            escape(tr.skill),
            W.TaskRunState.Name(tr.state).removeprefix("TASK_RUN_STATE_"),
            tr.agent_id,
            str(tr.attempts),
            str(tr.cost),
        )
    return table


def to_json(message: object) -> str:
    """A message as indented proto3 JSON."""
    return json_format.MessageToJson(message, indent=2)  # type: ignore[arg-type]
