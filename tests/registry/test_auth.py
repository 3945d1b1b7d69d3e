"""The registry with auth on, over real gRPC: agents act only as themselves, are paid only
into their own accounts, and nobody but the lease holder sees a lease id.

The attacks of issue 6 are here as regression tests: each now fails with the right code
and leaves the registration exactly as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from meshwright.mesh import MeshServer, RemoteServiceClient
from meshwright.mesh.auth import ANONYMOUS_ADMIN, Principal, Role
from meshwright.mesh.context import CallContext, serving
from meshwright.mesh.errors import PermissionDenied
from meshwright.mesh.pipeline import Pipeline
from meshwright.mesh.policy import NotOwner, RoleNotAllowed
from meshwright.registry import SERVICE, Registry, RegistryServicer
from meshwright.registry.errors import PayoutNotOwn
from meshwright.registry.v1 import registry_pb2
from tests.conftest import eventually
from tests.registry.conftest import Collector, FakeClock, register_request
from tests.support_auth import test_keys

ACTIVE = registry_pb2.AGENT_STATE_ACTIVE
DRAINING = registry_pb2.AGENT_STATE_DRAINING

Client = Callable[[str, str], RemoteServiceClient]
"""``as_(role, subject)``: a registry client calling with that principal's token."""


@pytest.fixture
async def as_(registry: Registry) -> AsyncIterator[Client]:
    """The registry served with auth on; clients per (role, subject)."""
    keys = test_keys()
    server = MeshServer(pipeline=Pipeline(verifier=keys.verifier()), port=0)
    server.add(RegistryServicer(registry), SERVICE)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)

    def make(role: str, subject: str) -> RemoteServiceClient:
        return RemoteServiceClient(channel, SERVICE, token=keys.token(role, subject))

    try:
        yield make
    finally:
        await channel.close()
        await registry.stop()
        await server.stop(0)


async def _register(as_: Client, agent_id: str, **fields: object) -> registry_pb2.Agent:
    reply = await as_("agent", agent_id).call(
        "RegisterAgent",
        register_request(agent_id, **fields),  # type: ignore[arg-type]
    )
    return reply.agent


async def _get(as_: Client, agent_id: str) -> registry_pb2.Agent:
    """The registration as the agent itself sees it (lease id included)."""
    reply = await as_("agent", agent_id).call(
        "GetAgent", registry_pb2.GetAgentRequest(agent_id=agent_id)
    )
    return reply.agent


# -- identity --------------------------------------------------------------


async def test_an_agent_registers_heartbeats_and_deregisters_as_itself(as_: Client) -> None:
    me = as_("agent", "worker-1")
    # No agent_id: the token's subject, not a generated id.
    reply = await me.call("RegisterAgent", register_request("", endpoint="10.0.0.1:7000", ttl_s=30))
    agent = reply.agent
    assert agent.agent_id == "worker-1"
    assert agent.payout_account_id == "worker-1"
    assert agent.lease_id  # the holder gets its lease id from the response

    beat = await me.call(
        "Heartbeat",
        registry_pb2.HeartbeatRequest(agent_id="worker-1", lease_id=agent.lease_id, load=2),
    )
    assert beat.agent.load == 2 and beat.agent.lease_id == agent.lease_id
    drained = await me.call(
        "Heartbeat",
        registry_pb2.HeartbeatRequest(agent_id="worker-1", lease_id=agent.lease_id, draining=True),
    )
    assert drained.agent.state == DRAINING

    gone = await me.call(
        "DeregisterAgent", registry_pb2.DeregisterAgentRequest(agent_id="worker-1")
    )
    assert gone.agent.agent_id == "worker-1"
    listing = await as_("admin", "root").call("ListAgents", registry_pb2.ListAgentsRequest())
    assert [(a.agent_id, a.state) for a in listing.agents] == [
        ("worker-1", registry_pb2.AGENT_STATE_STOPPED)
    ]


async def test_attack_reregister_another_agent_with_ones_own_payout(as_: Client) -> None:
    victim = await _register(as_, "victim", endpoint="10.0.0.1:7000")
    before = await _get(as_, "victim")

    with pytest.raises(PermissionDenied) as err:
        await as_("agent", "mallory").call(
            "RegisterAgent",
            register_request("victim", endpoint="6.6.6.6:666", payout_account_id="mallory"),
        )
    assert isinstance(err.value, NotOwner)

    after = await _get(as_, "victim")
    assert after == before  # endpoint, payout, lease: all as they were
    assert after.endpoint == "10.0.0.1:7000" and after.payout_account_id == "victim"
    assert after.lease_id == victim.lease_id


