"""RegisterAgent, GetAgent, DeregisterAgent and request validation."""

from __future__ import annotations

import re

import pytest
from google.protobuf import duration_pb2

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import InvalidArgument, NotFound, ServiceClient
from meshwright.registry import AgentNotFound, AgentStopped, LeaseMismatch, Registry
from meshwright.registry.v1 import registry_pb2
from tests.registry.conftest import T0, FakeClock, card, register_request

ACTIVE = registry_pb2.AGENT_STATE_ACTIVE
STOPPED = registry_pb2.AGENT_STATE_STOPPED


async def test_register_get_list_deregister(
    client: ServiceClient, registry: Registry, clock: FakeClock
) -> None:
    reply = await client.call("RegisterAgent", register_request("a1", tags=["gpu"], capacity=4))
    agent = reply.agent
    assert (agent.agent_id, agent.endpoint, agent.state) == ("a1", "127.0.0.1:50051", ACTIVE)
    assert list(agent.tags) == ["gpu"] and agent.capacity == 4 and agent.load == 0
    assert agent.card.name == "text-tools"
    assert [s.id for s in agent.card.skills] == ["text.wordcount"]
    assert re.fullmatch(r"[0-9a-f]{32}", agent.lease_id)
    assert agent.lease_ttl.ToTimedelta().total_seconds() == 10.0
    assert agent.register_time.ToNanoseconds() == int(T0 * 1e9)
    assert agent.lease_expire_time.ToNanoseconds() == int((T0 + 10) * 1e9)
    assert not agent.HasField("last_heartbeat_time")
    assert agent.payout_account_id == "a1"

    got = await client.call("GetAgent", registry_pb2.GetAgentRequest(agent_id="a1"))
    assert got.agent == agent
    listed = await client.call("ListAgents", registry_pb2.ListAgentsRequest())
    assert list(listed.agents) == [agent] and listed.next_page_token == ""

    gone = await client.call("DeregisterAgent", registry_pb2.DeregisterAgentRequest(agent_id="a1"))
    assert gone.agent == agent
    # Kept, STOPPED, for the retention period: offered no work, heartbeats refused.
    stopped = (await client.call("GetAgent", registry_pb2.GetAgentRequest(agent_id="a1"))).agent
    assert (stopped.state, stopped.state_reason) == (STOPPED, "deregistered")
    assert stopped.state_change_time.ToNanoseconds() == int(T0 * 1e9)
    with pytest.raises(AgentStopped) as again:
        await client.call("DeregisterAgent", registry_pb2.DeregisterAgentRequest(agent_id="a1"))
    assert isinstance(again.value, NotFound) and again.value.reason == "AGENT_STOPPED"
    with pytest.raises(AgentStopped):
        await client.call(
            "Heartbeat", registry_pb2.HeartbeatRequest(agent_id="a1", lease_id=agent.lease_id)
        )
    listed = await client.call("ListAgents", registry_pb2.ListAgentsRequest())
    assert [a.state for a in listed.agents] == [STOPPED]

    clock.advance(registry.stopped_retention_s - 0.001)
    assert not (await registry.sweep()).removed  # one tick before the end of the retention
    clock.advance(0.001)
    assert [r.agent_id for r in (await registry.sweep()).removed] == ["a1"]
    with pytest.raises(AgentNotFound) as missing:
        await client.call("GetAgent", registry_pb2.GetAgentRequest(agent_id="a1"))
    assert isinstance(missing.value, NotFound) and missing.value.reason == "AGENT_NOT_FOUND"
    with pytest.raises(NotFound):
        await client.call("DeregisterAgent", registry_pb2.DeregisterAgentRequest(agent_id="a1"))
    assert not (await client.call("ListAgents", registry_pb2.ListAgentsRequest())).agents


async def test_generated_id_and_payout_account(client: ServiceClient) -> None:
    req = register_request("", card=card("Text Tools  v2!"))
    agent = (await client.call("RegisterAgent", req)).agent
    assert re.fullmatch(r"text-tools-v2-[0-9a-f]{8}", agent.agent_id)
    assert agent.payout_account_id == agent.agent_id

    other = (await client.call("RegisterAgent", req)).agent
    assert other.agent_id != agent.agent_id

    paid = register_request("a2", payout_account_id="acct.team-7")
    assert (await client.call("RegisterAgent", paid)).agent.payout_account_id == "acct.team-7"

    odd = register_request("", card=card("???"))
    assert re.fullmatch(
        r"agent-[0-9a-f]{8}", (await client.call("RegisterAgent", odd)).agent.agent_id
    )


async def test_reregister_replaces_and_issues_a_new_lease(client: ServiceClient) -> None:
    first = (await client.call("RegisterAgent", register_request("a1"))).agent
    second = (
        await client.call(
            "RegisterAgent", register_request("a1", "image.resize", endpoint="10.0.0.2:7000")
        )
    ).agent
    assert second.lease_id != first.lease_id
    assert [s.id for s in second.card.skills] == ["image.resize"]
    assert second.endpoint == "10.0.0.2:7000"
    listed = await client.call("ListAgents", registry_pb2.ListAgentsRequest())
    assert [a.agent_id for a in listed.agents] == ["a1"]
    with pytest.raises(LeaseMismatch):
        await client.call(
            "Heartbeat", registry_pb2.HeartbeatRequest(agent_id="a1", lease_id=first.lease_id)
        )


