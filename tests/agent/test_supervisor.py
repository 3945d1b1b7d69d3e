"""Agents as child processes under the supervisor, against a real registry."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from meshwright.agent import (
    SERVICE,
    AgentSpec,
    AgentStartError,
    AgentSupervisor,
    ProcessState,
)
from meshwright.agent.supervisor import _Child, new_agent_id
from meshwright.agent.v1 import agent_pb2
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh import LocalServiceClient, RemoteServiceClient
from meshwright.mesh.auth import Role
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.errors import PermissionDenied, Unauthenticated
from meshwright.mesh.pipeline import Pipeline
from meshwright.mesh.security import Security
from meshwright.node import Node, start_node
from meshwright.registry.v1 import registry_pb2
from tests.agent.conftest import Mesh
from tests.conftest import eventually
from tests.support_auth import NO_AUTH_ENV, test_keys

pytestmark = pytest.mark.timeout(30)

ANALYST = "meshwright.agent.samples:analyst_agent"


async def test_ready_registered_then_sigterm_deregisters(mesh: Mesh) -> None:
    echoed: list[tuple[str, str]] = []
    async with AgentSupervisor(
        mesh.address,
        lease_ttl_s=1.0,
        echo=lambda name, line: echoed.append((name, line)),
        env=NO_AUTH_ENV,
    ) as sup:
        status = await sup.start(AgentSpec(target=ANALYST, name="analyst"))
        assert status.state == ProcessState.RUNNING
        assert status.pid and status.agent_id.startswith("analyst-") and status.endpoint
        assert await mesh.state(status.agent_id) == registry_pb2.AGENT_STATE_ACTIVE
        registered = await mesh.agent(status.agent_id)
        assert registered.endpoint == status.endpoint

        channel = grpc.aio.insecure_channel(status.endpoint)
        try:
            request = agent_pb2.ExecuteTaskRequest(task_id="t", skill="text.upper")
            request.input.update({"text": "quiet"})
            reply = await RemoteServiceClient(channel, SERVICE).call("ExecuteTask", request)
            assert dict(reply.task.output) == {"text": "QUIET"}
        finally:
            await channel.close()

        stopped = await sup.stop("analyst")
        assert stopped.state == ProcessState.STOPPED
        assert stopped.exit_code == 0
        # Deregistered on the way out: kept as STOPPED for a while.
        assert await mesh.state(status.agent_id) == registry_pb2.AGENT_STATE_STOPPED
        output = sup.output("analyst")
        assert any(line.startswith("READY agent_id=") for line in output)
        assert any("deregistered" in line for line in output)
        assert ("analyst", output[0]) in echoed


async def test_kill_9_lets_the_lease_lapse(mesh: Mesh) -> None:
    async with AgentSupervisor(
        mesh.address, lease_ttl_s=1.0, max_restarts=0, env=NO_AUTH_ENV
    ) as sup:
        status = await sup.start(ANALYST, name="victim")
        assert status.pid is not None
        os.kill(status.pid, signal.SIGKILL)
        dead = await sup.wait_state("victim", ProcessState.ERROR, timeout=5)
        assert dead.exit_code == -signal.SIGKILL
        assert dead.restarts == 0

        async def inactive() -> bool:
            return await mesh.state(status.agent_id) == registry_pb2.AGENT_STATE_INACTIVE

        await eventually(inactive, timeout=5)


async def test_restarts_a_crashed_agent_with_the_same_id(mesh: Mesh) -> None:
    async with AgentSupervisor(
        mesh.address, lease_ttl_s=1.0, max_restarts=2, restart_backoff_s=0.1, env=NO_AUTH_ENV
    ) as sup:
        first = await sup.start(ANALYST, name="phoenix")
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        await sup.wait_state("phoenix", ProcessState.RESTARTING, timeout=5)
        again = await sup.wait_state("phoenix", ProcessState.RUNNING, timeout=15)
        assert again.restarts == 1 and again.pid != first.pid
        assert again.exit_code == -signal.SIGKILL
        assert again.agent_id == first.agent_id
        agent = await mesh.agent(again.agent_id)
        assert agent.state == registry_pb2.AGENT_STATE_ACTIVE
        assert agent.endpoint == again.endpoint
    assert sup.status("phoenix").state == ProcessState.STOPPED


async def test_a_target_that_cannot_load_fails_to_start(mesh: Mesh) -> None:
    async with AgentSupervisor(mesh.address, env=NO_AUTH_ENV) as sup:
        with pytest.raises(AgentStartError, match="exited with code 2 before READY"):
            await sup.start("no_such_module_here:agent", name="broken")
        status = sup.status("broken")
        assert status.state == ProcessState.ERROR and status.exit_code == 2
        assert any("cannot load" in line for line in sup.output("broken"))


async def test_copies_of_one_target_get_their_own_names_and_ids(mesh: Mesh) -> None:
    async with AgentSupervisor(mesh.address, lease_ttl_s=1.0, env=NO_AUTH_ENV) as sup:
        one = await sup.start("meshwright.agent.samples:sysinfo_agent")
        two = await sup.start("meshwright.agent.samples:sysinfo_agent")
        assert (one.name, two.name) == ("sysinfo_agent", "sysinfo_agent-2")
        assert one.agent_id != two.agent_id
        assert [s.state for s in sup.statuses()] == [ProcessState.RUNNING] * 2
        with pytest.raises(ValueError, match="running"):
            await sup.start("meshwright.agent.samples:sysinfo_agent", name="sysinfo_agent")
    assert [s.state for s in sup.statuses()] == [ProcessState.STOPPED] * 2
    assert await mesh.state(one.agent_id) == registry_pb2.AGENT_STATE_STOPPED
    assert await mesh.state(two.agent_id) == registry_pb2.AGENT_STATE_STOPPED


async def test_close_while_a_crashed_agent_is_relaunching_stops_it(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup = AgentSupervisor(mesh.address, lease_ttl_s=1.0, restart_backoff_s=0.05, env=NO_AUTH_ENV)
    first = await sup.start(ANALYST, name="slowpoke")
    assert first.pid is not None

    launching = asyncio.Event()
    relaunched: list[asyncio.subprocess.Process] = []
    real_exec = asyncio.create_subprocess_exec

    async def slow_exec(*args: Any, **kw: Any) -> asyncio.subprocess.Process:
        launching.set()
        await asyncio.sleep(0.3)  # close() arrives while the relaunch is under way
        proc = await real_exec(*args, **kw)
        relaunched.append(proc)
        return proc

    monkeypatch.setattr(asyncio, "create_subprocess_exec", slow_exec)
    try:
        os.kill(first.pid, signal.SIGKILL)
        await asyncio.wait_for(launching.wait(), 5)
        assert sup.status("slowpoke").state == ProcessState.STARTING
        await asyncio.wait_for(sup.close(), 5)
        assert sup.status("slowpoke").state == ProcessState.STOPPED
        assert len(relaunched) == 1
        proc = relaunched[0]
        assert proc.returncode is not None
        with pytest.raises(ProcessLookupError):  # exited and reaped
            os.kill(proc.pid, 0)
    finally:  # on failure, leave no process or monitor behind
        for proc in relaunched:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for status in sup.statuses():
            monitor = sup._children[status.name].monitor
            if monitor is not None and not monitor.done():
                monitor.cancel()
                with contextlib.suppress(BaseException):
                    await monitor


# -- identity: the supervisor hands each child its own agent token -------------------


@pytest.fixture
async def secured() -> AsyncIterator[Node]:
    """A whole node with auth on (registry and economy check every token)."""
    keys = test_keys()
    security = Security(
        Pipeline(verifier=keys.verifier()), keys.token("service", "mesh"), None, keys.issuer()
    )
    node = await start_node(
        MeshConfig(grpc_port=0, http_port=0, grace_s=0, sweep_interval_s=0.1),
        security=security,
        gateway=False,
    )
    try:
        yield node
    finally:
        await node.stop()


def _secured_supervisor(node: Node, **kw: Any) -> AgentSupervisor:
    keys = test_keys()
    return AgentSupervisor(
        node.grpc_address,
        lease_ttl_s=1.0,
        issuer=keys.issuer(),
        auth_public_key=str(keys.public_key_file),
        **kw,
    )


async def _execute(endpoint: str, token: str | None) -> dict[str, Any]:
    channel = grpc.aio.insecure_channel(endpoint)
    try:
        request = agent_pb2.ExecuteTaskRequest(task_id="t", skill="text.upper")
        request.input.update({"text": "hi"})
        reply = await RemoteServiceClient(channel, SERVICE, token=token).call(
            "ExecuteTask", request
        )
        return dict(reply.task.output)
    finally:
        await channel.close()


async def test_each_child_registers_with_its_own_agent_token(secured: Node) -> None:
    keys = test_keys()
    async with _secured_supervisor(secured) as sup:
        one = await sup.start(AgentSpec(target=ANALYST, name="analyst"))
        two = await sup.start(AgentSpec(target=ANALYST, name="analyst-b"))
        # Ids decided before launch: name plus a random suffix, one each.
        assert re.fullmatch(r"analyst-[0-9a-f]{8}", one.agent_id), one.agent_id
        assert re.fullmatch(r"analyst-b-[0-9a-f]{8}", two.agent_id), two.agent_id
        registry = secured.clients["registry"]
        page = await registry.call("ListAgents", registry_pb2.ListAgentsRequest())
        assert {a.agent_id for a in page.agents} == {one.agent_id, two.agent_id}
        # Each payout account belongs to its agent principal: the token named that agent.
        economy = secured.clients["economy"]
        for status in (one, two):
            got = await economy.call(
                "GetAccount", economy_pb2.GetAccountRequest(account_id=status.agent_id)
            )
            assert got.account.owner == f"agent:{status.agent_id}"
        # Children check callers with the public key they were given: anonymous and
        # client callers are refused, the mesh (service) is served.
        assert one.endpoint
        with pytest.raises(Unauthenticated):
            await _execute(one.endpoint, None)
        with pytest.raises(PermissionDenied):
            await _execute(one.endpoint, keys.token("client", "someone"))
        assert await _execute(one.endpoint, keys.token("service", "mesh")) == {"text": "HI"}


async def test_a_restarted_child_keeps_its_id_and_gets_a_fresh_token(secured: Node) -> None:
    async with _secured_supervisor(secured, max_restarts=2, restart_backoff_s=0.1) as sup:
        first = await sup.start(ANALYST, name="phoenix")
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        await sup.wait_state("phoenix", ProcessState.RESTARTING, timeout=5)
        again = await sup.wait_state("phoenix", ProcessState.RUNNING, timeout=15)
        assert again.agent_id == first.agent_id and again.pid != first.pid

        async def running() -> registry_pb2.GetAgentResponse | None:
            reply = await secured.clients["registry"].call(
                "GetAgent", registry_pb2.GetAgentRequest(agent_id=again.agent_id)
            )
            # STARTING until the registry's first health probe of the new process passes.
            ok = reply.agent.state == registry_pb2.AGENT_STATE_ACTIVE
            return reply if ok else None

        reply = await eventually(running)
        assert reply.agent.endpoint == again.endpoint


async def test_without_a_token_a_child_is_refused_by_a_secured_mesh(secured: Node) -> None:
    # The same supervisor minus the issuer: the child has the public key but no token.
    keys = test_keys()
    async with AgentSupervisor(
        secured.grpc_address, auth_public_key=str(keys.public_key_file), ready_timeout_s=2
    ) as sup:
        with pytest.raises(AgentStartError):
            await sup.start(ANALYST, name="nobody")
        assert sup.status("nobody").state == ProcessState.ERROR
        assert any("TOKEN_MISSING" in line for line in sup.output("nobody"))


def test_child_environment_carries_token_key_or_the_no_auth_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = test_keys()
    monkeypatch.setenv("MESHWRIGHT_TOKEN", "a-users-client-token")
    monkeypatch.setenv("MESHWRIGHT_INSECURE_NO_AUTH", "1")
    sup = AgentSupervisor("127.0.0.1:1", issuer=keys.issuer(), auth_public_key="/k.pem")
    child = _Child.__new__(_Child)  # only spec and agent_id are read
    child.spec = AgentSpec(target=ANALYST)
    child.agent_id = "analyst-0123abcd"
    env = sup._child_env(child)
    principal = keys.verifier().verify(env["MESHWRIGHT_TOKEN"])
    assert (principal.role, principal.subject) == (Role.AGENT, "analyst-0123abcd")
    assert env["MESHWRIGHT_AUTH_PUBLIC_KEY"] == "/k.pem"
    assert "MESHWRIGHT_INSECURE_NO_AUTH" not in env  # an inherited switch cannot turn it off

    open_sup = AgentSupervisor("127.0.0.1:1", insecure_no_auth=True)
    env = open_sup._child_env(child)
    assert env["MESHWRIGHT_INSECURE_NO_AUTH"] == "1"

    with pytest.raises(ValueError, match="auth off"):
        AgentSupervisor("127.0.0.1:1", issuer=keys.issuer(), insecure_no_auth=True)


def test_new_agent_ids_are_id_safe_and_unique() -> None:
    ids = {new_agent_id("sysinfo") for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"sysinfo-[0-9a-f]{8}", i) for i in ids)
    assert re.fullmatch(r"my-agent-[0-9a-f]{8}", new_agent_id("my agent!"))
    assert re.fullmatch(r"agent-[0-9a-f]{8}", new_agent_id("!!!"))


async def test_a_child_killed_unasked_is_reported_error_then_runs_again(secured: Node) -> None:
    keys = test_keys()
    registry = secured.clients["registry"]
    assert isinstance(registry, LocalServiceClient)
    admin = registry.with_token(keys.token("admin", "root"))
    # A slow restart, so the ERROR the supervisor reports is there to be seen.
    async with _secured_supervisor(
        secured, max_restarts=1, restart_backoff_s=1.5, failures=admin
    ) as sup:
        first = await sup.start(ANALYST, name="crashy")
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)

        async def state_of() -> registry_pb2.Agent:
            reply = await admin.call(
                "GetAgent", registry_pb2.GetAgentRequest(agent_id=first.agent_id)
            )
            return reply.agent

        async def errored() -> registry_pb2.Agent | None:
            agent = await state_of()
            return agent if agent.state == registry_pb2.AGENT_STATE_ERROR else None

        failed = await eventually(errored, timeout=5)
        assert failed.state_reason == "killed by SIGKILL"
        await sup.wait_state("crashy", ProcessState.RUNNING, timeout=15)

        async def running() -> bool:
            return (await state_of()).state == registry_pb2.AGENT_STATE_ACTIVE

        await eventually(running, timeout=10)


async def test_without_a_failures_client_nothing_is_reported(secured: Node) -> None:
    async with _secured_supervisor(secured, max_restarts=0) as sup:
        first = await sup.start(ANALYST, name="quiet")
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        await sup.wait_state("quiet", ProcessState.ERROR, timeout=5)
        reply = await secured.clients["registry"].call(
            "GetAgent", registry_pb2.GetAgentRequest(agent_id=first.agent_id)
        )
        # Still judged by its lease (and health), never ERROR: nobody reported it.
        assert reply.agent.state != registry_pb2.AGENT_STATE_ERROR
        assert sup.status("quiet").error == "killed by SIGKILL"
