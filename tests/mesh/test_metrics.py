"""MeshMetrics: every family read back from its own registry, and the /metrics endpoint.

Values are read with ``registry.get_sample_value`` (what a scrape would show),
the observer is driven directly and through a real ``Pipeline``, and the HTTP
endpoint is served on port 0 and scraped with httpx.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from meshwright.economy.v1 import economy_pb2 as E
from meshwright.mesh._descriptors import methods_of
from meshwright.mesh.auth import TokenMissing
from meshwright.mesh.errors import (
    DeadlineExceeded,
    InvalidArgument,
    MeshError,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from meshwright.mesh.metrics import (
    MAX_SKILL_VALUES,
    OTHER,
    MeshMetrics,
    render,
    serve_metrics,
    split_method,
)
from meshwright.mesh.pipeline import CallObserver, Endpoint
from meshwright.mesh.security import insecure_pipeline

ECONOMY = E.DESCRIPTOR.services_by_name["EconomyService"]
SVC = "meshwright.economy.v1.EconomyService"
GET_ACCOUNT = f"/{SVC}/GetAccount"


def value(m: MeshMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def label_values(m: MeshMetrics, name: str, label: str) -> set[str]:
    """Every value ``label`` takes among the samples called ``name``."""
    return {
        s.labels[label]
        for family in m.registry.collect()
        for s in family.samples
        if s.name == name and label in s.labels
    }


# -- RPC server --------------------------------------------------------------------------------


def requests(m: MeshMetrics, method: str, code: str) -> float | None:
    labels = {"rpc_service": SVC, "rpc_method": method, "rpc_grpc_status_code": code}
    return value(m, "rpc_server_requests_total", **labels)


def test_observer_counts_and_times_calls_with_and_without_error() -> None:
    m = MeshMetrics()
    observer: CallObserver = m  # it satisfies the pipeline's protocol
    observer.finished(None, GET_ACCOUNT, None, 0.002)
    observer.finished(None, GET_ACCOUNT, None, 0.004)
    observer.finished(None, GET_ACCOUNT, InvalidArgument.field("id", "empty"), 0.5)
    assert requests(m, "GetAccount", "OK") == 2
    assert requests(m, "GetAccount", "INVALID_ARGUMENT") == 1
    assert requests(m, "GetAccount", "NOT_FOUND") is None
    labels = {"rpc_service": SVC, "rpc_method": "GetAccount"}
    assert value(m, "rpc_server_duration_seconds_count", **labels) == 3
    assert value(m, "rpc_server_duration_seconds_sum", **labels) == pytest.approx(0.506)
    assert value(m, "rpc_server_duration_seconds_bucket", **labels, le="0.0025") == 1
    assert value(m, "rpc_server_duration_seconds_bucket", **labels, le="0.005") == 2
    assert value(m, "rpc_server_duration_seconds_bucket", **labels, le="0.25") == 2
    assert value(m, "rpc_server_duration_seconds_bucket", **labels, le="0.5") == 3
    assert value(m, "rpc_server_duration_seconds_bucket", **labels, le="30.0") == 3


def test_duration_buckets_span_a_tenth_of_a_millisecond_to_thirty_seconds() -> None:
    m = MeshMetrics()
    m.finished(None, GET_ACCOUNT, None, 0.00005)
    m.finished(None, GET_ACCOUNT, None, 31.0)
    labels = {"rpc_service": SVC, "rpc_method": "GetAccount"}
    assert value(m, "rpc_server_duration_seconds_bucket", **labels, le="0.0001") == 1
    assert value(m, "rpc_server_duration_seconds_bucket", **labels, le="30.0") == 1
    assert value(m, "rpc_server_duration_seconds_bucket", **labels, le="+Inf") == 2


class AgentGone(NotFound):
    """An error with a reason of its own: the label is still its class's gRPC code."""

    reason = "TEST_METRICS_AGENT_GONE"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidArgument("bad"), "INVALID_ARGUMENT"),
        (NotFound("no such account"), "NOT_FOUND"),
        (AgentGone("gone"), "NOT_FOUND"),
        (TokenMissing("no token"), "UNAUTHENTICATED"),
        (DeadlineExceeded("late"), "DEADLINE_EXCEEDED"),
        (ResourceExhausted("quota"), "RESOURCE_EXHAUSTED"),
        (Unavailable("down"), "UNAVAILABLE"),
        (MeshError("plain"), "INTERNAL"),
    ],
)
def test_status_code_label_is_the_grpc_code_name(error: MeshError, code: str) -> None:
    m = MeshMetrics()
    m.finished(None, GET_ACCOUNT, error, 0.01)
    assert requests(m, "GetAccount", code) == 1
    assert label_values(m, "rpc_server_requests_total", "rpc_grpc_status_code") == {code}


