"""The Consul double answers like a Consul agent, through the real py-consul client.

Every test crosses a socket: ``consul.aio.Consul`` where py-consul has the call, raw HTTP
where it has none or hides the answer (py-consul turns a 404 into False). GRPC and HTTP
checks probe real servers started on port 0.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.conftest import eventually
from tests.consul_double import (
    INITIAL_INDEX,
    ConsulDouble,
    ConsulDoubleProcess,
    consul_client,
    consul_double,
    consul_double_factory,
    format_go_duration,
    parse_go_duration_ns,
)

# The double's fixtures, imported so pytest finds them in this module (tests/conftest.py
# does the same for redis); naming them here marks the imports as used.
FIXTURES = (consul_double, consul_double_factory)

Factory = Callable[..., Awaitable[ConsulDouble]]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
async def client(consul_double: ConsulDouble) -> AsyncIterator[Any]:
    """py-consul's asyncio client on the default double."""
    c = consul_client(consul_double)
    try:
        yield c
    finally:
        await c.close()


class Raw:
    """Plain HTTP to the double, for what py-consul cannot say or hides."""

    def __init__(self, double: ConsulDouble) -> None:
        self.base = f"http://{double.address}"
        self.session = aiohttp.ClientSession()

    async def call(
        self, method: str, path: str, *, params: dict[str, str] | None = None, json: Any = None
    ) -> tuple[int, str, dict[str, str]]:
        async with self.session.request(method, self.base + path, params=params, json=json) as resp:
            return resp.status, await resp.text(), dict(resp.headers)

    async def close(self) -> None:
        await self.session.close()


@pytest.fixture
async def raw(consul_double: ConsulDouble) -> AsyncIterator[Raw]:
    r = Raw(consul_double)
    try:
        yield r
    finally:
        await r.close()


async def health_of(c: Any, name: str, **kw: Any) -> tuple[int, list[dict[str, Any]]]:
    index, entries = await c.health.service(name, **kw)
    return int(index), entries


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 2.0) -> None:
    """``eventually`` for an async condition (typed as Any so mypy can follow it)."""
    check: Callable[[], Any] = condition
    await eventually(check, timeout=timeout)


def check_in(entries: list[dict[str, Any]], check_id: str) -> dict[str, Any]:
    for entry in entries:
        for check in entry["Checks"]:
            if check["CheckID"] == check_id:
                return check
    raise AssertionError(f"no check {check_id} in {entries}")


def ttl_check(check_id: str, ttl: str = "10m", status: str | None = "passing", **kw: Any) -> Any:
    check: dict[str, Any] = {"CheckID": check_id, "TTL": ttl, **kw}
    if status is not None:
        check["Status"] = status
    return check


class GrpcTarget:
    """A real grpc.aio server with grpc.health.v1 on 127.0.0.1:0."""

    def __init__(self) -> None:
        self.health = health.aio.HealthServicer()
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop(grace=None)


@pytest.fixture
async def grpc_target() -> AsyncIterator[GrpcTarget]:
    target = GrpcTarget()
    await target.start()
    try:
        yield target
    finally:
        await target.stop()


# --------------------------------------------------------------------------- basics


async def test_status_leader_and_an_empty_catalog_like_a_fresh_server(client: Any) -> None:
    assert await client.status.leader() == "127.0.0.1:8300"
    index, services = await client.catalog.services()
    assert services == {"consul": []}
    assert int(index) >= 1
    index, entries = await health_of(client, "nothing-here")
    assert entries == [] and index >= 1


