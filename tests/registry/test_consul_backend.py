"""What is particular to the Consul backend, on the Consul double: what a registration
looks like in Consul, its limits, Consul down, index resets, what heartbeats cost
Consul, a dead agent, the reaper, and ``consul://`` URLs.

The behaviour every backend shares is in ``test_backend_conformance``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import InvalidArgument, MeshServer, Unavailable
from meshwright.mesh.security import insecure_pipeline
from meshwright.registry import (
    AgentQuery,
    AgentStopped,
    HistoryTrimmed,
    LeaseMismatch,
    Registry,
)
from meshwright.registry import _consul_codec as codec
from meshwright.registry.consul import DEFAULT_SHARDS, ConsulRegistryBackend, shard_service
from meshwright.registry.records import (
    ACTIVE,
    ADDED,
    DRAINING,
    INACTIVE,
    REMOVED,
    STOPPED,
    UPDATED,
)
from tests.conftest import eventually, free_port
from tests.consul_double import ConsulDouble, ConsulDoubleConfig
from tests.registry.conftest import card

INTERVAL_S = 0.2
WAIT_S = 5.0
"""The follower's blocking wait: tests that must not depend on it finish well before."""

Doubles = Callable[..., Awaitable[ConsulDouble]]


@pytest.fixture
async def doubles() -> AsyncIterator[Doubles]:
    """``await make(**ConsulDoubleConfig fields)``: started doubles, stopped afterwards."""
    made: list[ConsulDouble] = []

    async def make(**config: Any) -> ConsulDouble:
        config = {"first_check_at_once": True, "min_check_interval_s": 0.1, **config}
        double = ConsulDouble(ConsulDoubleConfig(**config))
        await double.start()
        made.append(double)
        return double

    try:
        yield make
    finally:
        for double in made:
            await double.stop()


@pytest.fixture
async def double(doubles: Doubles) -> ConsulDouble:
    return await doubles()


@pytest.fixture
async def agent() -> AsyncIterator[MeshServer]:
    """A real gRPC server serving grpc.health.v1, for agents to register at."""
    server = MeshServer(pipeline=insecure_pipeline(), port=0)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


Registries = Callable[..., Awaitable[Registry]]


@pytest.fixture
async def registries() -> AsyncIterator[Registries]:
    """``await make(double, **Registry options)``: a started registry, each on its own
    backend (a replica), stopped afterwards."""
    made: list[Registry] = []

    async def make(double: ConsulDouble, **options: Any) -> Registry:
        backend_options = options.pop("backend_options", {})
        registry = Registry(
            _backend(double, **backend_options),
            default_lease_ttl_s=30.0,
            sweep_interval_s=3600,
            stopped_retention_s=options.pop("stopped_retention_s", 0.3),
            **options,
        )
        await registry.start()
        made.append(registry)
        return registry

    try:
        yield make
    finally:
        for registry in made:
            await registry.stop()


def _backend(double: ConsulDouble, **options: Any) -> ConsulRegistryBackend:
    return ConsulRegistryBackend(
        "127.0.0.1",
        double.port,
        **{
            "health_check_interval_s": INTERVAL_S,
            "health_check_timeout_s": 1.0,
            "deregister_after_s": 60.0,
            "watch_wait_s": WAIT_S,
            "retry_max_s": 0.2,
            **options,
        },
    )


@contextlib.asynccontextmanager
async def _http(double: ConsulDouble) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://{double.address}", timeout=5) as client:
        yield client


async def _agent_api(double: ConsulDouble) -> tuple[dict[str, Any], dict[str, Any]]:
    """``GET /v1/agent/services`` and ``GET /v1/agent/checks``."""
    async with _http(double) as http:
        services = (await http.get("/v1/agent/services")).raise_for_status().json()
        checks = (await http.get("/v1/agent/checks")).raise_for_status().json()
    return services, checks


async def _state(registry: Registry, agent_id: str) -> int:
    return int((await registry.get_agent(agent_id)).state)


async def _running(registry: Registry, agent_id: str) -> None:
    await eventually(lambda: _is(registry, agent_id, ACTIVE), timeout=10)


async def _is(registry: Registry, agent_id: str, state: int) -> bool:
    return await _state(registry, agent_id) == state


# -- the mapping -----------------------------------------------------------------


