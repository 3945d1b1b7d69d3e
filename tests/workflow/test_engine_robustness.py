"""Engine paths a reviewer broke on purpose: callers cancelled midway, odd inputs, churn."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.protobuf import json_format

from meshwright.agent import Agent, TaskContext
from meshwright.agent.v1 import agent_pb2
from meshwright.economy import Economy, EconomyServicer, MemoryLedgerStore
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh import MeshServer
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.errors import AlreadyExists, InvalidArgument, Unavailable
from meshwright.mesh.security import insecure_pipeline
from meshwright.node import Node, start_node
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import eventually
from tests.workflow.conftest import Running, Split, echo_agent, fan, fund, run

W = workflow_pb2


def definition(data: dict[str, Any]) -> W.WorkflowDefinition:
    return json_format.ParseDict(data, W.WorkflowDefinition())


async def balance(node: Node, account: str) -> int:
    got = await node.clients["economy"].call(
        "GetAccount", economy_pb2.GetAccountRequest(account_id=account)
    )
    return int(got.account.balance)


async def test_a_cancel_whose_caller_gives_up_still_ends_the_workflow(
    node: Node, agents: Running
) -> None:
    await agents.start(echo_agent("slow", price=1, delay=30), node)
    await fund(node, "c1", 10)
    engine = node.engine
    assert engine is not None
    wf = await engine.create_workflow(
        W.CreateWorkflowRequest(definition=definition(fan(2, budget=10, payerAccountId="c1")))
    )

    async def running() -> bool:
        got = await engine.get_workflow(wf.workflow_id)
        return all(t.state == W.TASK_RUN_STATE_RUNNING for t in got.tasks)

    await eventually(running)
    caller = asyncio.create_task(engine.cancel_workflow(wf.workflow_id, "bye"))
    await asyncio.sleep(0)  # let it start ending, then give up on it
    await asyncio.sleep(0)
    caller.cancel()
    ended = await asyncio.wait_for(engine.wait(wf.workflow_id), 10)
    assert ended.state == W.WORKFLOW_STATE_CANCELLED
    assert await balance(node, "c1") == 10  # escrow released all the same
    again = await asyncio.wait_for(engine.cancel_workflow(wf.workflow_id, "again"), 5)
    assert again.state == W.WORKFLOW_STATE_CANCELLED


async def test_a_create_whose_caller_gives_up_leaks_no_escrow(
    split: Split, agents: Running
) -> None:
    """Economy behind a real hop, so the caller can be cancelled mid-OpenEscrow."""
    node = split.node
    await agents.start(echo_agent("a", price=1), node, economy=split.economy_address)
    economy = node.clients["economy"]
    await economy.call(
        "CreateAccount", economy_pb2.CreateAccountRequest(account_id="c2", initial_balance=100)
    )
    engine = node.engine
    assert engine is not None
    d = definition(fan(1, budget=10, payerAccountId="c2"))
    for i in range(40):
        request = W.CreateWorkflowRequest(definition=d, request_id=f"give-up-{i}")
        caller = asyncio.create_task(engine.create_workflow(request))
        await asyncio.sleep(i * 0.0001)  # give up at every point of the creation
        caller.cancel()

    # Whatever was created runs to the end; nothing stays escrowed.
    async def settled() -> bool:
        got = await economy.call("GetAccount", economy_pb2.GetAccountRequest(account_id="c2"))
        listed, _ = await engine.list_workflows(state=0, size=100, token="")
        done = all(w.state == W.WORKFLOW_STATE_SUCCEEDED for w in listed)
        return done and got.account.escrowed == 0 and got.account.balance == 100 - len(listed)

    await eventually(settled, timeout=10)


async def test_timeouts_and_backoffs_are_bounded(node: Node, agents: Running) -> None:
    await agents.start(echo_agent("a", price=0), node)
    d = definition(
        {
            "tasks": [
                {
                    "id": "t",
                    "skill": "x.echo",
                    "timeout": "315576000000s",
                    "retry": {"initialBackoff": "7200s", "maxBackoff": "-1s"},
                }
            ]
        }
    )
    with pytest.raises(InvalidArgument) as err:
        await node.clients["workflow"].call("CreateWorkflow", W.CreateWorkflowRequest(definition=d))
    assert [v.field for v in err.value.violations] == [
        "definition.tasks[0].retry.initial_backoff",
        "definition.tasks[0].retry.max_backoff",
        "definition.tasks[0].timeout",
    ]


async def test_the_router_refuses_a_task_id_already_in_flight(node: Node, agents: Running) -> None:
    await agents.start(echo_agent("narrow", price=0, capacity=1, delay=0.3), node)
    router = node.clients["agent"]
    request = agent_pb2.ExecuteTaskRequest(task_id="dup", skill="x.echo")
    results = await asyncio.gather(
        router.call("ExecuteTask", request),
        router.call("ExecuteTask", request),
        return_exceptions=True,
    )
    assert sum(isinstance(r, AlreadyExists) for r in results) == 1
    assert sum(isinstance(r, agent_pb2.ExecuteTaskResponse) for r in results) == 1
    again = await router.call("ExecuteTask", request)  # free again afterwards
    assert again.task.status.state == agent_pb2.TASK_STATE_COMPLETED


async def test_channels_to_agents_that_left_are_closed(node: Node, agents: Running) -> None:
    await agents.start(echo_agent("passing", price=0), node)
    wf = await run(node, fan(1))
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED
    engine = node.engine
    assert engine is not None
    assert len(engine.dispatcher._clients) == 1
    await agents.stop()
    agents.runtimes.clear()
    await eventually(lambda: not engine.dispatcher._clients, timeout=5)
    assert not engine.dispatcher.agents()


async def test_no_workflow_starts_while_the_engine_stops(node: Node, agents: Running) -> None:
    await agents.start(echo_agent("a", price=0), node)
    engine = node.engine
    assert engine is not None
    await engine.stop()
    with pytest.raises(Unavailable):
        await engine.create_workflow(W.CreateWorkflowRequest(definition=definition(fan(1))))


async def test_an_unreachable_economy_never_strands_the_escrow(agents: Running) -> None:
    """The ending refunds before it records the end: with the economy down the workflow
    waits (RUNNING) and retries, and ends, refunded, once the economy is back."""
    economy = Economy(MemoryLedgerStore())
    service = economy_pb2.DESCRIPTOR.services_by_name["EconomyService"]

    async def serve_economy(port: int = 0) -> MeshServer:
        server = MeshServer(pipeline=insecure_pipeline(), port=port, grace_s=0)
        server.add(EconomyServicer(economy), service)
        await server.start()
        return server

    first = await serve_economy()
    port = int(first.address.rpartition(":")[2])
    node = await start_node(
        MeshConfig(insecure_no_auth=True, grpc_port=0, grace_s=0),
        services=("registry", "workflow"),
        economy_target=first.address,
        gateway=False,
    )
    second = None
    try:
        gate = asyncio.Event()
        agent = Agent("gated", capacity=2)

        @agent.skill("x.gated")
        async def gated(input: dict[str, object], ctx: TaskContext) -> dict[str, object]:
            await gate.wait()
            return {}

        await agents.start(agent, node)
        await node.clients["economy"].call(
            "CreateAccount", economy_pb2.CreateAccountRequest(account_id="p", initial_balance=10)
        )
        d = json_format.ParseDict(
            {"tasks": [{"id": "t", "skill": "x.gated"}], "budget": 10, "payerAccountId": "p"},
            W.WorkflowDefinition(),
        )
        reply = await node.clients["workflow"].call(
            "CreateWorkflow", W.CreateWorkflowRequest(definition=d)
        )
        wf_id = reply.workflow.workflow_id
        assert node.engine is not None
        await first.stop(0)  # the economy goes away with 10 in escrow
        gate.set()
        await asyncio.sleep(1.5)
        wf = await node.engine.get_workflow(wf_id)
        assert wf.state == W.WORKFLOW_STATE_RUNNING  # not ended without its refund
        assert wf.tasks[0].state == W.TASK_RUN_STATE_SUCCEEDED
        second = await serve_economy(port)  # back, same ledger
        ended = await asyncio.wait_for(node.engine.wait(wf_id), 30)
        assert ended.state == W.WORKFLOW_STATE_SUCCEEDED
        account = await node.clients["economy"].call(
            "GetAccount", economy_pb2.GetAccountRequest(account_id="p")
        )
        assert (account.account.balance, account.account.escrowed) == (10, 0)
    finally:
        await agents.stop()
        agents.runtimes.clear()
        await node.stop()
        if second is not None:
            await second.stop(0)


async def test_a_cancel_while_the_escrow_is_being_opened_refunds_it(agents: Running) -> None:
    """The economy is slow to open the escrow (a real economy behind a held door): a cancel
    arriving meanwhile waits for the opening, then refunds what it escrowed."""
    door = asyncio.Event()
    at_door = asyncio.Event()

    class SlowEconomy(EconomyServicer):
        async def OpenEscrow(self, request: Any) -> Any:
            at_door.set()
            await door.wait()
            return await super().OpenEscrow(request)

    economy = Economy(MemoryLedgerStore())
    server = MeshServer(pipeline=insecure_pipeline(), port=0, grace_s=0)
    server.add(SlowEconomy(economy), economy_pb2.DESCRIPTOR.services_by_name["EconomyService"])
    await server.start()
    node = await start_node(
        MeshConfig(insecure_no_auth=True, grpc_port=0, grace_s=0),
        services=("registry", "workflow"),
        economy_target=server.address,
        gateway=False,
    )
    try:
        await agents.start(echo_agent("a", price=1), node)
        await node.clients["economy"].call(
            "CreateAccount", economy_pb2.CreateAccountRequest(account_id="p", initial_balance=10)
        )
        d = json_format.ParseDict(fan(1, budget=10, payerAccountId="p"), W.WorkflowDefinition())
        creating = asyncio.create_task(
            node.clients["workflow"].call(
                "CreateWorkflow", W.CreateWorkflowRequest(definition=d, workflow_id="wf-slow")
            )
        )
        await asyncio.wait_for(at_door.wait(), 10)
        cancelling = asyncio.create_task(
            node.clients["workflow"].call(
                "CancelWorkflow", W.CancelWorkflowRequest(workflow_id="wf-slow", reason="no")
            )
        )
        await asyncio.sleep(0.2)
        assert not cancelling.done()  # it waits for the opening
        door.set()
        cancelled = await asyncio.wait_for(cancelling, 10)
        created = await asyncio.wait_for(creating, 10)
        assert cancelled.workflow.state == W.WORKFLOW_STATE_CANCELLED
        assert created.workflow.state == W.WORKFLOW_STATE_CANCELLED
        account = await node.clients["economy"].call(
            "GetAccount", economy_pb2.GetAccountRequest(account_id="p")
        )
        assert (account.account.balance, account.account.escrowed) == (10, 0)
    finally:
        door.set()
        await agents.stop()
        agents.runtimes.clear()
        await node.stop()
        await server.stop(0)