async def test_register_replace_and_deregister(
    consul_double: ConsulDouble, client: Any, raw: Raw
) -> None:
    assert await client.agent.service.register(
        "web", service_id="w1", address="127.0.0.1", port=8080, tags=["a"], meta={"k": "v"}
    )
    agent = await client.agent.services()
    assert agent["w1"]["Service"] == "web" and agent["w1"]["Port"] == 8080
    assert agent["w1"]["Tags"] == ["a"] and agent["w1"]["Meta"] == {"k": "v"}
    _, entries = await health_of(client, "web")
    assert [e["Service"]["ID"] for e in entries] == ["w1"]
    assert entries[0]["Checks"][0]["CheckID"] == "serfHealth"

    # Same ID again: the service is replaced, not duplicated.
    assert await client.agent.service.register("web", service_id="w1", port=9090, tags=["b"])
    _, entries = await health_of(client, "web")
    assert len(entries) == 1
    svc = entries[0]["Service"]
    assert (svc["Port"], svc["Tags"], svc["Address"], svc["Meta"]) == (9090, ["b"], "", None)
    assert svc["CreateIndex"] < svc["ModifyIndex"]

    assert await client.agent.service.deregister("w1")
    assert await client.agent.services() == {}
    assert (await health_of(client, "web"))[1] == []
    _, catalog = await client.catalog.services()
    assert "web" not in catalog

    status, text, _ = await raw.call("PUT", "/v1/agent/service/deregister/w1")
    assert status == 404
    assert text == (
        'Unknown service ID "w1". Ensure that the service ID is passed, not the service name.'
    )
    status, text, _ = await raw.call("GET", "/v1/agent/service/w1")
    assert (status, text) == (404, "unknown service ID: w1")
    assert await client.agent.service_definition("w1") is None


async def test_agent_service_definition_and_content_hash_blocking(
    consul_double: ConsulDouble, client: Any, raw: Raw
) -> None:
    await client.agent.service.register("web", service_id="w1", port=1)
    status, _, headers = await raw.call("GET", "/v1/agent/service/w1")
    digest = headers["X-Consul-Contenthash"]
    definition = await client.agent.service_definition("w1")
    assert definition["ContentHash"] == digest and definition["Tags"] == []

    async def change_soon() -> None:
        await asyncio.sleep(0.2)
        await client.agent.service.register("web", service_id="w1", port=2)

    started = time.monotonic()
    changer = asyncio.create_task(change_soon())
    status, _, headers = await raw.call(
        "GET", "/v1/agent/service/w1", params={"hash": digest, "wait": "5s"}
    )
    await changer
    assert status == 200 and headers["X-Consul-Contenthash"] != digest
    assert time.monotonic() - started < 2


async def test_identical_reregistration_does_not_move_the_index(
    consul_double: ConsulDouble, client: Any
) -> None:
    spec: dict[str, Any] = dict(service_id="w1", port=1, tags=["a"], check=ttl_check("t1"))
    await client.agent.service.register("web", **spec)
    before, _ = await health_of(client, "web")
    await client.agent.service.register("web", **spec)
    after, _ = await health_of(client, "web")
    assert after == before
    await client.agent.service.register("web", **{**spec, "tags": ["b"]})
    changed, _ = await health_of(client, "web")
    assert changed > before


# --------------------------------------------------------------------------- validation


def meta_of(pairs: int, *, value: str = "v", key: str | None = None) -> dict[str, str]:
    meta = {f"k{i}": value for i in range(pairs)}
    if key is not None:
        meta = {key: value}
    return meta


