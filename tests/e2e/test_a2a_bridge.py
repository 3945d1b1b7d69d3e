"""An external A2A agent in the mesh, across processes: the a2a-sdk reference agent in
its own process, the bridge (``python -m meshwright.agent a2a URL``) in its own, started by
the agent supervisor from a command line as the agent manager runs one (READY line,
``--stop-on-stdin-eof``, ``MESHWRIGHT_*`` settings, an agent token it mints), and a real
mesh node in this process with auth on and tracing on.

Workflows run the external skills as they run native ones: the engine places them on the
bridge, retries the flaky one, pays the bridge's account once per finished task, streams
its progress into the workflow's events, and cancels the remote task with the workflow;
the trace the workflow started continues through the bridge into the A2A agent.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf import json_format

from meshwright.agent.supervisor import AgentSpec, AgentSupervisor, ProcessState
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh import telemetry
from meshwright.mesh.client import ChannelPool, RemoteServiceClient
from meshwright.mesh.config import MeshConfig
from meshwright.node import Node, start_node
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow import EngineConfig
from meshwright.workflow.v1 import workflow_pb2
from tests.agent._a2a_reference_agent import ReferenceAgent, running
from tests.conftest import eventually
from tests.e2e._proc import cli_env, meshwright
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support_auth import test_keys

W = workflow_pb2
CLIENT = 3  # OTLP's span kind
BRIDGE_ID = "a2a-reference-bridge"
A2A_TOKEN = "reference-agent-token"
PRICES = {"upper": 3, "sum": 2, "flaky": 4}  # upper's from the card; the others by --price
pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]


@dataclass
class Bridged:
    node: Node
    ref: ReferenceAgent
    receiver: OtlpReceiver
    supervisor: AgentSupervisor
    registry: RemoteServiceClient
    economy: RemoteServiceClient
    workflows: RemoteServiceClient
    tmp: Path

    async def balance(self, account_id: str) -> int:
        try:
            reply = await self.economy.call(
                "GetAccount", economy_pb2.GetAccountRequest(account_id=account_id)
            )
        except Exception:  # no account yet: nothing paid
            return 0
        return int(reply.account.balance)

    async def run(self, tasks: list[dict[str, Any]], budget: int = 0) -> W.Workflow:
        """Create a workflow (paid by ``payer`` when it has a budget) and wait for its end."""
        wf_id = await self.create(tasks, budget)
        await self.events(wf_id)
        return await self.get(wf_id)

    async def create(self, tasks: list[dict[str, Any]], budget: int = 0) -> str:
        definition: dict[str, Any] = {"tasks": tasks}
        if budget:
            definition.update(budget=budget, payerAccountId="payer")
        d = json_format.ParseDict(definition, W.WorkflowDefinition())
        reply = await self.workflows.call("CreateWorkflow", W.CreateWorkflowRequest(definition=d))
        return str(reply.workflow.workflow_id)

    async def events(self, wf_id: str) -> list[W.WorkflowEvent]:
        request = W.WatchWorkflowRequest(workflow_id=wf_id)
        return [r.event async for r in self.workflows.stream("WatchWorkflow", request)]

    async def get(self, wf_id: str) -> W.Workflow:
        reply = await self.workflows.call("GetWorkflow", W.GetWorkflowRequest(workflow_id=wf_id))
        return reply.workflow

    async def call_of(self, wf_id: str, skill: str, nth: int = 0) -> dict[str, Any]:
        """The reference agent's record of the ``nth`` message of ``wf_id`` for ``skill``."""

        async def found() -> dict[str, Any] | None:
            mine = [
                c
                for c in await self.ref.calls()
                if c["context_id"] == wf_id and c["skill"] == skill
            ]
            return mine[nth] if len(mine) > nth else None

        return await eventually(found, timeout=15)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bridged(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bridged]:
    tmp = tmp_path_factory.mktemp("a2a-bridge")
    (tmp / "a2a-token").write_text(A2A_TOKEN + "\n")
    keys = test_keys()
    receiver = OtlpReceiver()
    await receiver.start()
    # Tracing on in this process too: the workflow keeps its trace (traceparent), and
    # the engine's calls to the bridge carry it.
    telemetry.setup_tracing("meshwright-test", store=telemetry.SpanStore(), exporters=[])
    node = None
    pool = ChannelPool(token=keys.token("admin", "ops"))
    try:
        config = MeshConfig(
            grpc_port=0,
            http_port=0,
            auth_public_key=str(keys.public_key_file),
            auth_private_key=str(keys.private_key_file),
            lease_ttl_s=3.0,
            sweep_interval_s=0.2,
            grace_s=1,
        )
        node = await start_node(
            config,
            gateway=False,
            engine_config=EngineConfig(initial_backoff_s=0.05, agent_wait_s=10.0),
        )
        async with running("--token-file", str(tmp / "a2a-token"), "--price", "upper=3") as ref:
            command = (
                sys.executable, "-m", "meshwright.agent", "a2a", ref.url,
                "--price", "sum=2", "--price", "flaky=4",
                "--stop-on-stdin-eof",
            )  # fmt: skip
            async with AgentSupervisor(
                node.grpc_address,
                issuer=keys.issuer(),
                auth_public_key=str(keys.public_key_file),
                lease_ttl_s=3.0,
                max_restarts=0,
            ) as sup:
                await sup.start(
                    AgentSpec(
                        command=command,
                        name="bridge",
                        agent_id=BRIDGE_ID,
                        env={
                            "MESHWRIGHT_A2A_TOKEN_FILE": str(tmp / "a2a-token"),
                            **receiver.env(),
                        },
                    )
                )

                def svc(module: Any, name: str) -> Any:
                    return module.DESCRIPTOR.services_by_name[name]

                yield Bridged(
                    node=node,
                    ref=ref,
                    receiver=receiver,
                    supervisor=sup,
                    registry=pool.client(node.grpc_address, svc(registry_pb2, "RegistryService")),
                    economy=pool.client(node.grpc_address, svc(economy_pb2, "EconomyService")),
                    workflows=pool.client(node.grpc_address, svc(W, "WorkflowService")),
                    tmp=tmp,
                )
            # Stopped as the manager stops agents: a clean exit, deregistered.
            stopped = sup.status("bridge")
            assert stopped.state == ProcessState.STOPPED and stopped.exit_code == 0, stopped
    finally:
        await pool.close()
        if node is not None:
            await node.stop()
        telemetry.shutdown_tracing()
        await receiver.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def payer(bridged: Bridged) -> str:
    await bridged.economy.call(
        "CreateAccount", economy_pb2.CreateAccountRequest(account_id="payer", initial_balance=1000)
    )
    return "payer"