@pytest.mark.parametrize(
    ("ttl_s", "granted_s"), [(None, 10.0), (0.0, 10.0), (1.0, 1.0), (30.5, 30.5), (3600.0, 3600.0)]
)
async def test_lease_ttl_from_request_or_default(
    client: ServiceClient, ttl_s: float | None, granted_s: float
) -> None:
    agent = (await client.call("RegisterAgent", register_request("a1", ttl_s=ttl_s))).agent
    assert agent.lease_ttl.ToTimedelta().total_seconds() == granted_s
    expire = agent.lease_expire_time.ToNanoseconds() - agent.register_time.ToNanoseconds()
    assert expire == int(granted_s * 1e9)


async def test_every_violation_at_once(client: ServiceClient) -> None:
    bad_card = agent_pb2.AgentCard(
        name="",
        skills=[
            agent_pb2.AgentSkill(id="text.ok"),
            agent_pb2.AgentSkill(id=""),
            agent_pb2.AgentSkill(id="Bad id!"),
            agent_pb2.AgentSkill(id="Text.OK", price=-5),
            agent_pb2.AgentSkill(id="-leading"),
        ],
    )
    req = registry_pb2.RegisterAgentRequest(
        agent_id="-bad",
        card=bad_card,
        endpoint="localhost",
        tags=["ok", ""],
        capacity=-1,
        lease_ttl=duration_pb2.Duration(nanos=500_000_000),
        payout_account_id="no spaces",
    )
    with pytest.raises(InvalidArgument) as err:
        await client.call("RegisterAgent", req)
    fields = [v.field for v in err.value.violations]
    assert fields == [
        "agent_id",
        "card.name",
        "card.skills[1].id",
        "card.skills[2].id",
        "card.skills[3].id",
        "card.skills[3].price",
        "card.skills[4].id",
        "endpoint",
        "tags[1]",
        "capacity",
        "lease_ttl",
        "payout_account_id",
    ]
    by_field = {v.field: v.description for v in err.value.violations}
    assert by_field["card.skills[3].id"] == "duplicates card.skills[0].id"
    assert by_field["card.skills[1].id"] == "is required"


async def test_card_and_endpoint_are_required(client: ServiceClient) -> None:
    with pytest.raises(InvalidArgument) as err:
        await client.call("RegisterAgent", registry_pb2.RegisterAgentRequest())
    assert [v.field for v in err.value.violations] == ["card", "endpoint"]

    no_skills = register_request("a1", card=agent_pb2.AgentCard(name="x"))
    with pytest.raises(InvalidArgument) as err:
        await client.call("RegisterAgent", no_skills)
    assert [v.field for v in err.value.violations] == ["card.skills"]


@pytest.mark.parametrize(
    ("endpoint", "ok"),
    [
        ("127.0.0.1:1", True),
        ("agents.internal:65535", True),
        ("[::1]:50051", True),
        ("host", False),
        (":8080", False),
        ("host:", False),
        ("host:0", False),
        ("host:65536", False),
        ("host:-1", False),
        ("host:http", False),
        ("my host:80", False),
    ],
)
async def test_endpoint_must_be_host_and_port(
    client: ServiceClient, endpoint: str, ok: bool
) -> None:
    req = register_request("a1", endpoint=endpoint)
    if ok:
        assert (await client.call("RegisterAgent", req)).agent.endpoint == endpoint
    else:
        with pytest.raises(InvalidArgument) as err:
            await client.call("RegisterAgent", req)
        assert [v.field for v in err.value.violations] == ["endpoint"]


@pytest.mark.parametrize("ttl_s", [0.999, 3600.001, -1.0])
async def test_lease_ttl_out_of_range(client: ServiceClient, ttl_s: float) -> None:
    req = register_request("a1")
    req.lease_ttl.FromNanoseconds(round(ttl_s * 1e9))
    with pytest.raises(InvalidArgument) as err:
        await client.call("RegisterAgent", req)
    assert [v.field for v in err.value.violations] == ["lease_ttl"]


async def test_id_fields_of_other_rpcs_are_validated(client: ServiceClient) -> None:
    for method, req in [
        ("GetAgent", registry_pb2.GetAgentRequest()),
        ("DeregisterAgent", registry_pb2.DeregisterAgentRequest(agent_id="bad id")),
    ]:
        with pytest.raises(InvalidArgument) as err:
            await client.call(method, req)
        assert [v.field for v in err.value.violations] == ["agent_id"]
    with pytest.raises(InvalidArgument) as err:
        await client.call("Heartbeat", registry_pb2.HeartbeatRequest(load=-1))
    assert [v.field for v in err.value.violations] == ["agent_id", "lease_id", "load"]


async def test_registry_keeps_its_own_copy_of_the_card(registry: Registry) -> None:
    mine = card("text-tools", "text.wordcount")
    await registry.register(mine, "h:1", agent_id="a1")
    mine.skills[0].id = "changed"
    got = await registry.get_agent("a1")
    assert [s.id for s in got.card.skills] == ["text.wordcount"]
