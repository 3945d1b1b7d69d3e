"""Test services for the gateway: an AgentService and a WorkflowService, SSE parsing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
from google.protobuf import struct_pb2

from meshwright.agent.v1 import agent_pb2
from meshwright.gateway import GatewayHandle
from meshwright.mesh import (
    FieldViolation,
    InvalidArgument,
    MeshServer,
    NotFound,
    ResourceExhausted,
)
from meshwright.mesh.context import current_call
from meshwright.mesh.errors import FailedPrecondition
from meshwright.workflow.v1 import workflow_pb2

AGENT = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
WORKFLOW = workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"]
CORS_ORIGIN = "http://dashboard.example"
HEARTBEAT_S = 0.2


class LeaseMismatch(FailedPrecondition):
    reason = "TEST_GATEWAY_LEASE_MISMATCH"


class RestAgent:
    """An AgentService whose skills exercise the gateway's paths."""

    def __init__(self) -> None:
        self.stream_closed: list[str] = []
        self.metadata: dict[str, str] = {}
        self.executed: list[str] = []
        """task_id of every ExecuteTask that reached the servicer."""

    async def GetAgentCard(self, request: Any) -> agent_pb2.GetAgentCardResponse:
        card = agent_pb2.AgentCard(
            name="rest-agent",
            skills=[agent_pb2.AgentSkill(id="text.echo", name="Echo", price=3)],
            capabilities=agent_pb2.AgentCapabilities(streaming=True),
        )
        return agent_pb2.GetAgentCardResponse(card=card)

    async def ExecuteTask(self, request: Any) -> agent_pb2.ExecuteTaskResponse:
        self.executed.append(request.task_id)
        if not request.task_id:
            raise InvalidArgument(
                "bad request",
                violations=[FieldViolation("task_id", "is required")],
            )
        if request.skill == "missing":
            raise NotFound(f"no skill {request.skill}")
        if request.skill == "busy":
            raise ResourceExhausted("agent at capacity")
        if request.skill == "throttled":
            raise ResourceExhausted("slow down", retry_after_s=float(request.input["after_s"]))
        if request.skill == "lease":
            raise LeaseMismatch("lease changed", metadata={"agent_id": "a1"})
        if request.skill == "crash":
            raise RuntimeError("secret internal detail")
        call = current_call()
        assert call is not None
        self.metadata = dict(call.metadata)
        task = agent_pb2.Task(
            task_id=request.task_id,
            skill=request.skill,
            context_id=request.context_id,
            status=agent_pb2.TaskStatus(state=agent_pb2.TASK_STATE_COMPLETED),
            output=request.input,
        )
        return agent_pb2.ExecuteTaskResponse(task=task)

    async def StreamTask(self, request: Any) -> AsyncIterator[Any]:
        try:
            if request.skill == "fail-first":
                raise NotFound(f"no skill {request.skill}")
            n = int(request.input["n"]) if "n" in request.input else 3
            for i in range(n):
                yield agent_pb2.StreamTaskResponse(
                    status_update=agent_pb2.TaskStatus(
                        state=agent_pb2.TASK_STATE_WORKING, message=str(i), progress=i / n
                    )
                )
                if request.skill == "fail-mid" and i == 1:
                    raise NotFound("lost the task")
            if request.skill == "hang":
                await asyncio.Event().wait()
            yield agent_pb2.StreamTaskResponse(
                final=True,
                task=agent_pb2.Task(
                    task_id=request.task_id,
                    status=agent_pb2.TaskStatus(state=agent_pb2.TASK_STATE_COMPLETED),
                ),
            )
        finally:
            self.stream_closed.append(request.task_id)

    async def CancelTask(self, request: Any) -> agent_pb2.CancelTaskResponse:
        if request.task_id == "unknown":
            raise NotFound(f"no task {request.task_id}")
        task = agent_pb2.Task(
            task_id=request.task_id,
            status=agent_pb2.TaskStatus(state=agent_pb2.TASK_STATE_CANCELED),
        )
        return agent_pb2.CancelTaskResponse(task=task)


class Workflows:
    """A WorkflowService stand-in: echoes requests so tests see how they were built."""

    async def CreateWorkflow(self, request: Any) -> Any:
        wf = workflow_pb2.Workflow(
            workflow_id=request.workflow_id or "wf-1",
            name=request.definition.name,
            definition=request.definition,
            state=workflow_pb2.WORKFLOW_STATE_PENDING,
        )
        return workflow_pb2.CreateWorkflowResponse(workflow=wf)

    async def GetWorkflow(self, request: Any) -> Any:
        if request.workflow_id != "wf-1":
            raise NotFound(f"no workflow {request.workflow_id}")
        return workflow_pb2.GetWorkflowResponse(
            workflow=workflow_pb2.Workflow(workflow_id="wf-1", name="first")
        )

    async def GetWorkflowTrace(self, request: Any) -> Any:
        return workflow_pb2.GetWorkflowTraceResponse(trace_id="ab" * 16)

    async def ListWorkflows(self, request: Any) -> Any:
        found = [
            workflow_pb2.Workflow(workflow_id=f"w{i}", state=request.state)
            for i in range(request.page_size)
        ]
        return workflow_pb2.ListWorkflowsResponse(
            workflows=found, next_page_token=request.page_token + "+"
        )

    async def CancelWorkflow(self, request: Any) -> Any:
        wf = workflow_pb2.Workflow(
            workflow_id=request.workflow_id,
            state=workflow_pb2.WORKFLOW_STATE_CANCELLED,
            error=request.reason,
        )
        return workflow_pb2.CancelWorkflowResponse(workflow=wf)

    async def WatchWorkflow(self, request: Any) -> AsyncIterator[Any]:
        if request.workflow_id == "missing":
            raise NotFound(f"no workflow {request.workflow_id}")
        for seq in range(request.after_sequence + 1, 6):
            yield workflow_pb2.WatchWorkflowResponse(
                event=workflow_pb2.WorkflowEvent(
                    sequence=seq, workflow_id=request.workflow_id, message=f"event {seq}"
                )
            )

    async def CreateTemplate(self, request: Any) -> Any:
        return workflow_pb2.CreateTemplateResponse(template=request.template)

    async def ListTemplates(self, request: Any) -> Any:
        return workflow_pb2.ListTemplatesResponse()


@dataclass
class Stack:
    """What the tests talk to."""

    http: httpx.AsyncClient
    gateway: GatewayHandle
    server: MeshServer
    agent: RestAgent
    channel: grpc.aio.Channel
    extras: dict[str, Any] = field(default_factory=dict)


def struct(**values: Any) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


@dataclass
class Event:
    """One parsed Server-Sent Event."""

    data: Any
    id: str | None = None
    event: str | None = None


def parse_sse(text: str) -> tuple[list[Event], int]:
    """Events of an SSE body, and how many comment (heartbeat) lines it had."""
    events: list[Event] = []
    comments = 0
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                comments += 1
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "data" in fields:
            events.append(Event(json.loads(fields["data"]), fields.get("id"), fields.get("event")))
    return events, comments


def status_of(body: dict[str, Any]) -> dict[str, Any]:
    """A Status JSON body's details, by short type name."""
    return {d["@type"].rsplit(".", 1)[-1]: d for d in body.get("details", [])}