async def test_the_bridge_registers_the_external_skills(bridged: Bridged) -> None:
    status = bridged.supervisor.status("bridge")
    assert status.agent_id == BRIDGE_ID and status.endpoint  # its READY line was read
    reply = await bridged.registry.call(
        "GetAgent", registry_pb2.GetAgentRequest(agent_id=BRIDGE_ID)
    )
    agent = reply.agent
    assert agent.state == registry_pb2.AGENT_STATE_ACTIVE
    card = agent.card
    assert card.name == "a2a-reference"
    prices = {s.id: s.price for s in card.skills}
    assert set(prices) == {
        "echo",
        "upper",
        "sum",
        "flaky",
        "slow",
        "steps",
        "reject",
        "need-input",
        "text.reverse",  # "Text.Reverse" on the A2A card
    }
    assert {k: prices[k] for k in PRICES} == PRICES
    assert prices["echo"] == 0
    assert card.capabilities.streaming
    assert card.metadata["bridge"] == "a2a"
    assert card.metadata["a2a_card_url"] == bridged.ref.card_url
    assert json.loads(card.metadata["a2a_skills"])["text.reverse"] == "Text.Reverse"


async def test_a_workflow_of_external_skills_succeeds_and_pays_the_bridge_once_per_task(
    bridged: Bridged, payer: str
) -> None:
    before = await bridged.balance(BRIDGE_ID)
    wf = await bridged.run(
        [
            {"id": "shout", "skill": "upper", "input": {"text": "hello mesh"}},
            {"id": "add", "skill": "sum", "input": {"numbers": [1, 2, 3.5]}},
            {"id": "rev", "skill": "text.reverse", "input": {"text": "abc"}, "dependsOn": ["add"]},
        ],
        budget=50,
    )
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED, wf.error
    tasks = {t.task_id: t for t in wf.tasks}
    assert json_format.MessageToDict(tasks["shout"].output) == {"text": "HELLO MESH"}
    assert json_format.MessageToDict(tasks["add"].output) == {"sum": 6.5}
    assert json_format.MessageToDict(tasks["rev"].output) == {"text": "cba"}
    assert all(t.attempts == 1 and t.agent_id == BRIDGE_ID for t in wf.tasks)
    assert wf.spent == 3 + 2 + 0
    assert await bridged.balance(BRIDGE_ID) - before == 3 + 2
    # The A2A agent saw the convention: skill in the metadata, the workflow as context.
    call = await bridged.call_of(wf.workflow_id, "upper")
    assert call["input"] == {"text": "hello mesh"}
    assert call["message_id"] == f"meshwright-{wf.workflow_id}.shout.1"
    assert call["authorization"] == f"Bearer {A2A_TOKEN}"


async def test_the_flaky_skill_is_retried_by_the_engine_and_paid_once(
    bridged: Bridged, payer: str
) -> None:
    before = await bridged.balance(BRIDGE_ID)
    wf_id = await bridged.create(
        [
            {
                "id": "f",
                "skill": "flaky",
                "input": {"key": "e2e-flaky"},
                "retry": {"maxAttempts": 3, "initialBackoff": "0.05s"},
            }
        ],
        budget=20,
    )
    events = await bridged.events(wf_id)
    wf = await bridged.get(wf_id)
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED, wf.error
    assert wf.tasks[0].attempts == 2
    retrying = [e for e in events if e.type == W.WORKFLOW_EVENT_TYPE_TASK_RETRYING]
    assert len(retrying) == 1 and "first attempt" in retrying[0].message
    succeeded = [e for e in events if e.type == W.WORKFLOW_EVENT_TYPE_TASK_SUCCEEDED]
    assert [e.amount for e in succeeded] == [4]
    assert await bridged.balance(BRIDGE_ID) - before == 4  # paid once, not per attempt