@pytest.mark.parametrize(
    ("method", "service", "name"),
    [
        (GET_ACCOUNT, SVC, "GetAccount"),
        ("/grpc.health.v1.Health/Check", "grpc.health.v1.Health", "Check"),
        ("Bare", "", "Bare"),
    ],
)
def test_split_method(method: str, service: str, name: str) -> None:
    assert split_method(method) == (service, name)


async def test_pipeline_observer_sees_real_calls() -> None:
    m = MeshMetrics()
    pipeline = insecure_pipeline()
    pipeline.observers.append(m)
    endpoint = Endpoint.of(methods_of(ECONOMY)["GetAccount"])

    async def handler(request: Any) -> Any:
        if request.account_id == "missing":
            raise NotFound("no such account")
        if request.account_id == "bug":
            raise ZeroDivisionError("a bug")
        return E.Account(account_id=request.account_id)

    await pipeline.unary(endpoint, handler, E.GetAccountRequest(account_id="a"))
    with pytest.raises(NotFound):
        await pipeline.unary(endpoint, handler, E.GetAccountRequest(account_id="missing"))
    with pytest.raises(MeshError):
        await pipeline.unary(endpoint, handler, E.GetAccountRequest(account_id="bug"))
    assert requests(m, "GetAccount", "OK") == 1
    assert requests(m, "GetAccount", "NOT_FOUND") == 1
    assert requests(m, "GetAccount", "INTERNAL") == 1  # the pipeline maps the bug
    labels = {"rpc_service": SVC, "rpc_method": "GetAccount"}
    assert value(m, "rpc_server_duration_seconds_count", **labels) == 3


# -- workflow service --------------------------------------------------------------------------


def test_workflow_lifecycle() -> None:
    m = MeshMetrics()
    for state in ("created", "succeeded", "failed", "cancelled"):  # series exist from zero
        assert value(m, "meshwright_workflows_total", state=state) == 0
    for _ in range(4):
        m.workflow_created()
    m.workflow_ended("succeeded")
    m.workflow_ended("succeeded")
    m.workflow_ended("failed")
    assert value(m, "meshwright_workflows_running") == 1
    m.takeover()
    m.takeover()
    assert value(m, "meshwright_workflow_takeovers_total") == 2
    assert value(m, "meshwright_workflows_running") == 3
    m.workflow_ended("cancelled")
    m.workflow_released()
    assert value(m, "meshwright_workflows_running") == 1
    assert value(m, "meshwright_workflows_total", state="created") == 4
    assert value(m, "meshwright_workflows_total", state="succeeded") == 2
    assert value(m, "meshwright_workflows_total", state="failed") == 1
    assert value(m, "meshwright_workflows_total", state="cancelled") == 1


def test_workflow_ended_refuses_a_state_that_is_not_terminal() -> None:
    m = MeshMetrics()
    m.workflow_created()
    with pytest.raises(ValueError, match="running"):
        m.workflow_ended("running")
    assert value(m, "meshwright_workflows_total", state="running") is None
    assert value(m, "meshwright_workflows_running") == 1


def test_tasks_retries_and_durations() -> None:
    m = MeshMetrics()
    m.task_finished("summarize", "failed", 0.2)
    m.task_retried("summarize")
    m.task_finished("summarize", "succeeded", 3.0)
    m.task_finished("translate", "succeeded", 120.0)
    assert value(m, "meshwright_tasks_total", skill="summarize", state="failed") == 1
    assert value(m, "meshwright_tasks_total", skill="summarize", state="succeeded") == 1
    assert value(m, "meshwright_tasks_total", skill="translate", state="succeeded") == 1
    assert value(m, "meshwright_tasks_total", skill="translate", state="failed") is None
    assert value(m, "meshwright_task_retries_total", skill="summarize") == 1
    assert value(m, "meshwright_task_retries_total", skill="translate") is None
    assert value(m, "meshwright_task_duration_seconds_count", skill="summarize") == 2
    assert value(m, "meshwright_task_duration_seconds_sum", skill="summarize") == 3.2
    assert value(m, "meshwright_task_duration_seconds_bucket", skill="summarize", le="0.5") == 1
    assert value(m, "meshwright_task_duration_seconds_bucket", skill="translate", le="60.0") == 0
    assert value(m, "meshwright_task_duration_seconds_bucket", skill="translate", le="120.0") == 1