@pytest.mark.parametrize(
    ("meta", "problem"),
    [
        (meta_of(64), None),
        (
            meta_of(65),
            "Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs",
        ),
        (meta_of(1, value="x" * 512), None),
        (meta_of(1, value="x" * 513), "Value is too long (limit: 512 characters)"),
        (meta_of(1, key="k" * 128), None),
        (meta_of(1, key="k" * 129), "Key is too long (limit: 128 characters)"),
        (meta_of(1, key="ok_key-1"), None),
        (meta_of(1, key="bad.key"), "Key contains invalid characters"),
        (meta_of(1, key="bad key"), "Key contains invalid characters"),
        (meta_of(1, key="consul-x"), "Key prefix 'consul-' is reserved for internal use"),
    ],
    ids=[
        "64-pairs",
        "65-pairs",
        "512-char-value",
        "513-char-value",
        "128-char-key",
        "129-char-key",
        "charset-ok",
        "dot",
        "space",
        "reserved-prefix",
    ],
)
async def test_meta_limits_at_the_limit_and_one_past(
    client: Any, raw: Raw, meta: dict[str, str], problem: str | None
) -> None:
    status, text, _ = await raw.call(
        "PUT", "/v1/agent/service/register", json={"Name": "web", "ID": "w1", "Meta": meta}
    )
    if problem is None:
        assert (status, text) == (200, "")
        assert (await client.agent.services())["w1"]["Meta"] == meta
    else:
        assert status == 400
        assert text.startswith("Invalid Service Meta: ") and text.endswith(problem)
        assert await client.agent.services() == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"ID": "x"}, "Missing service name"),
        ({"Name": "web", "Address": "0.0.0.0"}, "Invalid service address"),
        (
            {"Name": "web", "Checks": [{"GRPC": "127.0.0.1:1"}]},
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks",
        ),
        ({"Name": "web", "Check": {"Notes": "x"}}, "Invalid check: TTL must be > 0 for TTL checks"),
        (
            {"Name": "web", "Check": {"TTL": "5s", "Interval": "5s"}},
            "Invalid check: Interval and TTL cannot both be specified",
        ),
        (
            {"Name": "web", "Check": {"TTL": "5s", "Status": "ok"}},
            "Status for checks must 'passing', 'warning', 'critical'",
        ),
        (
            {"Name": "web", "Check": {"TTL": "5 seconds"}},
            'Request decode failed: time: unknown unit " seconds" in duration "5 seconds"',
        ),
        (
            {"Check": {"TTL": "10"}},
            'Request decode failed: time: missing unit in duration "10"',
        ),
        (
            {"Name": "web", "Weights": {"Passing": 0}},
            "Invalid Weights: Passing must be greater than 0",
        ),
    ],
)
async def test_registration_is_validated_like_consul(
    client: Any, raw: Raw, body: dict[str, Any], message: str
) -> None:
    status, text, _ = await raw.call("PUT", "/v1/agent/service/register", json=body)
    assert (status, text) == (400, message)
    assert await client.agent.services() == {}


async def test_keys_match_case_insensitively_with_snake_case_aliases(client: Any) -> None:
    # py-consul sends lowercase keys; these are the snake_case spellings Consul translates.
    assert await client.agent.service.register(
        "web",
        service_id="w1",
        check={
            "check_id": "g1",
            "grpc": "127.0.0.1:1",
            "grpc_use_tls": False,
            "interval": "30s",
            "deregister_critical_service_after": "90s",
        },
    )
    check = (await client.agent.checks())["g1"]
    assert check["Type"] == "grpc" and check["Interval"] == "30s"
    assert check["Definition"]["DeregisterCriticalServiceAfter"] == "1m30s"


async def test_an_id_inside_a_service_check_is_ignored_like_consul(client: Any) -> None:
    # Consul's CheckType has CheckID but no ID: the check gets the generated ID.
    await client.agent.service.register("web", service_id="w1", check={"ID": "mine", "TTL": "5s"})
    assert list(await client.agent.checks()) == ["service:w1"]


# --------------------------------------------------------------------------- TTL checks


async def test_ttl_check_expires_to_critical_and_passes_again(
    consul_double: ConsulDouble, client: Any
) -> None:
    await client.agent.service.register(
        "web", service_id="w1", check=ttl_check("t1", ttl="500ms", status="passing")
    )
    assert consul_double.check_status("t1") == "passing"

    async def expired() -> bool:
        _, entries = await health_of(client, "web")
        check = check_in(entries, "t1")
        return check["Status"] == "critical" and check["Output"] == "TTL expired"

    await until(expired)
    assert await client.agent.check.ttl_pass("t1", "fine")
    _, entries = await health_of(client, "web")
    assert check_in(entries, "t1")["Status"] == "passing"

    async def expired_with_last_output() -> bool:
        _, entries = await health_of(client, "web")
        check = check_in(entries, "t1")
        return check["Status"] == "critical" and check["Output"] == (
            "TTL expired (last output before timeout follows): fine"
        )

    await until(expired_with_last_output)


async def test_ttl_check_starts_critical_without_a_status(client: Any) -> None:
    await client.agent.service.register("web", service_id="w1", check=ttl_check("t1", status=None))
    _, entries = await health_of(client, "web")
    check = check_in(entries, "t1")
    assert (check["Status"], check["Output"], check["Type"]) == ("critical", "", "ttl")