async def test_attack_heartbeat_another_agent_into_draining(as_: Client) -> None:
    victim = await _register(as_, "victim")
    # Even holding the real lease id (it cannot read it any more, see below), another
    # agent cannot heartbeat the victim.
    for attacker in (as_("agent", "mallory"), as_("client", "victim")):
        with pytest.raises(PermissionDenied):
            await attacker.call(
                "Heartbeat",
                registry_pb2.HeartbeatRequest(
                    agent_id="victim", lease_id=victim.lease_id, draining=True
                ),
            )
    after = await _get(as_, "victim")
    assert after.state == ACTIVE
    assert not after.HasField("last_heartbeat_time")  # no heartbeat got through
    # The victim's own heartbeat still works with the same lease.
    await as_("agent", "victim").call(
        "Heartbeat", registry_pb2.HeartbeatRequest(agent_id="victim", lease_id=victim.lease_id)
    )


@pytest.mark.parametrize(
    ("role", "subject"),
    [
        ("client", "alice"),
        ("agent", "mallory"),
        ("admin", "root"),
        ("service", "mesh"),
        ("admin", "anonymous"),  # a real admin token, not auth turned off
    ],
)
async def test_lease_ids_are_hidden_from_everyone_but_the_holder(
    as_: Client, role: str, subject: str
) -> None:
    victim = await _register(as_, "victim")
    assert victim.lease_id
    reader = as_(role, subject)
    watch = Collector(reader.stream("WatchAgents", registry_pb2.WatchAgentsRequest()))
    try:
        await eventually(lambda: watch.seen() == [("ADDED", "victim")])
        # A live event too, not only the snapshot.
        await as_("agent", "victim").call(
            "Heartbeat",
            registry_pb2.HeartbeatRequest(agent_id="victim", lease_id=victim.lease_id, load=1),
        )
        await eventually(lambda: watch.seen() == [("ADDED", "victim"), ("UPDATED", "victim")])
    finally:
        await watch.close()
    got = await reader.call("GetAgent", registry_pb2.GetAgentRequest(agent_id="victim"))
    listing = await reader.call("ListAgents", registry_pb2.ListAgentsRequest())
    shown = [got.agent, *listing.agents, *(e.agent for e in watch.events)]
    assert [a.agent_id for a in shown] == ["victim"] * 4
    assert [a.lease_id for a in shown] == [""] * 4
    assert watch.events[1].agent.load == 1  # the rest of the registration is there


async def test_the_holder_sees_its_own_lease_and_nobody_elses(as_: Client) -> None:
    a = await _register(as_, "a")
    b = await _register(as_, "b")
    me = as_("agent", "a")
    watch = Collector(me.stream("WatchAgents", registry_pb2.WatchAgentsRequest()))
    try:
        await eventually(lambda: watch.seen() == [("ADDED", "a"), ("ADDED", "b")])
        await me.call("Heartbeat", registry_pb2.HeartbeatRequest(agent_id="a", lease_id=a.lease_id))
        await eventually(lambda: len(watch.events) == 3)
    finally:
        await watch.close()
    listing = await me.call("ListAgents", registry_pb2.ListAgentsRequest())
    assert {x.agent_id: x.lease_id for x in listing.agents} == {"a": a.lease_id, "b": ""}
    assert [e.agent.lease_id for e in watch.events] == [a.lease_id, "", a.lease_id]
    theirs = await me.call("GetAgent", registry_pb2.GetAgentRequest(agent_id="b"))
    assert theirs.agent.lease_id == "" and b.lease_id


async def test_an_agent_cannot_deregister_another(as_: Client) -> None:
    await _register(as_, "victim")
    with pytest.raises(NotOwner):
        await as_("agent", "mallory").call(
            "DeregisterAgent", registry_pb2.DeregisterAgentRequest(agent_id="victim")
        )
    assert (await _get(as_, "victim")).state == ACTIVE
    # An admin may.
    await as_("admin", "root").call(
        "DeregisterAgent", registry_pb2.DeregisterAgentRequest(agent_id="victim")
    )


async def test_clients_and_services_do_not_register(as_: Client) -> None:
    for role in ("client", "service"):
        with pytest.raises(RoleNotAllowed):
            await as_(role, "x").call("RegisterAgent", register_request("x"))
    listing = await as_("admin", "root").call("ListAgents", registry_pb2.ListAgentsRequest())
    assert list(listing.agents) == []