async def test_a_registration_is_a_consul_instance_with_meta_tags_and_two_checks(
    double: ConsulDouble, agent: MeshServer, registries: Registries
) -> None:
    registry = await registries(double)
    the_card = card("text-tools", "text.wordcount", "text.upper")
    the_card.version = "1.4.2"
    the_card.skills[0].price = 3
    reg = await registry.register(
        the_card,
        agent.address,
        agent_id="a1",
        tags=["gpu"],
        capacity=3,
        lease_ttl_s=5.0,
        payout_account_id="acct-7",
    )
    lease = reg.lease_id
    services, checks = await _agent_api(double)
    service = services["a1"]
    host, _, port = agent.address.rpartition(":")
    assert service["Service"] == shard_service("a1", DEFAULT_SHARDS) and service["ID"] == "a1"
    assert (service["Address"], service["Port"]) == (host, int(port))
    assert service["Tags"] == ["gpu", "skill:text.wordcount", "skill:text.upper"]
    meta = service["Meta"]
    assert {k: v for k, v in meta.items() if not k.startswith("mw_card_")} == {
        "mw_skills": "text.wordcount,text.upper",
        "mw_prices": "text.wordcount=3,text.upper=0",
        "mw_capacity": "3",
        "mw_version": "1.4.2",
        "mw_payout": "acct-7",
        "mw_lease": lease,
        "mw_ttl": "5.0",
        "mw_register": repr(reg.register_time.ToNanoseconds() / 1e9),
    }
    assert agent_pb2.AgentCard.FromString(base64.b64decode(meta["mw_card_0"])) == the_card

    grpc_check = checks[f"mw-grpc:a1:{lease}"]
    assert grpc_check["Type"] == "grpc" and grpc_check["ServiceID"] == "a1"
    assert grpc_check["Definition"]["GRPC"] == agent.address
    assert grpc_check["Interval"] == "200ms" and grpc_check["Timeout"] == "1s"
    assert grpc_check["Definition"]["DeregisterCriticalServiceAfter"] == "1m0s"
    lease_check = checks[f"mw-ttl:a1:{lease}"]
    assert lease_check["Type"] == "ttl" and lease_check["Definition"]["TTL"] == "5s"
    assert lease_check["Status"] == "passing"
    assert lease_check["Definition"]["DeregisterCriticalServiceAfter"] == "1m0s"
    assert set(checks) == {f"mw-grpc:a1:{lease}", f"mw-ttl:a1:{lease}"}
    await eventually(lambda: double.check_status(f"mw-grpc:a1:{lease}") == "passing")
    await _running(registry, "a1")


async def test_heartbeats_set_the_lease_check_and_repeats_do_not_move_consuls_index(
    doubles: Doubles, agent: MeshServer, registries: Registries
) -> None:
    # Output changes reach the catalog at once here: the worst case for watchers.
    double = await doubles(check_update_interval_s=0)
    registry = await registries(double)
    lease = (await registry.register(card("t"), agent.address, agent_id="a1")).lease_id
    await _running(registry, "a1")
    check = f"mw-ttl:a1:{lease}"

    await registry.heartbeat("a1", lease, load=1)
    note = json.loads(double.check_output(check) or "")
    assert note["load"] == 1 and double.check_status(check) == "passing"
    shard = shard_service("a1", DEFAULT_SHARDS)
    index = double.service_index(shard)
    for _ in range(5):
        await registry.heartbeat("a1", lease, load=1)
    assert double.service_index(shard) == index  # nothing for watchers to read
    assert json.loads(double.check_output(check) or "") == note

    await registry.heartbeat("a1", lease, load=2)
    assert double.service_index(shard) > index
    await registry.heartbeat("a1", lease, load=2, draining=True)
    assert double.check_status(check) == "warning"
    await registry.heartbeat("a1", lease, error="disk full")
    assert double.check_status(check) == "critical"
    assert json.loads(double.check_output(check) or "")["error"] == "disk full"
    await registry.report_failure("a1", "exited with code 3")
    assert json.loads(double.check_output(check) or "")["error"] == "exited with code 3"

    # A stale lease names no check: Consul refuses it, the current check is untouched.
    before = double.check_output(check)
    with pytest.raises(LeaseMismatch):
        await registry.heartbeat("a1", "stale-lease", load=9)
    assert double.check_output(check) == before