async def test_warn_fail_and_update(client: Any, raw: Raw) -> None:
    await client.agent.service.register("web", service_id="w1", check=ttl_check("t1"))
    assert await client.agent.check.ttl_warn("t1", "slow")
    check = (await client.agent.checks())["t1"]
    assert (check["Status"], check["Output"]) == ("warning", "slow")
    assert await client.agent.check.ttl_fail("t1", "down")
    check = (await client.agent.checks())["t1"]
    assert (check["Status"], check["Output"]) == ("critical", "down")

    status, text, _ = await raw.call(
        "PUT", "/v1/agent/check/update/t1", json={"Status": "passing", "Output": "ok"}
    )
    assert (status, text) == (200, "")
    _, entries = await health_of(client, "web")
    assert (check_in(entries, "t1")["Status"], check_in(entries, "t1")["Output"]) == (
        "passing",
        "ok",
    )
    status, text, _ = await raw.call("PUT", "/v1/agent/check/update/t1", json={"Status": "bogus"})
    assert (status, text) == (400, "Invalid check status: 'bogus'")


async def test_long_output_is_cut_like_consul(client: Any, raw: Raw) -> None:
    await client.agent.service.register("web", service_id="w1", check=ttl_check("t1"))
    await raw.call(
        "PUT", "/v1/agent/check/update/t1", json={"Status": "passing", "Output": "x" * 5000}
    )
    output = (await client.agent.checks())["t1"]["Output"]
    # Consul cuts twice: the update endpoint to 4 KiB with a note, then the TTL check
    # again because the note made it longer than 4 KiB; the second note wins.
    assert output == "x" * 4096 + " ... (captured 4096 of 4130 bytes)"


async def test_unknown_check_is_404_and_a_non_ttl_check_is_500(
    client: Any, raw: Raw, grpc_target: GrpcTarget
) -> None:
    for verb in ("pass", "warn", "fail"):
        status, text, _ = await raw.call("PUT", f"/v1/agent/check/{verb}/nope")
        assert status == 404
        assert text == (
            'Unknown check ID "nope". Ensure that the check ID is passed, not the check name.'
        )
    # py-consul's boolean calls answer a 404 with False instead of raising.
    assert await client.agent.check.ttl_pass("nope") is False

    await client.agent.service.register(
        "web",
        service_id="w1",
        check={"CheckID": "g1", "GRPC": grpc_target.target, "Interval": "1m"},
    )
    status, text, _ = await raw.call("PUT", "/v1/agent/check/pass/g1")
    assert (status, text) == (500, 'CheckID "g1" does not have associated TTL')
    status, text, _ = await raw.call("GET", "/v1/agent/check/pass/g1")
    assert (status, text) == (405, "method GET not allowed")


# --------------------------------------------------------------------------- GRPC and HTTP


async def test_grpc_check_follows_a_real_server(
    consul_double_factory: Factory, grpc_target: GrpcTarget
) -> None:
    double = await consul_double_factory(first_check_at_once=True, min_check_interval_s=0.1)
    c = consul_client(double)
    try:
        await c.agent.service.register(
            "svc",
            service_id="s1",
            check={
                "CheckID": "g1",
                "GRPC": grpc_target.target,
                "Interval": "200ms",
                "Timeout": "500ms",
            },
        )

        async def state() -> tuple[str, str]:
            _, entries = await health_of(c, "svc")
            check = check_in(entries, "g1")
            return check["Status"], check["Output"]

        await until(lambda: _is(state, ("passing", f"gRPC check {grpc_target.target}: success")))
        await grpc_target.health.set("", NOT_SERVING)
        await until(
            lambda: _is(
                state, ("critical", f"gRPC {grpc_target.target} serving status: NOT_SERVING")
            )
        )
        await grpc_target.health.set("", SERVING)
        await until(lambda: _is_status(state, "passing"))

        await grpc_target.stop()
        stopped = time.monotonic()
        await until(lambda: _is_status(state, "critical"))
        # Within one interval plus the probe's timeout.
        assert time.monotonic() - stopped < 0.2 + 0.5 + 0.5
        status, output = await state()
        assert output.startswith("rpc error: code = Unavailable desc = "), output
    finally:
        await c.close()


