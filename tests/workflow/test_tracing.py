"""One trace per workflow run, in process: the create call is the root, every task
attempt a child with its agent, skill, attempt and outcome, the agent's own span
under the call to it, each payment under its task; the trace read back through
GetWorkflowTrace. (Across processes, with an OTLP receiver: tests/e2e.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshwright.agent import Agent, TaskContext, TaskFailed
from meshwright.mesh import telemetry
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.errors import FailedPrecondition
from meshwright.node import Node, start_node
from meshwright.workflow import EngineConfig
from meshwright.workflow.v1 import workflow_pb2
from tests.workflow.conftest import Running, echo_agent, fund, run

W = workflow_pb2
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def store() -> Any:
    spans = telemetry.SpanStore(max_traces=50)
    telemetry.setup_tracing("meshwright-test", instance_id="t-1", store=spans, exporters=[])
    try:
        yield spans
    finally:
        telemetry.shutdown_tracing()


@pytest.fixture
async def traced_node(store: Any) -> AsyncIterator[Node]:
    n = await start_node(
        MeshConfig(insecure_no_auth=True, grpc_port=0, http_port=0, grace_s=0),
        gateway=False,
        engine_config=EngineConfig(initial_backoff_s=0.01, agent_wait_s=0.5, handoff_grace_s=0.5),
    )
    try:
        yield n
    finally:
        await n.stop()


def by_name(spans: list[W.TraceSpan], name: str) -> list[W.TraceSpan]:
    return [s for s in spans if s.name == name]


def one(spans: list[W.TraceSpan], name: str, kind: int) -> W.TraceSpan:
    found = [s for s in by_name(spans, name) if s.kind == kind]
    assert len(found) == 1, (name, kind, [(s.name, s.kind) for s in spans])
    return found[0]


async def trace_of(node: Node, workflow_id: str) -> W.GetWorkflowTraceResponse:
    telemetry.force_flush()
    reply: W.GetWorkflowTraceResponse = await node.clients["workflow"].call(
        "GetWorkflowTrace", W.GetWorkflowTraceRequest(workflow_id=workflow_id)
    )
    return reply


CREATE = "meshwright.workflow.v1.WorkflowService/CreateWorkflow"
EXECUTE = "meshwright.agent.v1.AgentService/ExecuteTask"
CAPTURE = "meshwright.economy.v1.EconomyService/CaptureEscrow"


async def test_a_run_is_one_trace_from_the_create_call_to_every_agent_and_payment(
    traced_node: Node, agents: Running
) -> None:
    node = traced_node
    agent_id = await agents.start(echo_agent("tracer", price=3), node)
    await fund(node, "payer", 100)
    wf = await run(
        node,
        {
            "budget": 50,
            "payerAccountId": "payer",
            "tasks": [
                {"id": "a", "skill": "x.echo"},
                {"id": "b", "skill": "x.echo", "dependsOn": ["a"]},
            ],
        },
    )
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED
    trace_id = telemetry.trace_id_of(wf.traceparent)
    assert len(trace_id) == 32

    reply = await trace_of(node, wf.workflow_id)
    assert reply.trace_id == trace_id
    spans = list(reply.spans)
    ids = {s.span_id: s for s in spans}

    # The root: the create call (in process, the pipeline's SERVER span alone), the
    # run's parent (the traceparent the workflow keeps).
    create = one(spans, CREATE, W.SPAN_KIND_SERVER)
    assert create.parent_span_id == ""
    assert not by_name(spans, CREATE)[1:]  # no CLIENT span for an in-process call
    assert wf.traceparent.split("-")[2] == create.span_id

    for task_id in ("a", "b"):
        # The attempt is the CLIENT span of the call to the agent.
        task = one(spans, f"task {task_id}", W.SPAN_KIND_CLIENT)
        assert task.parent_span_id == create.span_id
        assert task.attributes["meshwright.workflow_id"] == wf.workflow_id
        assert task.attributes["meshwright.skill"] == "x.echo"
        assert task.attributes["meshwright.agent_id"] == agent_id
        assert task.attributes["meshwright.attempt"] == "1"
        assert task.attributes["meshwright.outcome"] == "succeeded"
        assert task.attributes["rpc.method"] == "ExecuteTask"
        assert task.attributes["server.address"]
        assert not task.error
        # Under it: the agent's own span and the payment, each a SERVER span.
        under = sorted((s.name, s.kind) for s in spans if s.parent_span_id == task.span_id)
        assert under == [(EXECUTE, W.SPAN_KIND_SERVER), (CAPTURE, W.SPAN_KIND_SERVER)]
        served = [s for s in spans if s.parent_span_id == task.span_id and s.name == EXECUTE]
        assert served[0].attributes["enduser.id"]  # who called, as the agent saw it
        assert served[0].attributes["rpc.grpc.status_code"] == "0"

    end = one(spans, "workflow end", W.SPAN_KIND_INTERNAL)
    assert end.parent_span_id == create.span_id
    assert end.attributes["meshwright.state"] == "WORKFLOW_STATE_SUCCEEDED"
    # Every span's parent is in the trace (nothing dangles), all from this resource.
    assert all(s.parent_span_id in ids for s in spans if s.parent_span_id)
    assert {s.service for s in spans} == {"meshwright-test"}
    # Start order, as the contract says.
    starts = [s.start_time.ToNanoseconds() for s in spans]
    assert starts == sorted(starts)


async def test_a_failed_attempt_is_an_error_span_and_its_retry_joins_the_same_trace(
    traced_node: Node, agents: Running
) -> None:
    node = traced_node
    agent = Agent("flaky", capacity=4)
    calls: list[int] = []

    @agent.skill("x.work")
    async def work(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise TaskFailed("first try fails", reason="FLAKY")
        return {"ok": True}

    await agents.start(agent, node)
    wf = await run(
        node,
        {"tasks": [{"id": "t", "skill": "x.work", "retry": {"maxAttempts": 3}}]},
    )
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED and len(calls) == 2
    spans = list((await trace_of(node, wf.workflow_id)).spans)
    attempts = by_name(spans, "task t")
    assert [a.attributes["meshwright.attempt"] for a in attempts] == ["1", "2"]
    first, second = attempts
    assert first.error and "first try fails" in first.status_message
    assert first.attributes["meshwright.outcome"] == "failed"
    assert first.attributes["meshwright.retryable"] == "True"
    assert not second.error and second.attributes["meshwright.outcome"] == "succeeded"
    assert first.parent_span_id == second.parent_span_id  # both under the create call


async def test_the_callers_trace_context_makes_the_run_part_of_its_trace(
    traced_node: Node, agents: Running
) -> None:
    node = traced_node
    await agents.start(echo_agent("joined", price=0), node)
    d = W.WorkflowDefinition()
    d.tasks.add(id="t", skill="x.echo")
    reply = await node.clients["workflow"].call(
        "CreateWorkflow",
        W.CreateWorkflowRequest(definition=d),
        metadata=[("traceparent", TRACEPARENT)],
    )
    wf = reply.workflow
    assert telemetry.trace_id_of(wf.traceparent) == TRACEPARENT.split("-")[1]
    async for _ in node.clients["workflow"].stream(
        "WatchWorkflow", W.WatchWorkflowRequest(workflow_id=wf.workflow_id)
    ):
        pass
    spans = list((await trace_of(node, wf.workflow_id)).spans)
    # The caller's own span is not ours to keep: the create call names it parent.
    create = one(spans, CREATE, W.SPAN_KIND_SERVER)
    assert create.parent_span_id == TRACEPARENT.split("-")[2]
    assert by_name(spans, "task t")


async def test_a_server_stream_is_one_span_that_ends_with_the_stream(
    traced_node: Node, store: Any, agents: Running
) -> None:
    node = traced_node
    await agents.start(echo_agent("watched", price=0), node)
    wf = await run(node, {"tasks": [{"id": "t", "skill": "x.echo"}]})
    spans = list((await trace_of(node, wf.workflow_id)).spans)
    watch = "meshwright.workflow.v1.WorkflowService/WatchWorkflow"
    # The watch is its own call (its own trace): found in the store by name.
    telemetry.force_flush()
    found = [
        s
        for tid in store.trace_ids()
        for s in store.spans(tid)
        if s.name == watch and s.kind == telemetry.SpanKind.SERVER
    ]
    assert len(found) == 1 and found[0].end_time is not None
    assert found[0].attributes["rpc.grpc.status_code"] == 0
    assert by_name(spans, "task t")


async def test_without_tracing_the_run_has_no_trace_and_the_trace_rpc_says_why(
    node: Node, agents: Running
) -> None:
    assert not telemetry.enabled()
    await agents.start(echo_agent("dark", price=0), node)
    wf = await run(node, {"tasks": [{"id": "t", "skill": "x.echo"}]})
    assert wf.traceparent == ""
    with pytest.raises(FailedPrecondition) as err:
        await node.clients["workflow"].call(
            "GetWorkflowTrace", W.GetWorkflowTraceRequest(workflow_id=wf.workflow_id)
        )
    assert err.value.reason == "NO_SPAN_STORE"
    assert "tracing was off" in err.value.message


async def test_an_untraced_process_passes_the_callers_traceparent_on(
    node: Node, agents: Running
) -> None:
    """Off, no span is made here, but the caller's context reaches the agent unchanged,
    so the processes that do trace still make one trace."""
    seen: list[str] = []
    agent = Agent("peek", capacity=2)

    @agent.skill("x.peek")
    async def peek(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        from meshwright.mesh.context import current_call

        call = current_call()
        assert call is not None
        seen.extend(v for k, v in call.metadata if k == "traceparent")
        return {}

    await agents.start(agent, node)
    d = W.WorkflowDefinition()
    d.tasks.add(id="t", skill="x.peek")
    reply = await node.clients["workflow"].call(
        "CreateWorkflow",
        W.CreateWorkflowRequest(definition=d),
        metadata=[("traceparent", TRACEPARENT)],
    )
    async for _ in node.clients["workflow"].stream(
        "WatchWorkflow", W.WatchWorkflowRequest(workflow_id=reply.workflow.workflow_id)
    ):
        pass
    assert seen == [TRACEPARENT]