def test_queue_depth() -> None:
    m = MeshMetrics()
    assert value(m, "meshwright_task_queue_depth") == 0
    m.set_queue_depth(7)
    m.queue_depth_changed(3)
    m.queue_depth_changed(-4)
    assert value(m, "meshwright_task_queue_depth") == 6
    with pytest.raises(ValueError):
        m.set_queue_depth(-1)
    assert value(m, "meshwright_task_queue_depth") == 6


# -- economy -----------------------------------------------------------------------------------


def test_economy() -> None:
    m = MeshMetrics()
    m.transaction("TRANSFER")
    m.transaction("TRANSFER")
    m.transaction("MINT")
    assert value(m, "meshwright_economy_transactions_total", kind="TRANSFER") == 2
    assert value(m, "meshwright_economy_transactions_total", kind="MINT") == 1
    m.escrow_opened()
    m.escrow_opened()
    m.escrow_opened()
    m.escrow_closed()
    assert value(m, "meshwright_escrows_open") == 2
    m.set_escrows_open(10)
    m.escrow_closed()
    assert value(m, "meshwright_escrows_open") == 9
    with pytest.raises(ValueError):
        m.set_escrows_open(-2)


# -- registry ----------------------------------------------------------------------------------


def test_agents_by_state_is_read_at_every_scrape() -> None:
    m = MeshMetrics()
    assert value(m, "meshwright_registry_agents", state="active") is None  # no source yet
    counts = {"active": 3, "draining": 1}
    calls = []

    def source() -> dict[str, int]:
        calls.append(1)
        return counts

    m.agents_by_state(source)
    assert calls == []  # registering does not call it
    assert value(m, "meshwright_registry_agents", state="active") == 3
    assert value(m, "meshwright_registry_agents", state="draining") == 1
    counts["active"] = 5
    del counts["draining"]
    assert value(m, "meshwright_registry_agents", state="active") == 5
    assert value(m, "meshwright_registry_agents", state="draining") is None
    m.agents_by_state(lambda: {"inactive": 2})  # a later call replaces the source
    assert value(m, "meshwright_registry_agents", state="inactive") == 2
    assert value(m, "meshwright_registry_agents", state="active") is None
    assert len(calls) == 4


@pytest.mark.parametrize("broken", ["raises", "bad value"])
def test_a_failing_agents_source_does_not_break_the_scrape(
    broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    m = MeshMetrics()
    m.heartbeat()

    def source() -> dict[str, Any]:
        if broken == "raises":
            raise RuntimeError("registry index gone")
        return {"active": 1, "draining": "many"}

    m.agents_by_state(source)
    with caplog.at_level(logging.ERROR, logger="meshwright.mesh.metrics"):
        body, _ = render(m.registry)
    text = body.decode()
    assert "meshwright_registry_heartbeats_total 1.0" in text
    assert "meshwright_registry_agents" not in text  # left out whole, not half
    assert "agents_by_state callback failed" in caplog.text


def test_heartbeats() -> None:
    m = MeshMetrics()
    assert value(m, "meshwright_registry_heartbeats_total") == 0
    for _ in range(3):
        m.heartbeat()
    assert value(m, "meshwright_registry_heartbeats_total") == 3


# -- agent SDK ---------------------------------------------------------------------------------


def test_agent_tasks() -> None:
    m = MeshMetrics()
    m.agent_task_started("echo")
    m.agent_task_started("echo")
    m.agent_task_started("shout")
    assert value(m, "meshwright_agent_tasks_in_flight", skill="echo") == 2
    assert value(m, "meshwright_agent_task_errors_total", skill="echo") == 0  # from zero
    m.agent_task_finished("echo", 0.3, ok=True)
    m.agent_task_finished("echo", 1.5, ok=False)
    m.agent_task_finished("shout", 0.02, ok=False)
    assert value(m, "meshwright_agent_tasks_in_flight", skill="echo") == 0
    assert value(m, "meshwright_agent_tasks_in_flight", skill="shout") == 0
    assert value(m, "meshwright_agent_task_errors_total", skill="echo") == 1
    assert value(m, "meshwright_agent_task_errors_total", skill="shout") == 1
    assert value(m, "meshwright_agent_task_duration_seconds_count", skill="echo") == 2
    assert value(m, "meshwright_agent_task_duration_seconds_sum", skill="echo") == 1.8
    assert value(m, "meshwright_agent_task_duration_seconds_bucket", skill="echo", le="1.0") == 1


# -- cardinality -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("feed", "family"),
    [
        (MeshMetrics.task_retried, "meshwright_task_retries_total"),
        (MeshMetrics.agent_task_started, "meshwright_agent_tasks_in_flight"),
    ],
)
def test_skill_labels_are_capped_at_exactly_the_limit(
    feed: Callable[[MeshMetrics, str], None], family: str
) -> None:
    m = MeshMetrics()
    skills = [f"skill-{i}" for i in range(MAX_SKILL_VALUES)]
    for skill in skills:
        feed(m, skill)
    assert label_values(m, family, "skill") == set(skills)  # exactly the cap: all kept
    assert value(m, family, skill=OTHER) is None

    feed(m, "one-too-many")  # one past the cap
    feed(m, "and-another")
    feed(m, skills[0])  # a skill admitted before keeps its own series
    assert value(m, family, skill="one-too-many") is None
    assert value(m, family, skill=OTHER) == 2
    assert value(m, family, skill=skills[0]) == 2
    assert value(m, family, skill=skills[-1]) == 1
    assert label_values(m, family, "skill") == {*skills, OTHER}