async def test_this_process_reads_its_own_load_before_consul_writes_it_back(
    double: ConsulDouble, agent: MeshServer, registries: Registries
) -> None:
    # Consul's default check_update_interval (5 min) holds back output-only changes.
    writer, reader = await registries(double), await registries(double)
    lease = (await writer.register(card("t"), agent.address, agent_id="a1")).lease_id
    await _running(writer, "a1")
    await _running(reader, "a1")
    assert (await writer.heartbeat("a1", lease, load=4)).load == 4
    assert (await writer.get_agent("a1")).load == 4
    assert [a.load for a in await writer.list_agents()] == [4]
    # The record shown is made once per report: listings reuse it (and its message).
    query = AgentQuery(now=time.time())
    first, again = (await writer.backend.list(query)), (await writer.backend.list(query))
    assert first.records[0] is again.records[0] and first.records[0].load == 4
    assert (await writer.heartbeat("a1", lease, load=6)).load == 6
    assert (await writer.backend.list(query)).records[0].load == 6
    # A status change carries the note with it, to every replica at once.
    await writer.heartbeat("a1", lease, load=5, draining=True)
    await eventually(lambda: _is(reader, "a1", DRAINING))
    assert (await reader.get_agent("a1")).load == 5


async def test_a_card_that_does_not_fit_in_consul_meta_is_invalid_argument(
    double: ConsulDouble, agent: MeshServer, registries: Registries
) -> None:
    registry = await registries(double)
    huge = agent_pb2.AgentCard(
        name="huge", skills=[agent_pb2.AgentSkill(id="s", description="d" * 40_000)]
    )
    with pytest.raises(InvalidArgument) as err:
        await registry.register(huge, agent.address, agent_id="a1")
    assert [v.field for v in err.value.violations] == ["card"]
    assert "Consul" in err.value.violations[0].description
    many = card("many", *(f"skill-{i:03d}-with-a-rather-long-name" for i in range(40)))
    with pytest.raises(InvalidArgument) as err:
        await registry.register(many, agent.address, agent_id="a2")
    assert [v.field for v in err.value.violations] == ["card"]
    assert double.services() == {}
    # Just under the limit fits.
    fits = agent_pb2.AgentCard(
        name="big", skills=[agent_pb2.AgentSkill(id="s", description="d" * 20_000)]
    )
    await registry.register(fits, agent.address, agent_id="a3")
    assert (await registry.get_agent("a3")).card == fits


async def test_a_stopped_agent_is_a_marker_instance_until_a_sweep_removes_it(
    double: ConsulDouble, agent: MeshServer, registries: Registries
) -> None:
    registry = await registries(double, stopped_retention_s=0.3)
    other = await registries(double)
    lease = (await registry.register(card("t"), agent.address, agent_id="a1")).lease_id
    await _running(registry, "a1")
    await registry.deregister("a1")
    services, checks = await _agent_api(double)
    assert "mw_stopped" in services["a1"]["Meta"]
    assert set(checks) == {"mw-stopped:a1"} and checks["mw-stopped:a1"]["Status"] == "critical"
    with pytest.raises(AgentStopped):
        await other.heartbeat("a1", lease)
    await eventually(lambda: _is(other, "a1", STOPPED))
    assert [r.agent_id for r in await other.backend.passing()] == []  # type: ignore[attr-defined]

    async def swept() -> bool:
        await registry.sweep()
        return "a1" not in double.services()

    await eventually(swept, timeout=5)
    await eventually(lambda: _gone(other, "a1"))
    # A sweep by any replica after that finds nothing left to do.
    assert (await other.sweep()).removed == []


async def _gone(registry: Registry, agent_id: str) -> bool:
    return await registry.backend.get(agent_id) is None


async def test_passing_is_consuls_own_answer_and_matches_active(
    double: ConsulDouble, agent: MeshServer, registries: Registries
) -> None:
    registry = await registries(double)
    backend = registry.backend
    assert isinstance(backend, ConsulRegistryBackend)
    leases = {}
    for agent_id in ("a", "b", "c"):
        leases[agent_id] = await registry.register(card("t"), agent.address, agent_id=agent_id)
        await _running(registry, agent_id)
    await registry.heartbeat("b", leases["b"].lease_id, draining=True)
    await registry.deregister("c")
    assert [r.agent_id for r in await backend.passing()] == ["a"]
    assert [a.agent_id for a in await registry.list_agents(state=ACTIVE)] == ["a"]


# -- Consul's failures and resets -----------------------------------------------------