async def test_the_trace_continues_through_the_bridge_into_the_a2a_agent(
    bridged: Bridged,
) -> None:
    wf = await bridged.run([{"id": "e", "skill": "echo", "input": {"text": "trace me"}}])
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED, wf.error
    trace_id = telemetry.trace_id_of(wf.traceparent)
    assert trace_id
    received = (await bridged.call_of(wf.workflow_id, "echo"))["traceparent"]
    assert telemetry.trace_id_of(received) == trace_id
    parent_span_id = received.split("-")[2]

    def bridge_span(spans: list[ReceivedSpan]) -> bool:
        return any(s.span_id == parent_span_id for s in spans)

    spans = await bridged.receiver.wait_for(bridge_span, 30)
    span = next(s for s in spans if s.span_id == parent_span_id)
    # The A2A agent's work hangs under the bridge's own CLIENT span, in the workflow's trace.
    assert span.name == "lf.a2a.v1.A2AService/SendStreamingMessage"
    assert span.kind == CLIENT and span.trace_id == trace_id
    assert span.attributes["meshwright.a2a.skill"] == "echo"


async def test_streamed_progress_reaches_the_workflows_events(bridged: Bridged) -> None:
    wf_id = await bridged.create(
        [
            {
                "id": "s",
                "skill": "steps",
                "input": {"count": 3, "interval": 0.15},
                "streamProgress": True,
            }
        ]
    )
    events = await bridged.events(wf_id)
    assert events[-1].type == W.WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED
    progress = [e.message for e in events if e.type == W.WORKFLOW_EVENT_TYPE_TASK_PROGRESS]
    assert progress == ["step 1/3", "step 2/3", "step 3/3"]


async def test_canceling_the_workflow_cancels_the_remote_task(bridged: Bridged) -> None:
    wf_id = await bridged.create([{"id": "z", "skill": "slow", "input": {"seconds": 60}}])
    call = await bridged.call_of(wf_id, "slow")  # running on the A2A agent
    await bridged.workflows.call(
        "CancelWorkflow", W.CancelWorkflowRequest(workflow_id=wf_id, reason="enough")
    )

    async def canceled_remotely() -> bool:
        return call["task_id"] in await bridged.ref.cancels()

    await eventually(canceled_remotely, timeout=15)
    wf = await bridged.get(wf_id)
    assert wf.state == W.WORKFLOW_STATE_CANCELLED


async def test_a_remote_http_500_is_retried(bridged: Bridged) -> None:
    await bridged.ref.fail_http(1)
    wf = await bridged.run(
        [
            {
                "id": "u",
                "skill": "upper",
                "input": {"text": "again"},
                "retry": {"maxAttempts": 2, "initialBackoff": "0.05s"},
            }
        ],
        budget=10,
    )
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED, wf.error
    assert wf.tasks[0].attempts == 2
    assert json_format.MessageToDict(wf.tasks[0].output) == {"text": "AGAIN"}


@pytest.mark.parametrize(("skill", "why"), [("reject", "rejects"), ("need-input", "tell me more")])
async def test_a_rejected_task_is_not_retried(bridged: Bridged, skill: str, why: str) -> None:
    wf = await bridged.run(
        [
            {
                "id": "r",
                "skill": skill,
                "retry": {"maxAttempts": 3, "initialBackoff": "0.05s"},
            }
        ]
    )
    assert wf.state == W.WORKFLOW_STATE_FAILED
    assert wf.tasks[0].attempts == 1
    assert why in wf.tasks[0].error


async def test_bad_card_urls_register_nothing(bridged: Bridged, unused_tcp_port: int) -> None:
    keys = test_keys()
    env = cli_env(
        bridged.tmp,
        MESHWRIGHT_TOKEN=keys.token("agent", "never-registered"),
        MESHWRIGHT_AUTH_PUBLIC_KEY=str(keys.public_key_file),
    )
    registry = ("--registry", bridged.node.grpc_address)
    code, out = await meshwright(
        "agent", "a2a", f"http://127.0.0.1:{unused_tcp_port}", *registry, env=env
    )
    assert code == 1, out
    assert "cannot reach" in out and "READY" not in out
    async with running("--no-skills") as empty:
        code, out = await meshwright("agent", "a2a", empty.url, *registry, env=env)
    assert code == 2, out
    assert "lists no skills" in out
    code, out = await meshwright(
        "agent", "a2a", bridged.ref.url + "/_test/not-json.json", *registry, env=env
    )
    assert code == 2 and "is not JSON" in out, out
    page = await bridged.registry.call("ListAgents", registry_pb2.ListAgentsRequest())
    assert [a.agent_id for a in page.agents] == [BRIDGE_ID]