def test_families_fed_together_share_one_cap() -> None:
    m = MeshMetrics(max_skill_values=2)
    m.task_retried("a")
    m.task_finished("b", "succeeded", 1.0)
    m.task_finished("c", "failed", 1.0)  # one past the cap of the task families
    m.task_retried("c")
    m.task_retried("b")
    assert value(m, "meshwright_tasks_total", skill="b", state="succeeded") == 1
    assert value(m, "meshwright_tasks_total", skill=OTHER, state="failed") == 1
    assert value(m, "meshwright_task_duration_seconds_count", skill=OTHER) == 1
    assert value(m, "meshwright_task_retries_total", skill=OTHER) == 1
    assert value(m, "meshwright_task_retries_total", skill="b") == 1
    assert label_values(m, "meshwright_tasks_total", "skill") == {"b", OTHER}
    assert label_values(m, "meshwright_task_duration_seconds_count", "skill") == {"b", OTHER}
    assert label_values(m, "meshwright_task_retries_total", "skill") == {"a", "b", OTHER}

    # The agent families have a cap of their own, untouched by the engine's skills.
    for skill in ("x", "y", "z"):
        m.agent_task_started(skill)
    assert value(m, "meshwright_agent_tasks_in_flight", skill=OTHER) == 1
    m.agent_task_finished("z", 2.0, ok=False)  # lowered under the value it was raised under
    m.agent_task_finished("x", 1.0, ok=True)
    assert value(m, "meshwright_agent_tasks_in_flight", skill=OTHER) == 0
    assert value(m, "meshwright_agent_tasks_in_flight", skill="y") == 1
    assert value(m, "meshwright_agent_task_errors_total", skill=OTHER) == 1
    assert value(m, "meshwright_agent_task_errors_total", skill="z") is None
    assert value(m, "meshwright_agent_task_duration_seconds_count", skill=OTHER) == 1
    assert value(m, "meshwright_agent_task_duration_seconds_count", skill="x") == 1
    assert label_values(m, "meshwright_agent_tasks_in_flight", "skill") == {"x", "y", OTHER}
    assert label_values(m, "meshwright_agent_task_errors_total", "skill") == {"x", "y", OTHER}


def test_a_skill_called_other_takes_no_slot() -> None:
    m = MeshMetrics(max_skill_values=1)
    m.task_retried(OTHER)
    m.task_retried("real")
    assert value(m, "meshwright_task_retries_total", skill="real") == 1
    assert value(m, "meshwright_task_retries_total", skill=OTHER) == 1


def test_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_skill_values"):
        MeshMetrics(max_skill_values=0)


# -- registries --------------------------------------------------------------------------------