async def test_consul_unreachable_is_unavailable(
    doubles: Doubles, agent: MeshServer, registries: Registries
) -> None:
    nobody = ConsulRegistryBackend("127.0.0.1", free_port(), request_timeout_s=2)
    with pytest.raises(Unavailable) as err:
        await nobody.start()
    assert "unreachable" in err.value.message and "127.0.0.1" in err.value.message

    double = await doubles()
    registry = await registries(double)
    lease = (await registry.register(card("t"), agent.address, agent_id="a1")).lease_id
    await double.stop()
    with pytest.raises(Unavailable) as err:
        await registry.heartbeat("a1", lease)
    assert "consul" in err.value.message
    with pytest.raises(Unavailable):
        await registry.register(card("t"), agent.address, agent_id="a2")
    # Once the follower has failed, reads say so instead of serving an old view.
    await eventually(lambda: _read_fails(registry))


async def _read_fails(registry: Registry) -> bool:
    try:
        await registry.list_agents()
    except Unavailable:
        return True
    return False


async def test_an_index_reset_relists_and_watchers_stay_consistent(
    double: ConsulDouble, agent: MeshServer, registries: Registries
) -> None:
    registry = await registries(double)
    backend = registry.backend
    a = await registry.register(card("t"), agent.address, agent_id="a")
    await registry.register(card("t"), agent.address, agent_id="b")
    await _running(registry, "a")
    await _running(registry, "b")
    watch = registry.watch()
    assert [(await anext(watch)).record.agent_id for _ in range(2)] == ["a", "b"]
    before = backend.revision
    assert backend.changes_since(before) == []

    # Every follower waits in its blocking query (one mid-cycle would send its old
    # index after the reset and, as with Consul, wait out its whole wait first).
    assert isinstance(backend, ConsulRegistryBackend)
    followers = len(backend._shards) + 1  # and the catalog's
    await eventually(lambda: double.blocked_queries == followers)
    double.reset_index(1)  # a snapshot restore: Consul's indexes go back
    async with _http(double) as http:
        (await http.put("/v1/agent/service/deregister/b")).raise_for_status()
    started = time.monotonic()
    event = await anext(watch)
    assert (event.type, event.record.agent_id) == (REMOVED, "b")
    assert event.revision > before
    # The change after the reset is seen at once: a follower that kept its old index
    # would have blocked for its whole wait.
    await registry.heartbeat("a", a.lease_id, draining=True)
    event = await anext(watch)
    assert (event.type, event.record.agent_id, event.state) == (UPDATED, "a", DRAINING)
    assert time.monotonic() - started < WAIT_S
    assert [r.agent_id for r in (await backend.list(AgentQuery(now=time.time()))).records] == ["a"]
    # Revisions from before the reset can no longer be vouched for.
    with pytest.raises(HistoryTrimmed):
        backend.changes_since(before)
    assert [c.record.agent_id for c in backend.changes_since(backend.revision - 1)] == ["a"]
    await watch.aclose()


async def test_an_instance_meshwright_did_not_write_is_ignored(
    double: ConsulDouble, agent: MeshServer, registries: Registries
) -> None:
    registry = await registries(double)
    async with _http(double) as http:
        body = {"Name": "meshwright-agent", "ID": "by-hand", "Port": 1}
        (await http.put("/v1/agent/service/register", json=body)).raise_for_status()
    await registry.register(card("t"), agent.address, agent_id="a1")
    assert [a.agent_id for a in await registry.list_agents()] == ["a1"]


# -- liveness ---------------------------------------------------------------------------


async def test_a_killed_agent_reads_inactive_within_ttl_and_one_interval_then_runs_again(
    double: ConsulDouble, registries: Registries
) -> None:
    registry = await registries(double)
    ttl_s = 2.0
    server = MeshServer(pipeline=insecure_pipeline(), port=0)
    await server.start()
    port = server.port
    lease = (
        await registry.register(card("t"), server.address, agent_id="a1", lease_ttl_s=ttl_s)
    ).lease_id

    async def heartbeats() -> None:
        while True:
            await registry.heartbeat("a1", lease)
            await asyncio.sleep(0.3)  # the agent's own heartbeat period

    beating = asyncio.create_task(heartbeats())
    try:
        await _running(registry, "a1")
        # Kill the agent: its gRPC server and its heartbeats stop.
        beating.cancel()
        await server.stop(0)
        killed = time.monotonic()
        await eventually(lambda: _is(registry, "a1", INACTIVE), timeout=ttl_s + 5)
        assert time.monotonic() - killed <= ttl_s + INTERVAL_S + 1.0
        # Restarted on the same port, heartbeating again: running again.
        server = MeshServer(pipeline=insecure_pipeline(), port=port)
        await server.start()
        beating = asyncio.create_task(heartbeats())
        await _running(registry, "a1")
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
        await server.stop(0)