async def test_admin_registers_any_agent_and_holds_the_lease_it_was_granted(
    as_: Client,
) -> None:
    admin = as_("admin", "root")
    reply = await admin.call("RegisterAgent", register_request("a1"))
    granted = reply.agent.lease_id
    assert reply.agent.agent_id == "a1" and granted  # its caller holds the new lease
    beat = await admin.call(
        "Heartbeat", registry_pb2.HeartbeatRequest(agent_id="a1", lease_id=granted, load=1)
    )
    assert beat.agent.lease_id == granted and beat.agent.load == 1
    # Reads show it to the agent principal only, never to the admin.
    got = await admin.call("GetAgent", registry_pb2.GetAgentRequest(agent_id="a1"))
    assert got.agent.lease_id == ""
    assert (await _get(as_, "a1")).lease_id == granted
    # The agent itself registers again (its id is its own) and gets a lease it can use.
    mine = await _register(as_, "a1")
    assert mine.lease_id and mine.lease_id != granted
    await as_("agent", "a1").call(
        "Heartbeat", registry_pb2.HeartbeatRequest(agent_id="a1", lease_id=mine.lease_id)
    )


# -- payout accounts --------------------------------------------------------


async def test_payout_account_own_or_empty_ok(as_: Client) -> None:
    assert (await _register(as_, "a1", payout_account_id="a1")).payout_account_id == "a1"
    assert (await _register(as_, "a2")).payout_account_id == "a2"


@pytest.mark.parametrize("payout", ["mallory", "a1x", "A1", "treasury"])
async def test_payout_account_not_own_is_refused(as_: Client, payout: str) -> None:
    before = await _register(as_, "a1", endpoint="10.0.0.1:7000")
    with pytest.raises(PayoutNotOwn) as err:
        await _register(as_, "a1", endpoint="10.0.0.2:7000", payout_account_id=payout)
    assert err.value.reason == "PAYOUT_NOT_OWN"
    assert isinstance(err.value, PermissionDenied)
    after = await _get(as_, "a1")
    assert after == before  # nothing replaced, the old lease still current


async def test_payout_account_not_own_is_refused_for_a_fresh_id_too(as_: Client) -> None:
    with pytest.raises(PayoutNotOwn):
        await as_("agent", "newbie").call(
            "RegisterAgent", register_request("", payout_account_id="mallory")
        )
    listing = await as_("admin", "root").call("ListAgents", registry_pb2.ListAgentsRequest())
    assert list(listing.agents) == []


async def test_admin_sets_any_payout_account(as_: Client) -> None:
    reply = await as_("admin", "root").call(
        "RegisterAgent", register_request("a1", payout_account_id="treasury")
    )
    assert reply.agent.payout_account_id == "treasury"


# -- the domain checks the caller itself ------------------------------------


def _as(role: Role, subject: str) -> contextlib.AbstractContextManager[CallContext]:
    return serving(CallContext(method="/test", principal=Principal(role, subject), deadline=None))


async def test_domain_refuses_foreign_ids_whatever_serves_it(
    registry: Registry, clock: FakeClock
) -> None:
    """Without the pipeline's policy in front (another transport, a mesh policy), the
    registry itself still binds an agent to its id and payout account."""
    req = register_request("victim")
    victim = await registry.register(req.card, req.endpoint, agent_id="victim")
    with _as(Role.AGENT, "mallory"):
        with pytest.raises(NotOwner):
            await registry.register(req.card, "6.6.6.6:666", agent_id="victim")
        with pytest.raises(NotOwner):
            await registry.heartbeat("victim", victim.lease_id, draining=True)
        with pytest.raises(NotOwner):
            await registry.deregister("victim")
        with pytest.raises(PayoutNotOwn):
            await registry.register(req.card, req.endpoint, payout_account_id="victim")
        mine = await registry.register(req.card, req.endpoint)
        assert mine.agent_id == "mallory" and mine.lease_id
        assert (await registry.get_agent("victim")).lease_id == ""
    with _as(Role.CLIENT, "victim"):
        with pytest.raises(NotOwner):
            await registry.heartbeat("victim", victim.lease_id)
    got = await registry.get_agent("victim")  # internal caller: trusted, sees the lease
    assert got.endpoint == req.endpoint and got.state == ACTIVE
    assert got.lease_id == victim.lease_id


async def test_auth_off_shows_lease_ids(registry: Registry) -> None:
    """Auth off: every caller is the anonymous admin, nobody is told apart, nothing hidden."""
    req = register_request("a1")
    agent = await registry.register(req.card, req.endpoint, agent_id="a1")
    anonymous = CallContext(method="/test", principal=ANONYMOUS_ADMIN, deadline=None)
    with serving(anonymous):
        assert (await registry.get_agent("a1")).lease_id == agent.lease_id
        assert [a.lease_id for a in await registry.list_agents()] == [agent.lease_id]
