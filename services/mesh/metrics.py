"""Prometheus metrics of the mesh: one registry per process, every family in one place.

``MeshMetrics`` holds the families of every part of the mesh (RPC server,
workflow engine, economy, registry, agent SDK) on a ``CollectorRegistry`` of
its own, never prometheus_client's global default, so tests and several nodes
in one process do not collide. It is a ``CallObserver``: hung on
``Pipeline.observers`` it counts and times every call the pipeline finishes,
labelled after the OpenTelemetry RPC conventions (``rpc.service``,
``rpc.method``, ``rpc.grpc.status_code`` as the code's name). The other parts
call its small methods (``workflow_ended``, ``transaction``, ...).

Label cardinality stays bounded: skill names are free text from users, so the
families labelled by skill keep the first ``max_skill_values`` distinct names
they see and report the rest as ``other``. The families fed together share one
cap (the engine's task families, the agent SDK's), so a skill is ``other`` in
all of them or in none: its errors and durations stay comparable. Every other
label takes values from the mesh's own code (states, transaction kinds, RPC
paths of registered endpoints).

``render`` gives the exposition body; ``serve_metrics`` serves it on
``GET /metrics`` with uvicorn and Starlette in the running event loop (no
thread), so the scrape-time callbacks (``agents_by_state``) run on the loop
that owns the state they read.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshwright.mesh._asgi import AsgiServer, serve_asgi
from meshwright.mesh.context import CallContext
from meshwright.mesh.errors import MeshError, grpc_code

log = logging.getLogger(__name__)

MAX_SKILL_VALUES = 200
"""Distinct skill label values one family keeps by default; later ones become ``OTHER``."""
OTHER = "other"
"""The label value every skill past the cap is reported as."""

RPC_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""Seconds: 0.1 ms (an in-process call) to 30 s (a long deadline)."""
TASK_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)
"""Seconds: 10 ms to an hour, since agent tasks run from a lookup to a long generation."""

WORKFLOW_END_STATES = frozenset({"succeeded", "failed", "cancelled"})
"""The terminal states ``workflow_ended`` accepts."""


class _Capped:
    """Skill label values of the families fed together: the first ``limit`` distinct ones
    kept, the rest ``OTHER``. Once full it stays full, so a value maps the same way for
    good (a gauge raised under one value is lowered under the same)."""

    __slots__ = ("_limit", "_lock", "_seen")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen or value == OTHER:
            return value
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self._limit:
                return OTHER
            self._seen.add(value)
            return value


class _AgentsByState(Collector):
    """``meshwright_registry_agents{state}``, read from a callback at every scrape."""

    NAME = "meshwright_registry_agents"
    DOC = "Agents registered, by state."

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, int]] | None = None

    def describe(self) -> Iterator[Metric]:
        # Names the family for the registry's duplicate check without calling the source.
        yield GaugeMetricFamily(self.NAME, self.DOC, labels=["state"])

    def collect(self) -> Iterator[Metric]:
        source = self.source
        if source is None:
            return
        try:
            family = GaugeMetricFamily(self.NAME, self.DOC, labels=["state"])
            for state, count in sorted(source().items()):
                family.add_metric([str(state)], float(count))
        except Exception:  # a broken source must not break the scrape of everything else
            log.exception("agents_by_state callback failed; %s left out of this scrape", self.NAME)
            return
        yield family


_MAX_CACHED = 4096
"""Labelled children kept per hot path (more are looked up each time: still right)."""