async def test_grpc_check_asks_for_the_named_service(
    consul_double_factory: Factory, grpc_target: GrpcTarget
) -> None:
    double = await consul_double_factory(first_check_at_once=True)
    await grpc_target.health.set("good", SERVING)
    c = consul_client(double)
    try:
        checks = [
            {"CheckID": "good", "GRPC": f"{grpc_target.target}/good", "Interval": "1s"},
            {"CheckID": "missing", "GRPC": f"{grpc_target.target}/missing", "Interval": "1s"},
        ]
        await c.agent.service.register(
            "svc", service_id="s1", check=checks[0], extra_checks=checks[1:]
        )
        await eventually(lambda: double.check_status("good") == "passing", timeout=2.0)
        await eventually(lambda: double.check_status("missing") == "critical", timeout=2.0)
        await eventually(
            lambda: (
                # grpcio's health servicer answers NOT_FOUND without details.
                double.check_output("missing") == "rpc error: code = NotFound desc = "
            ),
            timeout=2.0,
        )
    finally:
        await c.close()


async def test_grpc_first_run_is_staggered_within_the_interval(
    consul_double_factory: Factory, grpc_target: GrpcTarget
) -> None:
    # seed 0: the first stagger drawn is 8.4 s of the 10 s interval.
    double = await consul_double_factory(seed=0)
    c = consul_client(double)
    try:
        await c.agent.service.register(
            "svc",
            service_id="s1",
            check={"CheckID": "g1", "GRPC": grpc_target.target, "Interval": "10s"},
        )
        before, entries = await health_of(c, "svc")
        assert (check_in(entries, "g1")["Status"], check_in(entries, "g1")["Output"]) == (
            "critical",
            "",
        )
        await asyncio.sleep(0.5)
        after, entries = await health_of(c, "svc")
        assert check_in(entries, "g1")["Output"] == "" and after == before
    finally:
        await c.close()


