"""One workflow, one trace, across processes: a `meshwright serve` process (registry,
economy, workflow, gateway) and an agent process both export over OTLP/gRPC to a
receiver in this test. The REST call's span is the root; under it the create call,
each task attempt (a failed one an error, its retry beside it), the call to the agent,
the agent's own ExecuteTask span in the agent's process, and each payment. A log
line the skill writes carries the run's trace id. /metrics counts what ran."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from meshwright.agent.supervisor import AgentSupervisor
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.client import ChannelPool
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import eventually
from tests.e2e._proc import Running, cli_env
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support_auth import NO_AUTH_ENV

W = workflow_pb2
SERVER, CLIENT, INTERNAL = 2, 3, 1  # OTLP's span kinds
SERVICE = "meshwright-registry-economy-workflow"
CREATE = "meshwright.workflow.v1.WorkflowService/CreateWorkflow"
EXECUTE = "meshwright.agent.v1.AgentService/ExecuteTask"
CAPTURE = "meshwright.economy.v1.EconomyService/CaptureEscrow"
pytestmark = pytest.mark.timeout(120)


@dataclass
class Traced:
    receiver: OtlpReceiver
    grpc: str
    http: str
    supervisor: AgentSupervisor
    pool: ChannelPool


@pytest_asyncio.fixture
async def traced(tmp_path: Path) -> AsyncIterator[Traced]:
    receiver = OtlpReceiver()
    await receiver.start()
    env = cli_env(tmp_path, **receiver.env())
    server = await Running.start(
        "serve",
        "--insecure-no-auth",
        "--grpc-port",
        "0",
        "--http-port",
        "0",
        "--services",
        "registry,economy,workflow",
        "--health-check-interval",
        "0",
        env=env,
    )
    pool = ChannelPool()
    try:
        grpc_at = (await server.wait_for(r"serving .* on (\S+)")).group(1)
        http_at = (await server.wait_for(r"gateway on (\S+)")).group(1)
        agent_env = {**NO_AUTH_ENV, **receiver.env()}
        async with AgentSupervisor(registry=grpc_at, lease_ttl_s=5.0, env=agent_env) as sup:
            await sup.start("tests.e2e._traced_agent:agent", name="traced")
            registry = pool.client(
                grpc_at, registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
            )

            async def registered() -> bool | None:
                page = await registry.call("ListAgents", registry_pb2.ListAgentsRequest())
                return True if page.agents else None

            await eventually(registered, timeout=30)
            yield Traced(receiver, grpc_at, http_at, sup, pool)
    finally:
        await pool.close()
        await server.stop()
        await receiver.stop()


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_span_id == parent.span_id]


def only(spans: list[ReceivedSpan], name: str, kind: int) -> ReceivedSpan:
    found = [s for s in spans if s.name == name and s.kind == kind]
    assert len(found) == 1, (name, kind, sorted((s.name, s.kind) for s in spans))
    return found[0]


async def test_a_rest_workflow_is_one_trace_across_the_server_and_the_agent(
    traced: Traced,
) -> None:
    economy = traced.pool.client(
        traced.grpc, economy_pb2.DESCRIPTOR.services_by_name["EconomyService"]
    )
    await economy.call(
        "CreateAccount", economy_pb2.CreateAccountRequest(account_id="payer", initial_balance=100)
    )
    definition = {
        "budget": 50,
        "payerAccountId": "payer",
        "tasks": [
            {"id": "steady", "skill": "trace.work"},
            {
                "id": "flaky",
                "skill": "trace.flaky",
                "dependsOn": ["steady"],
                "retry": {"maxAttempts": 2, "initialBackoff": "0.05s"},
            },
        ],
    }
    async with httpx.AsyncClient(base_url=traced.http, timeout=30) as http:
        created = await http.post("/v1/workflows", json={"definition": definition})
        assert created.status_code == 200, created.text
        wf_id = created.json()["workflow"]["workflowId"]

        async def ended() -> dict[str, object] | None:
            got = (await http.get(f"/v1/workflows/{wf_id}")).json()["workflow"]
            return got if got["state"] == "WORKFLOW_STATE_SUCCEEDED" else None

        wf = await eventually(ended, timeout=30)
        trace_id = str(wf["traceparent"]).split("-")[1]

        def complete(spans: list[ReceivedSpan]) -> bool:
            mine = [s for s in spans if s.trace_id == trace_id]
            served = [s for s in mine if s.name == EXECUTE and s.kind == SERVER]
            paid = [s for s in mine if s.name == CAPTURE and s.kind == SERVER]
            ended_run = [s for s in mine if s.name == "workflow end"]
            return len(served) == 3 and len(paid) == 2 and bool(ended_run)

        spans = [s for s in await traced.receiver.wait_for(complete, 30) if s.trace_id == trace_id]

        # The REST call is the root, made by the server process's gateway.
        root = only(spans, "POST /v1/workflows", SERVER)
        assert root.parent_span_id == "" and root.service == SERVICE
        assert root.attributes["http.response.status_code"] == 200
        create = only(spans, CREATE, SERVER)  # in the gateway's process: no CLIENT span
        assert create.parent_span_id == root.span_id

        attempts = sorted(
            (s for s in spans if s.name.startswith("task ")),
            key=lambda s: (s.name, s.attributes["meshwright.attempt"]),
        )
        assert [(s.name, s.attributes["meshwright.attempt"]) for s in attempts] == [
            ("task flaky", 1),
            ("task flaky", 2),
            ("task steady", 1),
        ]
        failed, retried, steady = attempts
        for attempt in attempts:
            # The attempt is the CLIENT span of the call; the agent's own span, made in
            # the agent's process, is its child.
            assert attempt.parent_span_id == create.span_id and attempt.kind == CLIENT
            assert attempt.service == SERVICE
            served = [s for s in children(spans, attempt) if s.name == EXECUTE]
            assert [(s.kind, s.service) for s in served] == [(SERVER, "traced")]
            assert served[0].attributes["rpc.grpc.status_code"] == 0
        assert failed.status_code == 2  # ERROR
        assert failed.attributes["meshwright.outcome"] == "failed"
        assert retried.status_code != 2 and retried.attributes["meshwright.outcome"] == "succeeded"
        assert steady.status_code != 2
        # Payments under the paid attempts only, each served by the economy.
        for attempt, price in ((steady, 2), (retried, 3)):
            (capture,) = [s for s in children(spans, attempt) if s.name == CAPTURE]
            assert capture.kind == SERVER  # the economy, in process: its span alone
            assert attempt.attributes["meshwright.price"] == price
        assert not [s for s in children(spans, failed) if s.name == CAPTURE]
        # Every parent is in the trace: nothing dangles between the processes.
        ids = {s.span_id for s in spans}
        assert all(s.parent_span_id in ids for s in spans if s.parent_span_id)

        # The skill's log line carries the run's trace id (the agent logs to stderr).
        lines = traced.supervisor.output("traced")
        (line,) = [x for x in lines if "working on" in x]
        assert f"trace={trace_id}" in line

        # `serve` keeps no spans by default: the trace route says where to look instead.
        refused = await http.get(f"/v1/workflows/{wf_id}/trace")
        assert refused.status_code == 400, refused.text
        assert "NO_SPAN_STORE" in refused.text and trace_id in refused.text

        # /metrics counts what ran.
        metrics = (await http.get("/metrics")).text
        assert _sample(metrics, 'meshwright_workflows_total{state="succeeded"}') == 1
        assert _sample(metrics, 'meshwright_tasks_total{skill="trace.flaky",state="failed"}') == 1
        assert (
            _sample(metrics, 'meshwright_tasks_total{skill="trace.flaky",state="succeeded"}') == 1
        )
        assert _sample(metrics, 'meshwright_task_retries_total{skill="trace.flaky"}') == 1
        assert _sample(metrics, 'meshwright_economy_transactions_total{kind="escrow_capture"}') == 2
        assert _sample(metrics, "meshwright_escrows_open") == 0
        assert _sample(metrics, 'meshwright_registry_agents{state="active"}') == 1
        assert (
            _sample(
                metrics,
                'rpc_server_requests_total{rpc_grpc_status_code="OK",rpc_method="CaptureEscrow",'
                'rpc_service="meshwright.economy.v1.EconomyService"}',
            )
            == 2
        )


def _sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(
        f"{series} not in /metrics:\n"
        + "\n".join(x for x in text.splitlines() if re.match(r"(meshwright|rpc)_", x))
    )