class MeshMetrics:
    """Every metric family of the mesh, on one registry; a ``CallObserver`` for RPCs."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_skill_values: int = MAX_SKILL_VALUES,
    ) -> None:
        """``registry`` None makes a fresh one (never the global default).
        ``max_skill_values``: distinct skills the task families keep, and the agent
        families (>= 1)."""
        if max_skill_values < 1:
            raise ValueError(f"max_skill_values must be >= 1, not {max_skill_values}")
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry

        # RPC server (OpenTelemetry rpc.server.* in Prometheus naming).
        self.rpc_requests = Counter(
            "rpc_server_requests",
            "RPCs the server finished, by gRPC status code.",
            ["rpc_service", "rpc_method", "rpc_grpc_status_code"],
            registry=reg,
        )
        self.rpc_duration = Histogram(
            "rpc_server_duration_seconds",
            "Time the server took per RPC, every pipeline step included.",
            ["rpc_service", "rpc_method"],
            buckets=RPC_BUCKETS,
            registry=reg,
        )

        # Workflow service.
        self.workflows = Counter(
            "meshwright_workflows",
            "Workflows created here, and workflows that reached a terminal state here.",
            ["state"],
            registry=reg,
        )
        for state in ("created", *sorted(WORKFLOW_END_STATES)):
            self.workflows.labels(state)  # every series from zero, so rate() sees the first
        self.workflows_running = Gauge(
            "meshwright_workflows_running", "Workflows this replica runs now.", registry=reg
        )
        self.tasks = Counter(
            "meshwright_tasks",
            "Task attempts that finished, by skill and outcome.",
            ["skill", "state"],
            registry=reg,
        )
        self._task_skill = _Capped(max_skill_values)
        """The skills of the task families (tasks, durations, retries): one cap for all."""
        self.task_duration = Histogram(
            "meshwright_task_duration_seconds",
            "Duration of task attempts, by skill.",
            ["skill"],
            buckets=TASK_BUCKETS,
            registry=reg,
        )
        self.task_retries = Counter(
            "meshwright_task_retries",
            "Task attempts scheduled again after a failure, by skill.",
            ["skill"],
            registry=reg,
        )
        self.task_queue_depth = Gauge(
            "meshwright_task_queue_depth", "Tasks waiting for an agent.", registry=reg
        )
        self.workflow_takeovers = Counter(
            "meshwright_workflow_takeovers",
            "Orphaned workflows this replica took over from another.",
            registry=reg,
        )

        # Economy.
        self.transactions = Counter(
            "meshwright_economy_transactions",
            "Ledger transactions committed, by kind.",
            ["kind"],
            registry=reg,
        )
        self.escrows_open = Gauge("meshwright_escrows_open", "Escrows open now.", registry=reg)

        # Registry.
        self._agents = _AgentsByState()
        reg.register(self._agents)
        self.heartbeats = Counter(
            "meshwright_registry_heartbeats", "Agent heartbeats received.", registry=reg
        )

        # Agent SDK.
        self.agent_in_flight = Gauge(
            "meshwright_agent_tasks_in_flight",
            "Tasks this agent runs now, by skill.",
            ["skill"],
            registry=reg,
        )
        self._agent_skill = _Capped(max_skill_values)
        """The skills of the agent families (in flight, durations, errors): one cap for all."""
        self.agent_duration = Histogram(
            "meshwright_agent_task_duration_seconds",
            "Duration of the tasks this agent ran, by skill.",
            ["skill"],
            buckets=TASK_BUCKETS,
            registry=reg,
        )
        self.agent_errors = Counter(
            "meshwright_agent_task_errors",
            "Tasks this agent ran that failed, by skill.",
            ["skill"],
            registry=reg,
        )
        # The labelled children of the hot paths, by label values: prometheus-client's
        # labels() takes a lock and builds a tuple every call (a few us, on every RPC).
        self._rpc_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._agent_children: dict[str, tuple[Any, Any, Any]] = {}
        self._task_children: dict[tuple[str, str], tuple[Any, Any]] = {}

    # RPC server ---------------------------------------------------------------

    def finished(
        self, call: CallContext | None, method: str, error: MeshError | None, seconds: float
    ) -> None:
        """Count and time one finished call (``CallObserver``); ``method`` is its full path."""
        code = "OK" if error is None else grpc_code(error).name
        children = self._rpc_children.get((method, code))
        if children is None:
            service, name = split_method(method)
            children = (
                self.rpc_requests.labels(service, name, code),
                self.rpc_duration.labels(service, name),
            )
            if len(self._rpc_children) < _MAX_CACHED:
                self._rpc_children[(method, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    # Workflow service ---------------------------------------------------------

    def workflow_created(self) -> None:
        """A workflow was created, and this replica runs it."""
        self.workflows.labels("created").inc()
        self.workflows_running.inc()

    def workflow_ended(self, state: str) -> None:
        """A workflow this replica ran reached ``state``: succeeded, failed or cancelled."""
        if state not in WORKFLOW_END_STATES:
            raise ValueError(
                f"workflow end state must be one of {sorted(WORKFLOW_END_STATES)}, not {state!r}"
            )
        self.workflows.labels(state).inc()
        self.workflows_running.dec()

    def workflow_released(self) -> None:
        """This replica stopped running a live workflow (lease lost or handed off)."""
        self.workflows_running.dec()

    def takeover(self) -> None:
        """This replica took over an orphaned workflow, and runs it now."""
        self.workflow_takeovers.inc()
        self.workflows_running.inc()

    def task_finished(self, skill: str, state: str, seconds: float) -> None:
        """One task attempt ended in ``state`` (the engine's outcome name) after ``seconds``."""
        children = self._task_children.get((skill, state))
        if children is None:
            capped = self._task_skill(skill)
            children = (self.tasks.labels(capped, state), self.task_duration.labels(capped))
            if len(self._task_children) < _MAX_CACHED:
                self._task_children[(skill, state)] = children
        children[0].inc()
        children[1].observe(seconds)

    def task_retried(self, skill: str) -> None:
        """A failed task attempt is scheduled again."""
        self.task_retries.labels(self._task_skill(skill)).inc()

    def set_queue_depth(self, n: int) -> None:
        """``n`` tasks wait for an agent now."""
        if n < 0:
            raise ValueError(f"queue depth cannot be negative: {n}")
        self.task_queue_depth.set(n)

    def queue_depth_changed(self, delta: int) -> None:
        """``delta`` tasks more (or fewer, when negative) wait for an agent."""
        self.task_queue_depth.inc(delta)

    # Economy ------------------------------------------------------------------

    def transaction(self, kind: str) -> None:
        """A ledger transaction of ``kind`` (a ``TransactionKind`` name) was committed."""
        self.transactions.labels(kind).inc()

    def escrow_opened(self) -> None:
        """An escrow was opened."""
        self.escrows_open.inc()

    def escrow_closed(self) -> None:
        """An escrow was released or refunded."""
        self.escrows_open.dec()

    def set_escrows_open(self, n: int) -> None:
        """``n`` escrows are open (read from the store at start, since escrows outlive a
        process)."""
        if n < 0:
            raise ValueError(f"open escrows cannot be negative: {n}")
        self.escrows_open.set(n)

    # Registry -----------------------------------------------------------------

    def agents_by_state(self, fn: Callable[[], Mapping[str, int]]) -> None:
        """Fill ``meshwright_registry_agents{state}`` from ``fn`` at every scrape (a later
        call replaces ``fn``). A failing ``fn`` is logged and leaves the family out."""
        self._agents.source = fn

    def heartbeat(self) -> None:
        """The registry received one agent heartbeat."""
        self.heartbeats.inc()

    # Agent SDK ----------------------------------------------------------------

    def agent_task_started(self, skill: str) -> None:
        """This agent started a task of ``skill``."""
        self._agent(skill)[0].inc()

    def agent_task_finished(self, skill: str, seconds: float, ok: bool) -> None:
        """A task ``agent_task_started`` announced ended after ``seconds``; ``ok`` False
        when it failed."""
        in_flight, duration, errors = self._agent(skill)
        in_flight.dec()
        duration.observe(seconds)
        if not ok:
            errors.inc()

    def _agent(self, skill: str) -> tuple[Any, Any, Any]:
        """The in-flight, duration and error children of ``skill`` (its capped label);
        the error series exists from zero once a skill was seen."""
        children = self._agent_children.get(skill)
        if children is None:
            capped = self._agent_skill(skill)
            children = (
                self.agent_in_flight.labels(capped),
                self.agent_duration.labels(capped),
                self.agent_errors.labels(capped),
            )
            if len(self._agent_children) < _MAX_CACHED:
                self._agent_children[skill] = children
        return children


def metrics_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process counts (``MESHWRIGHT_METRICS``: on unless 0, off, false or
    no). Off, /metrics still answers, with the families and no counts."""
    value = (os.environ if env is None else env).get("MESHWRIGHT_METRICS", "on")
    return value.strip().lower() not in ("0", "off", "false", "no")


def split_method(method: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` -> (``pkg.Service``, ``Method``); no service -> ``""``."""
    service, _, name = method.lstrip("/").rpartition("/")
    return service, name


def render(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """The exposition of ``registry`` and its content type.

    Without ``accept`` (or with an empty one): the Prometheus text format,
    ``CONTENT_TYPE_LATEST``. With a request's Accept header: the format it
    asks for, by prometheus_client's own negotiation (OpenMetrics when asked).
    """
    if not accept:
        return generate_latest(registry), CONTENT_TYPE_LATEST
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def metrics_route(source: MeshMetrics | CollectorRegistry) -> Route:
    """``GET /metrics`` (and HEAD) rendering ``source`` (the gateway mounts it)."""
    registry = source.registry if isinstance(source, MeshMetrics) else source

    async def metrics(request: Request) -> Response:
        body, content_type = render(registry, request.headers.get("accept"))
        return Response(body, media_type=content_type)

    return Route("/metrics", metrics, methods=["GET"])


def metrics_app(registry: CollectorRegistry) -> Starlette:
    """An ASGI app with ``GET /metrics`` (and HEAD); every other path is 404."""
    return Starlette(routes=[metrics_route(registry)])


class MetricsServer:
    """A metrics endpoint being served; ``close`` stops it."""

    def __init__(self, server: AsgiServer, host: str) -> None:
        self.host = host
        self.port = server.port
        """The bound port (the real one when 0 was asked for)."""
        self._server = server

    @property
    def url(self) -> str:
        """The scrape URL, e.g. ``http://127.0.0.1:9464/metrics``."""
        return f"{self._server.url}/metrics"

    async def close(self) -> None:
        """Stop accepting, let scrapes in progress finish (idempotent)."""
        await self._server.stop()


async def serve_metrics(
    registry: CollectorRegistry, host: str, port: int, *, grace_s: float = 2.0
) -> MetricsServer:
    """Serve ``registry`` on ``http://host:port/metrics`` in the running event loop.

    Binds before returning, so a port clash raises ``OSError`` here; port 0
    picks a free port (``server.port``). ``grace_s`` bounds how long ``close``
    waits for scrapes in progress.
    """
    server = await serve_asgi(
        metrics_app(registry),
        host=host,
        port=port,
        grace_s=grace_s,
        what="the metrics endpoint",
        lifespan="off",
    )
    log.info("metrics on http://%s:%d/metrics", host, server.port)
    return MetricsServer(server, host)


__all__ = [
    "MAX_SKILL_VALUES",
    "OTHER",
    "RPC_BUCKETS",
    "TASK_BUCKETS",
    "WORKFLOW_END_STATES",
    "MeshMetrics",
    "MetricsServer",
    "metrics_app",
    "metrics_enabled",
    "metrics_route",
    "render",
    "serve_metrics",
    "split_method",
]