def test_each_instance_has_its_own_registry() -> None:
    a, b = MeshMetrics(), MeshMetrics()
    assert a.registry is not b.registry
    a.heartbeat()
    assert value(a, "meshwright_registry_heartbeats_total") == 1
    assert value(b, "meshwright_registry_heartbeats_total") == 0
    given = CollectorRegistry()
    c = MeshMetrics(given)
    assert c.registry is given
    with pytest.raises(ValueError, match="Duplicated"):
        MeshMetrics(given)  # one registry holds one set of families


def test_render_text_and_openmetrics() -> None:
    m = MeshMetrics()
    m.transaction("MINT")
    body, content_type = render(m.registry)
    assert content_type.startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    [sample] = [
        s for s in families["meshwright_economy_transactions"].samples if s.name.endswith("_total")
    ]
    assert sample.labels == {"kind": "MINT"} and sample.value == 1
    body, content_type = render(m.registry, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert b'meshwright_economy_transactions_total{kind="MINT"} 1.0' in body


# -- the HTTP endpoint -------------------------------------------------------------------------


def scraped(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


async def test_metrics_endpoint_serves_live_values() -> None:
    m = MeshMetrics()
    m.finished(None, GET_ACCOUNT, None, 0.01)
    m.agents_by_state(lambda: {"active": 4})
    server = await serve_metrics(m.registry, "127.0.0.1", 0)
    try:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            r = await http.get("/metrics")
            assert r.status_code == 200
            ctype = r.headers["content-type"]
            assert ctype.startswith("text/plain;") and "version=" in ctype
            labels = {"rpc_service": SVC, "rpc_method": "GetAccount", "rpc_grpc_status_code": "OK"}
            assert scraped(r.text, "rpc_server_requests_total", **labels) == 1
            assert scraped(r.text, "meshwright_registry_agents", state="active") == 4

            m.finished(None, GET_ACCOUNT, None, 0.01)  # the next scrape sees it
            r = await http.get("/metrics")
            assert scraped(r.text, "rpc_server_requests_total", **labels) == 2

            r = await http.get("/metrics", headers={"accept": "application/openmetrics-text"})
            assert r.headers["content-type"].startswith("application/openmetrics-text")
            assert r.text.endswith("# EOF\n")

            assert (await http.get("/")).status_code == 404
            assert (await http.get("/metricsx")).status_code == 404
            assert (await http.post("/metrics")).status_code == 405
            head = await http.head("/metrics")
            assert head.status_code == 200 and head.content == b""
    finally:
        await server.close()
    await server.close()  # idempotent
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(server.url)


async def test_metrics_port_clash_raises() -> None:
    server = await serve_metrics(CollectorRegistry(), "127.0.0.1", 0)
    try:
        with pytest.raises(OSError, match="cannot bind the port of the metrics endpoint"):
            await serve_metrics(CollectorRegistry(), "127.0.0.1", server.port)
    finally:
        await server.close()


# -- MESHWRIGHT_METRICS -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "on"),
    [
        (None, True),
        ("on", True),
        ("1", True),
        ("yes", True),
        ("0", False),
        ("off", False),
        ("OFF ", False),
        ("false", False),
        ("no", False),
    ],
)
def test_metrics_are_on_unless_turned_off(value: str | None, on: bool) -> None:
    from meshwright.mesh.metrics import metrics_enabled

    assert metrics_enabled({} if value is None else {"MESHWRIGHT_METRICS": value}) is on


async def test_a_node_with_metrics_off_counts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from meshwright.economy.v1 import economy_pb2
    from meshwright.mesh.config import MeshConfig
    from meshwright.node import start_node

    for value, counted in (("off", None), ("on", 1.0)):
        monkeypatch.setenv("MESHWRIGHT_METRICS", value)
        node = await start_node(
            MeshConfig(insecure_no_auth=True, grpc_port=0, grace_s=0), gateway=False
        )
        try:
            await node.clients["economy"].call(
                "CreateAccount", economy_pb2.CreateAccountRequest(account_id="a", initial_balance=1)
            )
            labels = {
                "rpc_service": "meshwright.economy.v1.EconomyService",
                "rpc_method": "CreateAccount",
                "rpc_grpc_status_code": "OK",
            }
            reg = node.metrics.registry
            assert reg.get_sample_value("rpc_server_requests_total", labels) == counted
            mint = reg.get_sample_value("meshwright_economy_transactions_total", {"kind": "mint"})
            assert mint == counted
        finally:
            await node.stop()