async def test_intervals_below_one_second_are_raised_to_it(
    consul_double_factory: Factory,
) -> None:
    calls: list[float] = []

    class Counting(health.aio.HealthServicer):
        async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC's name)
            calls.append(time.monotonic())
            return await super().Check(request, context)

    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(Counting(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    double = await consul_double_factory(first_check_at_once=True)
    c = consul_client(double)
    try:
        await c.agent.service.register(
            "svc",
            service_id="s1",
            check={"CheckID": "g1", "GRPC": f"127.0.0.1:{port}", "Interval": "100ms"},
        )
        await eventually(lambda: len(calls) >= 2, timeout=3.0)
        assert calls[1] - calls[0] >= 0.9
    finally:
        await c.close()
        await server.stop(grace=None)


async def _is(state: Callable[[], Awaitable[tuple[str, str]]], want: tuple[str, str]) -> bool:
    return await state() == want


async def _is_status(state: Callable[[], Awaitable[tuple[str, str]]], want: str) -> bool:
    return (await state())[0] == want


async def test_http_check_maps_status_codes_like_consul(consul_double_factory: Factory) -> None:
    answer = {"status": 200}

    async def healthz(request: web.Request) -> web.Response:
        assert request.headers["User-Agent"] == "Consul Health Check"
        return web.Response(status=answer["status"], text="ok")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/healthz"
    double = await consul_double_factory(first_check_at_once=True, min_check_interval_s=0.1)
    c = consul_client(double)
    try:
        await c.agent.service.register(
            "gateway",
            service_id="gw1",
            check={"CheckID": "h1", "HTTP": url, "Interval": "100ms", "Timeout": "1s"},
        )
        await eventually(
            lambda: double.check_output("h1") == f"HTTP GET {url}: 200 OK Output: ok", timeout=2.0
        )
        assert double.check_status("h1") == "passing"
        answer["status"] = 429
        await eventually(lambda: double.check_status("h1") == "warning", timeout=2.0)
        answer["status"] = 503
        await eventually(lambda: double.check_status("h1") == "critical", timeout=2.0)
        assert double.check_output("h1") == f"HTTP GET {url}: 503 Service Unavailable Output: ok"
    finally:
        await c.close()
        await runner.cleanup()


# --------------------------------------------------------------------------- reads


async def test_passing_filter_excludes_warning_and_critical(client: Any) -> None:
    for sid, status in (("a", "passing"), ("b", "warning"), ("c", "critical")):
        await client.agent.service.register(
            "web", service_id=sid, check=ttl_check(f"t-{sid}", status=status)
        )
    _, every = await health_of(client, "web")
    assert [e["Service"]["ID"] for e in every] == ["a", "b", "c"]
    _, passing = await health_of(client, "web", passing=True)
    assert [e["Service"]["ID"] for e in passing] == ["a"]


async def test_tag_filter_needs_every_tag_case_insensitively(client: Any) -> None:
    await client.agent.service.register("web", service_id="a", tags=["skill:x", "blue"])
    await client.agent.service.register("web", service_id="b", tags=["skill:y", "blue"])
    _, entries = await health_of(client, "web", tag="skill:x")
    assert [e["Service"]["ID"] for e in entries] == ["a"]
    _, entries = await health_of(client, "web", tag=["BLUE", "skill:y"])
    assert [e["Service"]["ID"] for e in entries] == ["b"]
    _, entries = await health_of(client, "web", tag="green")
    assert entries == []
    _, catalog = await client.catalog.services()
    assert catalog["web"] == ["blue", "skill:x", "skill:y"]


async def test_blocking_query_returns_on_a_change(client: Any) -> None:
    await client.agent.service.register("web", service_id="a")
    index, _ = await health_of(client, "web")
    started = time.monotonic()
    waiter = asyncio.create_task(health_of(client, "web", index=index, wait="5s"))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await client.agent.service.register("web", service_id="b")
    new_index, entries = await asyncio.wait_for(waiter, 2.0)
    assert new_index > index and len(entries) == 2
    assert time.monotonic() - started < 1.0


async def test_blocking_query_times_out_without_a_change_of_its_service(client: Any) -> None:
    await client.agent.service.register("web", service_id="a")
    index, _ = await health_of(client, "web")
    started = time.monotonic()
    waiter = asyncio.create_task(health_of(client, "web", index=index, wait="1s"))
    await asyncio.sleep(0.1)
    await client.agent.service.register("other", service_id="o")  # another name: no wake-up
    again, _ = await waiter
    elapsed = time.monotonic() - started
    assert again == index
    assert 1.0 <= elapsed < 1.0 + 1.0 / 16 + 0.5


async def test_wait_and_index_are_parsed_like_consul(raw: Raw) -> None:
    status, text, _ = await raw.call(
        "GET", "/v1/health/service/web", params={"index": "1", "wait": "soon"}
    )
    assert (status, text) == (400, "Invalid wait time")
    status, text, _ = await raw.call("GET", "/v1/health/service/web", params={"index": "-1"})
    assert (status, text) == (400, "Invalid index")
    status, text, _ = await raw.call("GET", "/v1/health/service/web", params={"passing": "maybe"})
    assert (status, text) == (400, "Invalid value for ?passing")
    status, text, _ = await raw.call("GET", "/v1/health/service/web", params={"filter": "x"})
    assert status == 400  # not implemented: refused rather than silently ignored


# --------------------------------------------------------------------------- indexes


async def test_index_moves_only_on_real_changes(consul_double: ConsulDouble, client: Any) -> None:
    await client.agent.service.register("web", service_id="a", check=ttl_check("t1"))
    index, _ = await health_of(client, "web")
    assert index == consul_double.index > INITIAL_INDEX

    await client.agent.check.ttl_pass("t1")  # same status, same output
    assert (await health_of(client, "web"))[0] == index

    # An output-only change stays local until the deferred write-back (5 min by default).
    await client.agent.check.ttl_pass("t1", "busy")
    assert (await client.agent.checks())["t1"]["Output"] == "busy"
    same, entries = await health_of(client, "web")
    assert same == index and check_in(entries, "t1")["Output"] == ""

    await client.agent.check.ttl_warn("t1", "slow")  # a status change syncs at once
    moved, entries = await health_of(client, "web")
    assert moved == index + 1
    assert (check_in(entries, "t1")["Status"], check_in(entries, "t1")["Output"]) == (
        "warning",
        "slow",
    )
    catalog_before = (await client.catalog.services())[0]
    await client.agent.check.ttl_pass("t1")
    # Check changes do not touch the services table that /v1/catalog/services follows.
    assert (await client.catalog.services())[0] == catalog_before


async def test_output_only_changes_reach_the_catalog_after_the_write_back(
    consul_double_factory: Factory,
) -> None:
    double = await consul_double_factory(check_update_interval_s=0.2)
    c = consul_client(double)
    try:
        await c.agent.service.register("web", service_id="a", check=ttl_check("t1"))
        index, _ = await health_of(c, "web")
        await c.agent.check.ttl_pass("t1", "load=3")
        moved, entries = await health_of(c, "web", index=index, wait="2s")
        assert moved == index + 1 and check_in(entries, "t1")["Output"] == "load=3"
    finally:
        await c.close()


async def test_a_missing_service_answers_the_extinction_index(client: Any) -> None:
    await client.agent.service.register("web", service_id="a")
    await client.agent.service.deregister("a")
    gone, entries = await health_of(client, "web")
    assert entries == []
    never, _ = await health_of(client, "never-registered")
    assert gone == never  # the last extinction index, for every name without instances


async def test_index_reset_answers_blocked_queries_with_the_lower_index(
    consul_double: ConsulDouble, client: Any
) -> None:
    for sid in ("a", "b", "c"):
        await client.agent.service.register("web", service_id=sid)
    index, _ = await health_of(client, "web")
    waiter = asyncio.create_task(health_of(client, "web", index=index, wait="5s"))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    consul_double.reset_index()
    lower, entries = await asyncio.wait_for(waiter, 2.0)
    assert time.monotonic() - started < 1.0
    assert lower == 1 < index and len(entries) == 3

    # A client that keeps its old (now too high) index blocks until its wait ends, as on
    # Consul, and then sees the index go backwards: it has to reset to 0.
    started = time.monotonic()
    stale, _ = await health_of(client, "web", index=index, wait="1s")
    assert stale == 1 and time.monotonic() - started >= 1.0
    # After the reset the index grows again from the lower value.
    await client.agent.service.register("web", service_id="d")
    assert (await health_of(client, "web"))[0] == 2


# --------------------------------------------------------------------------- reaper


async def test_reaper_keeps_the_one_minute_floor(consul_double_factory: Factory) -> None:
    double = await consul_double_factory(reap_interval_s=0.05)
    c = consul_client(double)
    try:
        await c.agent.service.register(
            "web",
            service_id="a",
            check=ttl_check("t1", DeregisterCriticalServiceAfter="10s"),
        )
        await c.agent.check.ttl_fail("t1", "gone")  # critical from now on
        double.advance(59)
        passes = double.reap_passes
        await eventually(lambda: double.reap_passes >= passes + 2, timeout=2.0)
        assert "a" in double.services()  # 59 s > 10 s, but below the 1 min floor

        double.advance(2)
        await eventually(lambda: "a" not in double.services(), timeout=2.0)
        _, entries = await health_of(c, "web")
        assert entries == [] and double.check_status("t1") is None
    finally:
        await c.close()


async def test_reaper_measures_from_the_first_critical_update(
    consul_double_factory: Factory,
) -> None:
    double = await consul_double_factory(reap_interval_s=0.05)
    c = consul_client(double)
    try:
        # Registered critical but never updated: Consul's CheckState has no critical time yet.
        await c.agent.service.register(
            "web",
            service_id="a",
            check=ttl_check("t1", status="critical", DeregisterCriticalServiceAfter="1m"),
        )
        double.advance(120)
        passes = double.reap_passes
        await eventually(lambda: double.reap_passes >= passes + 2, timeout=2.0)
        assert "a" in double.services()
        await c.agent.check.ttl_fail("t1")
        double.advance(61)
        await eventually(lambda: "a" not in double.services(), timeout=2.0)
    finally:
        await c.close()


# --------------------------------------------------------------------------- agent writes


async def test_maintenance_mode(client: Any, raw: Raw) -> None:
    await client.agent.service.register("web", service_id="a", check=ttl_check("t1"))
    assert await client.agent.service.maintenance("a", True, "upgrading")
    _, entries = await health_of(client, "web")
    maint = check_in(entries, "_service_maintenance:a")
    assert (maint["Status"], maint["Notes"], maint["Name"]) == (
        "critical",
        "upgrading",
        "Service Maintenance Mode",
    )
    assert (await health_of(client, "web", passing=True))[1] == []
    await client.agent.service.maintenance("a", True, "another reason")  # already on: kept
    assert (await client.agent.checks())["_service_maintenance:a"]["Notes"] == "upgrading"

    assert await client.agent.service.maintenance("a", False)
    assert "_service_maintenance:a" not in await client.agent.checks()
    assert len((await health_of(client, "web", passing=True))[1]) == 1

    status, text, _ = await raw.call("PUT", "/v1/agent/service/maintenance/a")
    assert (status, text) == (400, "Missing value for enable")
    status, _, _ = await raw.call(
        "PUT", "/v1/agent/service/maintenance/zz", params={"enable": "true"}
    )
    assert status == 404


async def test_check_register_and_deregister(client: Any, raw: Raw) -> None:
    await client.agent.service.register("web", service_id="a")
    assert await client.agent.check.register(
        "extra", check={"TTL": "10m", "Status": "warning"}, check_id="x1", service_id="a"
    )
    check = (await client.agent.checks())["x1"]
    assert (check["ServiceID"], check["ServiceName"], check["Status"]) == ("a", "web", "warning")
    _, entries = await health_of(client, "web")
    assert check_in(entries, "x1")["Status"] == "warning"
    assert await client.agent.check.deregister("x1")
    assert "x1" not in await client.agent.checks()

    status, text, _ = await raw.call(
        "PUT", "/v1/agent/check/register", json={"Name": "c", "TTL": "5s", "ServiceID": "zz"}
    )
    assert (status, text) == (404, 'ServiceID "zz" does not exist')
    status, text, _ = await raw.call("PUT", "/v1/agent/check/deregister/zz")
    assert status == 404 and text.startswith('Unknown check ID "zz"')


async def test_a_critical_node_check_fails_every_service(client: Any) -> None:
    await client.agent.service.register("web", service_id="a", check=ttl_check("t1"))
    await client.agent.check.register("node", check={"TTL": "10m", "Status": "critical"})
    _, entries = await health_of(client, "web")
    assert [c["CheckID"] for c in entries[0]["Checks"]] == ["serfHealth", "node", "t1"]
    assert (await health_of(client, "web", passing=True))[1] == []


async def test_reregistration_keeps_check_state_and_replace_drops_missing_checks(
    client: Any,
) -> None:
    await client.agent.service.register(
        "web", service_id="a", check=ttl_check("t1"), extra_checks=[ttl_check("t2")]
    )
    await client.agent.check.ttl_fail("t1", "broken")
    # The definition says passing, but Consul restores the check's previous state.
    await client.agent.service.register("web", service_id="a", check=ttl_check("t1"))
    checks = await client.agent.checks()
    assert (checks["t1"]["Status"], checks["t1"]["Output"]) == ("critical", "broken")
    assert "t2" in checks  # left in place without replace-existing-checks

    await client.agent.service.register(
        "web", service_id="a", check=ttl_check("t1"), replace_existing_checks=True
    )
    assert list(await client.agent.checks()) == ["t1"]


# --------------------------------------------------------------------------- child process


async def test_child_process_serves_and_stops_on_sigterm() -> None:
    proc = ConsulDoubleProcess()
    await asyncio.to_thread(proc.start)
    try:
        assert proc.url == f"consul://{proc.address}"
        c = consul_client(proc.address)
        try:
            await c.agent.service.register("web", service_id="a", port=1)
            assert list(await c.agent.services()) == ["a"]
        finally:
            await c.close()
        running = proc.proc
        assert running is not None
        await asyncio.to_thread(proc.stop)
        assert running.returncode == 0
    finally:
        await asyncio.to_thread(proc.stop)


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "ns", "shown"),
    [
        ("10s", 10_000_000_000, "10s"),
        ("1m", 60_000_000_000, "1m0s"),
        ("1m30s", 90_000_000_000, "1m30s"),
        ("500ms", 500_000_000, "500ms"),
        ("1.5s", 1_500_000_000, "1.5s"),
        ("2h", 7_200_000_000_000, "2h0m0s"),
        ("0", 0, "0s"),
        ("1us", 1_000, "1\u00b5s"),
    ],
)
def test_durations_parse_and_print_like_go(text: str, ns: int, shown: str) -> None:
    assert parse_go_duration_ns(text) == ns
    assert format_go_duration(ns) == shown


@pytest.mark.parametrize("text", ["", "10", "s", "1x", "1h-5m", "."])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="^time: "):
        parse_go_duration_ns(text)
