"""The agent manager through its RPCs: real agent processes under a node with auth on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from meshwright.agent import SERVICE as AGENT_SERVICE
from meshwright.agent.manager import MAX_REPLICAS, AgentManager
from meshwright.agent.supervisor import AgentSupervisor
from meshwright.agent.v1 import agent_pb2
from meshwright.agent.v1 import manager_pb2 as M
from meshwright.mesh import LocalServiceClient, RemoteServiceClient
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.errors import InvalidArgument, MeshError, NotFound, PermissionDenied
from meshwright.mesh.pipeline import Pipeline
from meshwright.mesh.security import Security
from meshwright.node import Node, start_node
from meshwright.registry.v1 import registry_pb2
from tests.conftest import eventually
from tests.support_auth import TestKeys, test_keys

pytestmark = pytest.mark.timeout(60)

ROOT = str(Path(__file__).resolve().parents[2])
TEST_AGENT = "tests.agent._managed_agent:agent"
RUNNING = M.PROCESS_STATE_RUNNING
STOPPED = M.PROCESS_STATE_STOPPED
ERROR = M.PROCESS_STATE_ERROR


@dataclass
class Managed:
    node: Node
    manager: AgentManager
    supervisor: AgentSupervisor
    keys: TestKeys

    def client(self, role: str = "admin", subject: str = "ops") -> LocalServiceClient:
        client = self.node.clients["manager"]
        assert isinstance(client, LocalServiceClient)
        return client.with_token(self.keys.token(role, subject))

    async def call(self, method: str, request: Any, **kw: Any) -> Any:
        return await self.client(**kw).call(method, request)

    async def get(self, name: str) -> M.ManagedAgent:
        reply = await self.call("GetManagedAgent", M.GetManagedAgentRequest(name=name))
        return reply.managed_agent

    async def registry_agent(self, agent_id: str) -> registry_pb2.Agent:
        reply = await self.node.clients["registry"].call(
            "GetAgent", registry_pb2.GetAgentRequest(agent_id=agent_id)
        )
        return reply.agent

    async def run_skill(self, endpoint: str, skill: str, **input: Any) -> dict[str, Any]:
        channel = grpc.aio.insecure_channel(endpoint)
        try:
            request = agent_pb2.ExecuteTaskRequest(task_id=f"t-{skill}-{id(input)}", skill=skill)
            request.input.update(input)
            token = self.keys.token("service", "mesh")
            reply = await RemoteServiceClient(channel, AGENT_SERVICE, token=token).call(
                "ExecuteTask", request
            )
            return dict(reply.task.output)
        finally:
            await channel.close()

    async def wait_state(self, name: str, replica: int, state: int) -> M.AgentProcess:
        async def check() -> M.AgentProcess | None:
            agent = await self.get(name)
            for p in agent.processes:
                if p.replica == replica and p.state == state:
                    return p
            return None

        return await eventually(check, timeout=20)


@pytest.fixture
async def managed() -> AsyncIterator[Managed]:
    keys = test_keys()
    security = Security(
        Pipeline(verifier=keys.verifier()), keys.token("service", "mesh"), None, keys.issuer()
    )
    supervisor = AgentSupervisor(
        "",
        lease_ttl_s=1.0,
        issuer=keys.issuer(),
        auth_public_key=str(keys.public_key_file),
        restart_backoff_s=0.1,
        max_restart_backoff_s=0.5,
        max_restarts=None,
        stop_grace_s=5.0,
        env={"MESHWRIGHT_AGENT_METRICS_PORT": "0"},
    )
    manager = AgentManager(supervisor, history=50)
    node = await start_node(
        MeshConfig(grpc_port=0, http_port=0, grace_s=0, sweep_interval_s=0.1),
        security=security,
        gateway=True,
        manager=manager,
    )
    supervisor.registry = node.grpc_address
    registry = node.clients["registry"]
    assert isinstance(registry, LocalServiceClient)
    supervisor.failures = registry.with_token(keys.token("admin", "ops"))
    try:
        yield Managed(node, manager, supervisor, keys)
    finally:
        await node.stop()


def module_spec(**kw: Any) -> M.ManagedAgentSpec:
    return M.ManagedAgentSpec(module=TEST_AGENT, app_dir=ROOT, **kw)


async def create(m: Managed, name: str, spec: M.ManagedAgentSpec, *, start: bool = True) -> Any:
    reply = await m.call(
        "CreateManagedAgent", M.CreateManagedAgentRequest(name=name, spec=spec, start=start)
    )
    return reply.managed_agent


# -- start, replicas, identity ----------------------------------------------------------


async def test_create_starts_replicas_with_their_own_ids_registered(managed: Managed) -> None:
    agent = await create(managed, "echo", module_spec(replicas=2))
    assert agent.ready_replicas == 2
    assert [p.replica for p in agent.processes] == [0, 1]
    ids = [p.agent_id for p in agent.processes]
    assert ids[0].startswith("echo-") and ids[1].startswith("echo-1-") and len(set(ids)) == 2
    for p in agent.processes:
        assert p.state == RUNNING and p.pid > 0 and p.endpoint and not p.exited
        assert p.HasField("start_time") and p.HasField("uptime")

        async def active(agent_id: str = p.agent_id) -> bool:
            reg = await managed.registry_agent(agent_id)
            return reg.state == registry_pb2.AGENT_STATE_ACTIVE

        await eventually(active, timeout=10)
    # Defaults filled in: on-failure, the count kept.
    assert agent.spec.restart_policy == M.RESTART_POLICY_ON_FAILURE
    assert agent.spec.replicas == 2


async def test_create_without_start_runs_nothing_until_started(managed: Managed) -> None:
    agent = await create(managed, "later", module_spec(), start=False)
    assert list(agent.processes) == [] and agent.ready_replicas == 0
    assert agent.spec.replicas == 1  # 0 means 1
    assert managed.supervisor.statuses() == []
    reply = await managed.call("StartManagedAgent", M.StartManagedAgentRequest(name="later"))
    assert reply.managed_agent.ready_replicas == 1
    # Starting again starts nothing new.
    again = await managed.call("StartManagedAgent", M.StartManagedAgentRequest(name="later"))
    assert again.managed_agent.processes[0].pid == reply.managed_agent.processes[0].pid


async def test_same_spec_again_is_a_no_op_another_spec_is_refused(managed: Managed) -> None:
    first = await create(managed, "one", module_spec())
    again = await create(managed, "one", module_spec())
    assert again.processes[0].pid == first.processes[0].pid
    with pytest.raises(MeshError) as err:
        await create(managed, "one", module_spec(restart_policy=M.RESTART_POLICY_NEVER))
    assert err.value.reason == "MANAGED_AGENT_EXISTS"


# -- exits, policies and the registry ----------------------------------------------------


async def test_clean_exit_is_stopped_and_not_restarted_under_on_failure(
    managed: Managed,
) -> None:
    agent = await create(managed, "clean", module_spec())
    p = agent.processes[0]
    await managed.run_skill(p.endpoint, "test.exit", code=0)
    stopped = await managed.wait_state("clean", 0, STOPPED)
    assert stopped.exited and stopped.exit_code == 0 and stopped.restarts == 0
    assert stopped.reason == "exited with code 0"
    # It deregistered on its way out: STOPPED in the registry too.
    reg = await managed.registry_agent(p.agent_id)
    assert reg.state == registry_pb2.AGENT_STATE_STOPPED
    await asyncio.sleep(0.5)  # past the backoff: still not restarted
    assert (await managed.get("clean")).processes[0].state == STOPPED


async def test_clean_exit_is_restarted_under_always(managed: Managed) -> None:
    agent = await create(managed, "forever", module_spec(restart_policy=M.RESTART_POLICY_ALWAYS))
    first = agent.processes[0]
    await managed.run_skill(first.endpoint, "test.exit", code=0)

    async def restarted() -> M.AgentProcess | None:
        p = (await managed.get("forever")).processes[0]
        return p if p.state == RUNNING and p.pid != first.pid else None

    again = await eventually(restarted, timeout=20)
    assert again.restarts == 1 and again.agent_id == first.agent_id


async def test_crash_is_error_then_restarted_with_history(managed: Managed) -> None:
    agent = await create(managed, "crashy", module_spec())
    first = agent.processes[0]
    await managed.run_skill(first.endpoint, "test.exit", code=3)

    async def restarted() -> M.AgentProcess | None:
        p = (await managed.get("crashy")).processes[0]
        return p if p.state == RUNNING and p.pid != first.pid else None

    again = await eventually(restarted, timeout=20)
    assert again.restarts == 1 and again.agent_id == first.agent_id
    assert again.exited and again.exit_code == 3
    reply = await managed.call(
        "ListManagedAgentEvents", M.ListManagedAgentEventsRequest(name="crashy")
    )
    path = [(e.from_state, e.to_state, e.reason) for e in reply.events]
    assert path == [
        (M.PROCESS_STATE_UNSPECIFIED, M.PROCESS_STATE_STARTING, "start requested"),
        (M.PROCESS_STATE_STARTING, RUNNING, "READY"),
        (RUNNING, ERROR, "exited with code 3"),
        (ERROR, M.PROCESS_STATE_RESTARTING, "restarting in 0.1s"),
        (M.PROCESS_STATE_RESTARTING, M.PROCESS_STATE_STARTING, "restarting after backoff"),
        (M.PROCESS_STATE_STARTING, RUNNING, "READY"),
    ]
    assert [e.sequence for e in reply.events] == list(range(1, 7))
    assert reply.events[2].pid == first.pid and reply.events[5].pid == again.pid


async def test_sigkill_under_never_stays_error_and_the_registry_shows_it(
    managed: Managed,
) -> None:
    agent = await create(managed, "once", module_spec(restart_policy=M.RESTART_POLICY_NEVER))
    p = agent.processes[0]
    os.kill(p.pid, signal.SIGKILL)
    dead = await managed.wait_state("once", 0, ERROR)
    assert dead.exit_code == -signal.SIGKILL and dead.reason == "killed by SIGKILL"
    assert dead.restarts == 0
    reg = await managed.registry_agent(p.agent_id)
    assert reg.state == registry_pb2.AGENT_STATE_ERROR
    assert reg.state_reason == "killed by SIGKILL"
    await asyncio.sleep(0.5)
    assert (await managed.get("once")).processes[0].state == ERROR


async def test_on_failure_restarts_a_sigkilled_process(managed: Managed) -> None:
    agent = await create(managed, "killed", module_spec())
    first = agent.processes[0]
    os.kill(first.pid, signal.SIGKILL)

    async def restarted() -> M.AgentProcess | None:
        p = (await managed.get("killed")).processes[0]
        return p if p.state == RUNNING and p.pid != first.pid else None

    again = await eventually(restarted, timeout=20)
    assert again.exit_code == -signal.SIGKILL and again.restarts == 1


# -- stop, restart, scale, delete --------------------------------------------------------


async def test_stop_restart_scale_and_delete(managed: Managed) -> None:
    agent = await create(managed, "svc", module_spec(replicas=1))
    first = agent.processes[0]
    scaled = await managed.call(
        "ScaleManagedAgent", M.ScaleManagedAgentRequest(name="svc", replicas=3)
    )
    up = scaled.managed_agent
    assert up.ready_replicas == 3 and up.spec.replicas == 3
    assert up.processes[0].pid == first.pid  # replica 0 left alone
    ids = {p.replica: p.agent_id for p in up.processes}

    one = await managed.call(
        "RestartManagedAgent", M.RestartManagedAgentRequest(name="svc", replica=2)
    )
    after = {p.replica: p for p in one.managed_agent.processes}
    assert after[2].pid != up.processes[2].pid and after[2].agent_id == ids[2]
    assert after[0].pid == first.pid

    down = await managed.call(
        "ScaleManagedAgent", M.ScaleManagedAgentRequest(name="svc", replicas=1)
    )
    assert [p.replica for p in down.managed_agent.processes] == [0]
    gone = await managed.registry_agent(ids[2])
    assert gone.state == registry_pb2.AGENT_STATE_STOPPED
    # Scaling up again brings replica 1 back under its old agent id.
    back = await managed.call(
        "ScaleManagedAgent", M.ScaleManagedAgentRequest(name="svc", replicas=2)
    )
    assert {p.replica: p.agent_id for p in back.managed_agent.processes}[1] == ids[1]

    stop = M.StopManagedAgentRequest(name="svc")
    stop.grace.FromSeconds(5)
    stopped = await managed.call("StopManagedAgent", stop)
    assert [p.state for p in stopped.managed_agent.processes] == [STOPPED, STOPPED]
    assert stopped.managed_agent.ready_replicas == 0
    started = await managed.call("StartManagedAgent", M.StartManagedAgentRequest(name="svc"))
    assert started.managed_agent.ready_replicas == 2
    assert {p.replica: p.agent_id for p in started.managed_agent.processes} == {
        0: ids[0],
        1: ids[1],
    }

    deleted = await managed.call("DeleteManagedAgent", M.DeleteManagedAgentRequest(name="svc"))
    assert all(p.state == STOPPED for p in deleted.managed_agent.processes)
    with pytest.raises(NotFound) as err:
        await managed.get("svc")
    assert err.value.reason == "MANAGED_AGENT_NOT_FOUND"
    assert managed.supervisor.statuses() == []


async def test_restart_all_keeps_ids_and_counts_restarts(managed: Managed) -> None:
    agent = await create(managed, "again", module_spec(replicas=2))
    reply = await managed.call("RestartManagedAgent", M.RestartManagedAgentRequest(name="again"))
    after = reply.managed_agent
    assert [p.agent_id for p in after.processes] == [p.agent_id for p in agent.processes]
    assert all(a.pid != b.pid for a, b in zip(after.processes, agent.processes, strict=True))
    assert after.ready_replicas == 2


# -- logs ------------------------------------------------------------------------------


async def test_logs_tail_and_follow_live(managed: Managed) -> None:
    agent = await create(managed, "talker", module_spec(replicas=2))
    endpoint = agent.processes[1].endpoint
    await managed.run_skill(endpoint, "test.say", text="first words")
    reply = await managed.call(
        "GetManagedAgentLogs", M.GetManagedAgentLogsRequest(name="talker", replica=1, tail_lines=2)
    )

    async def said() -> bool:
        got = await managed.call(
            "GetManagedAgentLogs",
            M.GetManagedAgentLogsRequest(name="talker", replica=1, tail_lines=2),
        )
        return [(x.stream, x.text) for x in got.lines] == [
            ("stdout", "first words"),
            ("stderr", "said on stderr: first words"),
        ] or (
            [(x.stream, x.text) for x in got.lines]
            == [("stderr", "said on stderr: first words"), ("stdout", "first words")]
        )

    await eventually(said, timeout=10)
    assert all(x.replica == 1 for x in reply.lines)

    request = M.StreamManagedAgentLogsRequest(name="talker", replica=1, tail_lines=0)
    lines: list[M.LogLine] = []

    async def follow() -> None:
        async for item in managed.client().stream("StreamManagedAgentLogs", request):
            lines.append(item.line)

    task = asyncio.create_task(follow())
    try:
        await asyncio.sleep(0.3)  # let the stream subscribe before the line is written
        await managed.run_skill(endpoint, "test.say", text="live line")
        await eventually(lambda: any(x.text == "live line" for x in lines), timeout=10)
        # Another replica's line does not reach a follower of replica 1.
        await managed.run_skill(agent.processes[0].endpoint, "test.say", text="from zero")
        await managed.run_skill(endpoint, "test.say", text="marker")
        await eventually(lambda: any(x.text == "marker" for x in lines), timeout=10)
        assert not any(x.text == "from zero" for x in lines)
        assert all(x.replica == 1 for x in lines)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_follow_sends_the_tail_first_and_continues_across_a_restart(
    managed: Managed,
) -> None:
    await create(managed, "restarted", module_spec())
    request = M.StreamManagedAgentLogsRequest(name="restarted", tail_lines=1000)
    lines: list[str] = []

    async def follow() -> None:
        async for item in managed.client().stream("StreamManagedAgentLogs", request):
            lines.append(item.line.text)

    task = asyncio.create_task(follow())
    try:
        await eventually(lambda: any(t.startswith("READY ") for t in lines), timeout=10)
        await managed.call("RestartManagedAgent", M.RestartManagedAgentRequest(name="restarted"))
        await eventually(lambda: sum(t.startswith("READY ") for t in lines) == 2, timeout=15)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_follower_that_falls_behind_is_told_how_many_lines_it_missed(
    managed: Managed,
) -> None:
    from meshwright.agent import manager as manager_module

    follower = manager_module._Follower(None)
    for i in range(manager_module.FOLLOW_QUEUE + 5):
        follower.push(M.LogLine(replica=0, text=str(i)))
    assert follower.queue.qsize() == manager_module.FOLLOW_QUEUE and follower.missed == 5
    one = manager_module._Follower(1)
    one.push(M.LogLine(replica=0, text="other replica"))
    assert one.queue.qsize() == 0


# -- metrics -----------------------------------------------------------------------------


async def test_metrics_summary_counts_tasks_and_resources(managed: Managed) -> None:
    agent = await create(managed, "busy", module_spec(replicas=2))
    for p in agent.processes:
        await managed.run_skill(p.endpoint, "test.say", text="x")
    await managed.run_skill(agent.processes[0].endpoint, "test.say", text="y")

    async def counted() -> M.ManagedAgentMetrics | None:
        m = (await managed.get("busy")).metrics
        return m if m.tasks_finished == 3 else None

    m = await eventually(counted, timeout=10)
    assert m.tasks_failed == 0 and m.tasks_in_flight == 0 and m.mean_task_seconds > 0
    assert m.rss_bytes > 10 * 2**20 and m.cpu_seconds > 0 and m.restarts == 0
    listed = await managed.call("ListManagedAgents", M.ListManagedAgentsRequest())
    assert [a.name for a in listed.managed_agents] == ["busy"]
    assert listed.managed_agents[0].metrics.tasks_finished == 3


# -- bad specs start nothing --------------------------------------------------------------


def _field(err: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return [v.field for v in err.value.violations]


@pytest.mark.parametrize(
    ("name", "spec", "field", "words"),
    [
        ("x", M.ManagedAgentSpec(module="nosuch_module_xyz:agent"), "spec.module", "No module"),
        (
            "x",
            M.ManagedAgentSpec(module="tests.agent._managed_agent:missing", app_dir=ROOT),
            "spec.module",
            "has no attribute",
        ),
        (
            "x",
            M.ManagedAgentSpec(module="tests.agent._managed_agent:not_an_agent", app_dir=ROOT),
            "spec.module",
            "not a meshwright.agent.Agent",
        ),
        ("x", M.ManagedAgentSpec(module="no-colon"), "spec.module", "package.module:attr"),
        (
            "x",
            M.ManagedAgentSpec(command=M.CommandLine(argv=["no-such-program-xyz"])),
            "spec.command.argv[0]",
            "no such program",
        ),
        (
            "x",
            M.ManagedAgentSpec(command=M.CommandLine(argv=[ROOT + "/pyproject.toml"])),
            "spec.command.argv[0]",
            "no such program",
        ),
        ("x", M.ManagedAgentSpec(command=M.CommandLine()), "spec.command.argv", "required"),
        (
            "x",
            M.ManagedAgentSpec(command=M.CommandLine(argv=[sys.executable]), args=["-x"]),
            "spec.args",
            "not allowed",
        ),
        ("x", M.ManagedAgentSpec(), "spec.target", "set one of"),
        ("x", M.ManagedAgentSpec(a2a_card_url="ftp://host/card"), "spec.a2a_card_url", "http"),
        ("Bad_Name", M.ManagedAgentSpec(module=TEST_AGENT), "name", "lower case"),
        ("-x", M.ManagedAgentSpec(module=TEST_AGENT), "name", "lower case"),
        ("a" * 64, M.ManagedAgentSpec(module=TEST_AGENT), "name", "lower case"),
        ("", M.ManagedAgentSpec(module=TEST_AGENT), "name", "required"),
        (
            "x",
            M.ManagedAgentSpec(module=TEST_AGENT, replicas=MAX_REPLICAS + 1),
            "spec.replicas",
            "0..16",
        ),
        ("x", M.ManagedAgentSpec(module=TEST_AGENT, replicas=-1), "spec.replicas", "0..16"),
        (
            "x",
            M.ManagedAgentSpec(module=TEST_AGENT, env={"MESHWRIGHT_TOKEN": "t"}),
            "spec.env[MESHWRIGHT_TOKEN]",
            "set by the manager",
        ),
        (
            "x",
            M.ManagedAgentSpec(module=TEST_AGENT, env={"1BAD": "v"}),
            "spec.env[1BAD]",
            "not a variable name",
        ),
        (
            "x",
            M.ManagedAgentSpec(module=TEST_AGENT, env={"OK": "v\x00"}),
            "spec.env[OK]",
            "NUL",
        ),
        (
            "x",
            M.ManagedAgentSpec(module=TEST_AGENT, args=["a\x00"]),
            "spec.args[0]",
            "NUL",
        ),
        (
            "x",
            M.ManagedAgentSpec(command=M.CommandLine(argv=[sys.executable, "\x00"])),
            "spec.command.argv",
            "NUL",
        ),
        (
            "x",
            M.ManagedAgentSpec(command=M.CommandLine(argv=[sys.executable, *["a"] * 65])),
            "spec.command.argv",
            "at most 64",
        ),
        (
            "x",
            M.ManagedAgentSpec(module=TEST_AGENT, app_dir="/no/such/dir"),
            "spec.app_dir",
            "not a directory",
        ),
        (
            "x",
            M.ManagedAgentSpec(a2a_card_url="http://h/card", app_dir="/tmp"),
            "spec.app_dir",
            "only with module or command",
        ),
        (
            "x",
            M.ManagedAgentSpec(module=TEST_AGENT, args=["a"] * 65),
            "spec.args",
            "at most 64",
        ),
        (
            "x",
            M.ManagedAgentSpec(module=TEST_AGENT, restart_policy=9),  # type: ignore[arg-type]
            "spec.restart_policy",
            "unknown",
        ),
    ],
)
async def test_bad_specs_are_invalid_and_start_nothing(
    managed: Managed, name: str, spec: M.ManagedAgentSpec, field: str, words: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        await create(managed, name, spec)
    assert field in _field(err), err.value.violations
    assert any(words in v.description for v in err.value.violations if v.field == field)
    assert managed.supervisor.statuses() == []
    assert managed.manager.names() == []


@pytest.mark.parametrize(
    ("spec", "ok"),
    [
        (M.ManagedAgentSpec(module=TEST_AGENT, app_dir=ROOT, replicas=MAX_REPLICAS), True),
        (M.ManagedAgentSpec(module=TEST_AGENT, app_dir=ROOT, args=["--log-level"] * 64), True),
        (M.ManagedAgentSpec(module=TEST_AGENT, app_dir=ROOT, env={"OK": "v" * 4096}), True),
    ],
)
async def test_limits_are_allowed_at_exactly_the_limit(
    managed: Managed, spec: M.ManagedAgentSpec, ok: bool
) -> None:
    from meshwright.agent.manager import check_fields

    assert (check_fields("x" * 63, spec) == []) is ok


async def test_unknown_names_and_replicas_are_not_found(managed: Managed) -> None:
    for method, request in [
        ("GetManagedAgent", M.GetManagedAgentRequest(name="ghost")),
        ("StartManagedAgent", M.StartManagedAgentRequest(name="ghost")),
        ("StopManagedAgent", M.StopManagedAgentRequest(name="ghost")),
        ("ScaleManagedAgent", M.ScaleManagedAgentRequest(name="ghost", replicas=1)),
        ("DeleteManagedAgent", M.DeleteManagedAgentRequest(name="ghost")),
        ("ListManagedAgentEvents", M.ListManagedAgentEventsRequest(name="ghost")),
        ("GetManagedAgentLogs", M.GetManagedAgentLogsRequest(name="ghost")),
    ]:
        with pytest.raises(NotFound) as err:
            await managed.call(method, request)
        assert err.value.reason == "MANAGED_AGENT_NOT_FOUND", method
    await create(managed, "real", module_spec(), start=False)
    with pytest.raises(NotFound) as err:
        await managed.call(
            "RestartManagedAgent", M.RestartManagedAgentRequest(name="real", replica=1)
        )
    assert err.value.reason == "REPLICA_NOT_FOUND"
    with pytest.raises(NotFound) as err:
        await managed.call(
            "GetManagedAgentLogs", M.GetManagedAgentLogsRequest(name="real", replica=0)
        )
    assert err.value.reason == "REPLICA_NOT_FOUND"


async def test_request_limits_at_the_limit_and_one_past(managed: Managed) -> None:
    await create(managed, "lim", module_spec(), start=False)
    ok = await managed.call(
        "GetManagedAgentLogs", M.GetManagedAgentLogsRequest(name="lim", tail_lines=1000)
    )
    assert list(ok.lines) == []
    with pytest.raises(InvalidArgument) as err:
        await managed.call(
            "GetManagedAgentLogs", M.GetManagedAgentLogsRequest(name="lim", tail_lines=1001)
        )
    assert _field(err) == ["tail_lines"]
    for n, good in ((MAX_REPLICAS + 1, False), (-1, False)):
        with pytest.raises(InvalidArgument) as err:
            await managed.call(
                "ScaleManagedAgent", M.ScaleManagedAgentRequest(name="lim", replicas=n)
            )
        assert _field(err) == ["replicas"] and not good
    stop = M.StopManagedAgentRequest(name="lim")
    stop.grace.FromSeconds(300)
    await managed.call("StopManagedAgent", stop)
    stop.grace.FromSeconds(301)
    with pytest.raises(InvalidArgument) as err:
        await managed.call("StopManagedAgent", stop)
    assert _field(err) == ["grace"]
    with pytest.raises(InvalidArgument) as err:
        await managed.call("GetManagedAgent", M.GetManagedAgentRequest())
    assert _field(err) == ["name"]
    with pytest.raises(InvalidArgument) as err:
        await managed.call("ListManagedAgents", M.ListManagedAgentsRequest(page_token="junk"))
    assert _field(err) == ["page_token"]


async def test_lists_page(managed: Managed) -> None:
    for name in ("c", "a", "b"):
        await create(managed, name, module_spec(), start=False)
    first = await managed.call("ListManagedAgents", M.ListManagedAgentsRequest(page_size=2))
    assert [a.name for a in first.managed_agents] == ["a", "b"] and first.next_page_token
    rest = await managed.call(
        "ListManagedAgents",
        M.ListManagedAgentsRequest(page_size=2, page_token=first.next_page_token),
    )
    assert [a.name for a in rest.managed_agents] == ["c"] and not rest.next_page_token

    await managed.call("StartManagedAgent", M.StartManagedAgentRequest(name="a"))
    events = await managed.call(
        "ListManagedAgentEvents", M.ListManagedAgentEventsRequest(name="a", page_size=1)
    )
    assert [e.sequence for e in events.events] == [1] and events.next_page_token
    more = await managed.call(
        "ListManagedAgentEvents",
        M.ListManagedAgentEventsRequest(name="a", page_token=events.next_page_token),
    )
    assert [e.sequence for e in more.events] == [2] and not more.next_page_token


async def test_history_keeps_the_last_changes(managed: Managed) -> None:
    # A command that prints a READY line and waits: cheap to start and stop many times.
    ready = "echo 'READY agent_id=h endpoint=127.0.0.1:9'; exec sleep 30"
    await create(
        managed, "h", M.ManagedAgentSpec(command=M.CommandLine(argv=["sh", "-c", ready])),
        start=False,
    )  # fmt: skip
    kept = managed.manager.history  # 50 in this fixture
    for _ in range(kept // 2 + 1):  # 2 changes a start... and 2 a stop
        await managed.call("StartManagedAgent", M.StartManagedAgentRequest(name="h"))
        await managed.call("StopManagedAgent", M.StopManagedAgentRequest(name="h"))
        if len(managed.manager.events("h")) >= kept:
            break
    await managed.call("StartManagedAgent", M.StartManagedAgentRequest(name="h"))
    events = managed.manager.events("h")
    assert len(events) == kept
    seqs = [e.sequence for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + kept)) and seqs[0] > 1


# -- access ------------------------------------------------------------------------------


async def test_only_admins_change_and_read_logs_services_may_read(managed: Managed) -> None:
    await create(managed, "guarded", module_spec(), start=False)
    for role in ("client", "agent", "service"):
        with pytest.raises(PermissionDenied):
            await managed.call(
                "CreateManagedAgent",
                M.CreateManagedAgentRequest(name="evil", spec=module_spec()),
                role=role,
                subject="x",
            )
        with pytest.raises(PermissionDenied):
            await managed.call(
                "GetManagedAgentLogs", M.GetManagedAgentLogsRequest(name="guarded"), role=role,
                subject="x",
            )  # fmt: skip
    got = await managed.call(
        "GetManagedAgent", M.GetManagedAgentRequest(name="guarded"), role="service", subject="m"
    )
    assert got.managed_agent.name == "guarded"
    for role in ("client", "agent"):
        with pytest.raises(PermissionDenied):
            await managed.call(
                "ListManagedAgents", M.ListManagedAgentsRequest(), role=role, subject="x"
            )
    assert managed.manager.names() == ["guarded"]


async def test_rest_through_the_gateway(managed: Managed) -> None:
    assert managed.node.http_url
    admin = {"authorization": f"Bearer {managed.keys.token('admin', 'ops')}"}
    async with httpx.AsyncClient(base_url=managed.node.http_url, timeout=30) as http:
        made = await http.post(
            "/v1/managedAgents",
            json={"name": "web", "spec": {"module": TEST_AGENT, "appDir": ROOT}, "start": True},
            headers=admin,
        )
        assert made.status_code == 200, made.text
        assert made.json()["managedAgent"]["readyReplicas"] == 1
        scaled = await http.post("/v1/managedAgents/web:scale", json={"replicas": 0}, headers=admin)
        assert scaled.status_code == 200 and scaled.json()["managedAgent"].get("processes") in (
            None,
            [],
        )
        bad = await http.post(
            "/v1/managedAgents", json={"name": "w2", "spec": {"module": "x"}}, headers=admin
        )
        assert bad.status_code == 400 and "spec.module" in bad.text
        anonymous = await http.get("/v1/managedAgents")
        assert anonymous.status_code == 401
        client = {"authorization": f"Bearer {managed.keys.token('client', 'alice')}"}
        assert (await http.get("/v1/managedAgents", headers=client)).status_code == 403
        events = await http.get("/v1/managedAgents/web/events", headers=admin)
        assert events.status_code == 200 and events.json()["events"]
        missing = await http.get("/v1/managedAgents/nope", headers=admin)
        assert missing.status_code == 404


SERVICE_READS = {"GetManagedAgent", "ListManagedAgents", "ListManagedAgentEvents"}


@pytest.mark.parametrize("method", [m.name for m in M.DESCRIPTOR.services_by_name[
    "AgentManagerService"].methods])  # fmt: skip
async def test_every_rpc_is_closed_to_clients_and_agents_and_open_to_admins(
    managed: Managed, method: str
) -> None:
    """The policy of each RPC, read back by calling it: admins everything, services the
    reads, agents and clients nothing (and the call changes nothing)."""
    await create(managed, "p", module_spec(), start=False)
    descriptor = M.DESCRIPTOR.services_by_name["AgentManagerService"].methods_by_name[method]
    request_class = getattr(M, descriptor.input_type.name)
    request = request_class()
    if "name" in request_class.DESCRIPTOR.fields_by_name:
        request.name = "p"
    if method == "CreateManagedAgent":
        request.spec.CopyFrom(module_spec())
    streaming = descriptor.server_streaming

    async def call(role: str) -> None:
        client = managed.client(role, "x")
        if streaming:
            async for _ in client.stream(method, request):
                break
        else:
            await client.call(method, request)

    for role in ("client", "agent") + (() if method in SERVICE_READS else ("service",)):
        with pytest.raises(PermissionDenied):
            await call(role)
    assert managed.supervisor.statuses() == [] and managed.manager.names() == ["p"]
    if method in SERVICE_READS:
        await call("service")
    if not streaming:
        await call("admin")