async def test_consuls_reaper_removes_an_agent_critical_past_deregister_after(
    doubles: Doubles, agent: MeshServer, registries: Registries
) -> None:
    double = await doubles(reap_interval_s=0.05)
    registry = await registries(double)
    await registry.register(card("t"), agent.address, agent_id="a1", lease_ttl_s=1.0)
    await eventually(lambda: _is(registry, "a1", INACTIVE), timeout=6)
    assert "a1" in double.services()  # a lapse is a state, not a removal
    double.advance(61)  # past DeregisterCriticalServiceAfter's one-minute floor
    await eventually(lambda: _gone(registry, "a1"), timeout=5)


# -- URLs ------------------------------------------------------------------------------


def test_from_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
    plain = ConsulRegistryBackend.from_url("consul://10.0.0.5:8600", health_check_interval_s=2)
    assert plain.address == "http://10.0.0.5:8600" and plain._token is None
    assert plain.health_check_interval_s == 2
    assert ConsulRegistryBackend.from_url("consul://consul").address == "http://consul:8500"
    # Consul's HTTPS port is 8501.
    assert ConsulRegistryBackend.from_url("consuls://c").address == "https://c:8501"
    tls = ConsulRegistryBackend.from_url("consuls://consul.internal:8501?token=s3cret")
    assert tls.address == "https://consul.internal:8501" and tls._token == "s3cret"
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    assert ConsulRegistryBackend.from_url("consul://h:1")._token == "from-env"
    assert ConsulRegistryBackend.from_url("consul://[::1]:8500").address == "http://[::1]:8500"
    with pytest.raises(InvalidArgument):
        ConsulRegistryBackend.from_url("redis://h:1")
    with pytest.raises(ValueError):
        ConsulRegistryBackend.from_url("consul://h:notaport")


def test_from_url_shards_at_the_limits() -> None:
    assert ConsulRegistryBackend.from_url("consul://h:1").shards == DEFAULT_SHARDS
    assert ConsulRegistryBackend.from_url("consul://h:1?shards=1").shards == 1
    assert ConsulRegistryBackend.from_url("consul://h:1?token=t&shards=256").shards == 256
    for bad in ("0", "257", "x", "", "-1"):
        with pytest.raises(InvalidArgument) as err:
            ConsulRegistryBackend.from_url(f"consul://h:1?shards={bad}")
        assert err.value.violations[0].field == "registry_url"
    with pytest.raises(ValueError):
        ConsulRegistryBackend("h", 1, shards=0)
    with pytest.raises(ValueError):
        ConsulRegistryBackend("h", 1, shards=257)
    assert ConsulRegistryBackend("h", 1, shards=256).shards == 256


# -- shards ------------------------------------------------------------------------------


def test_shard_names_are_a_stable_spread_of_agent_ids() -> None:
    assert shard_service("anything", 1) == "meshwright-agent"
    # crc32, not hash(): every process and every replica agrees.
    assert shard_service("a1", 16) == "meshwright-agent-" + str(zlib.crc32(b"a1") % 16)
    names = {shard_service(f"agent-{i}", 16) for i in range(1000)}
    assert names == {f"meshwright-agent-{k}" for k in range(16)}
    assert all(codec.is_agent_service(n) for n in names | {"meshwright-agent"})
    for other in ("meshwright-agent-", "meshwright-agent-x", "meshwright-agents", "redis"):
        assert not codec.is_agent_service(other)


async def test_a_change_wakes_only_its_own_shard(
    doubles: Doubles, agent: MeshServer, registries: Registries
) -> None:
    double = await doubles()
    registry = await registries(double, backend_options={"shards": 4})
    ids = [f"a{i}" for i in range(12)]
    for agent_id in ids:
        await registry.register(card("t"), agent.address, agent_id=agent_id)
    services, _ = await _agent_api(double)
    assert {sid: s["Service"] for sid, s in services.items() if sid in ids} == {
        agent_id: shard_service(agent_id, 4) for agent_id in ids
    }
    assert len({shard_service(a, 4) for a in ids}) > 1
    mine = shard_service("a0", 4)
    others = {f"meshwright-agent-{k}" for k in range(4)} - {mine}
    before = {name: double.service_index(name) for name in others | {mine}}
    await registry.deregister("a0")
    assert double.service_index(mine) > before[mine]
    assert {name: double.service_index(name) for name in others} == {
        name: before[name] for name in others
    }
    # Every shard's agents are in the one view.
    assert [a.agent_id for a in await registry.list_agents(state=STOPPED)] == ["a0"]
    listed = await registry.list_agents()
    assert sorted(a.agent_id for a in listed if a.state != STOPPED) == sorted(ids[1:])


async def test_replicas_with_other_shards_serve_one_view(
    double: ConsulDouble, agent: MeshServer, registries: Registries
) -> None:
    sharded = await registries(double, backend_options={"shards": 4})
    single = await registries(double, backend_options={"shards": 1})
    await sharded.register(card("t"), agent.address, agent_id="s1")
    await single.register(card("t"), agent.address, agent_id="p1")
    for registry in (sharded, single):
        await _running(registry, "s1")
        await _running(registry, "p1")
    # Registered again through the other replica, the agent moves to another shard:
    # both views end with it under its new lease. (The two shards' answers race, so a
    # watcher may see it leave the old shard before it arrives in the new one.)
    assert shard_service("s1", 4) != shard_service("s1", 1)
    watch = sharded.watch()
    assert sorted([(await anext(watch)).record.agent_id for _ in range(2)]) == ["p1", "s1"]
    moved = await single.register(card("t"), agent.address, agent_id="s1")
    while True:
        event = await asyncio.wait_for(anext(watch), 10)
        assert event.record.agent_id == "s1"
        if event.type != REMOVED:
            break
    assert event.type in (ADDED, UPDATED) and event.record.lease_id == moved.lease_id
    for registry in (sharded, single):
        await eventually(lambda r=registry: _lease_is(r, "s1", moved.lease_id), timeout=10)
    assert [a.agent_id for a in await sharded.list_agents()] == ["p1", "s1"]
    await watch.aclose()


async def _lease_is(registry: Registry, agent_id: str, lease_id: str) -> bool:
    return (await registry.get_agent(agent_id)).lease_id == lease_id


async def test_a_revision_from_another_replica_is_refused_not_misread(
    double: ConsulDouble, agent: MeshServer, registries: Registries
) -> None:
    first = await registries(double)
    await first.register(card("t"), agent.address, agent_id="a1")
    await asyncio.sleep(0.01)
    second = await registries(double)
    await second.register(card("t"), agent.address, agent_id="a2")
    await _running(first, "a2")
    revision = first.backend.revision
    assert first.backend.changes_since(revision) == []
    # The other replica's revisions are its own; resuming there means listing again.
    with pytest.raises(HistoryTrimmed):
        second.backend.changes_since(revision)


def test_a_fingerprint_is_consuls_change_marks_else_the_content() -> None:
    check = {"CheckID": "mw-ttl:a:l", "Status": "passing", "Output": "", "ModifyIndex": 7}
    entry = {
        "Node": {"ModifyIndex": 3},
        "Service": {"ID": "a", "Address": "h", "Port": 1, "Meta": {}, "ModifyIndex": 5},
        "Checks": [check],
    }
    marked = codec.fingerprint(entry)
    assert marked == (3, 5, ("mw-ttl:a:l", 7))
    # Consul raises a mark on every write: the marks alone tell a change.
    assert codec.fingerprint({**entry, "Checks": [{**check, "ModifyIndex": 8}]}) != marked
    assert codec.fingerprint({**entry, "Node": {"ModifyIndex": 4}}) != marked
    # Without marks (a server that sends none), the content decides.
    bare = {"Service": {"ID": "a", "Port": 1}, "Checks": [{"CheckID": "c", "Status": "passing"}]}
    content = codec.fingerprint(bare)
    assert codec.fingerprint({**bare}) == content
    critical = {**bare, "Checks": [{"CheckID": "c", "Status": "critical"}]}
    assert codec.fingerprint(critical) != content
    assert codec.fingerprint({**bare, "Service": {"ID": "a", "Port": 2}}) != content
