"""Traces: one OpenTelemetry trace per chain of calls, across processes and in-process.

The call pipeline opens a SERVER span for every call it serves (its parent read
from the caller's W3C ``traceparent``); the mesh clients open a CLIENT span
for every call they make and send its context on. The spans are written on the
OpenTelemetry API here, not by the contrib gRPC instrumentation: that one has
open bugs with streaming handlers and context detach, and it would miss the
in-process calls of ``meshwright up``, which never touch gRPC.

Tracing is off until ``setup_tracing`` turns it on (an exporter configured by
the standard ``OTEL_*`` variables, or a ``SpanStore`` kept in memory). Off, no
span is made and an incoming ``traceparent`` passes through unchanged, so a
process that does not trace does not break the trace of those that do.

Streams: a span is never attached across a ``yield`` (a generator resumed in
another context cannot detach it: the contrib bug). Server streams run each
step in a context of their own (the pipeline's), and the span is set in that
context once; client streams inject their span's context explicitly.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

log = logging.getLogger(__name__)

TRACE_KEYS = frozenset({"traceparent", "tracestate"})
"""The metadata W3C trace context travels in (re-made by each traced hop)."""

DEFAULT_STORE_TRACES = 1000
DEFAULT_STORE_SPANS_PER_TRACE = 5000

_SCOPE = "meshwright"


@dataclass
class _State:
    tracer: trace.Tracer | None = None
    provider: Any = None  # opentelemetry.sdk.trace.TracerProvider; the SDK is imported lazily
    store: SpanStore | None = None


_state = _State()


def enabled() -> bool:
    """Whether this process makes spans."""
    return _state.tracer is not None


def span_store() -> SpanStore | None:
    """The recent spans this process keeps, None when it keeps none."""
    return _state.store


# -- configuration ------------------------------------------------------------


def exporters_from_env(env: Mapping[str, str] | None = None) -> list[Any]:
    """The span exporters the standard ``OTEL_*`` variables ask for.

    ``OTEL_TRACES_EXPORTER``: a comma-separated list of ``otlp``, ``console``,
    ``none``. Unset, ``otlp`` when an OTLP endpoint is set
    (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``),
    otherwise nothing: nothing is exported unless configured. The OTLP protocol
    is ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` or ``OTEL_EXPORTER_OTLP_PROTOCOL``:
    ``grpc`` (the default, as in OpenTelemetry's Python distribution) or
    ``http/protobuf``; the exporters read their endpoint, headers, timeout and
    TLS settings from the same variables themselves.
    """
    env = os.environ if env is None else env
    names = env.get("OTEL_TRACES_EXPORTER")
    if names is None:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        names = "otlp" if endpoint else "none"
    out: list[Any] = []
    for name in (n.strip().lower() for n in names.split(",")):
        if name in ("", "none"):
            continue
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            out.append(ConsoleSpanExporter())
        elif name == "otlp":
            protocol = (
                env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "grpc"
            )
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                    OTLPSpanExporter as GrpcExporter,
                )

                out.append(GrpcExporter())
            elif protocol == "http/protobuf":
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter as HttpExporter,
                )

                out.append(HttpExporter())
            else:
                raise ValueError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: this build exports "
                    "grpc or http/protobuf"
                )
        else:
            raise ValueError(
                f"OTEL_TRACES_EXPORTER={name!r}: known exporters are otlp, console, none"
            )
    return out


def setup_tracing(
    service_name: str,
    *,
    instance_id: str = "",
    store: SpanStore | None = None,
    exporters: Sequence[Any] | None = None,
) -> bool:
    """Turn tracing on for this process when anything is to receive spans: the
    exporters (``exporters_from_env()`` when None) or ``store``. Returns whether it
    is on. Calling it again replaces what the previous call set up (its exporters
    are flushed and shut down).

    The resource names ``service.name`` (``OTEL_SERVICE_NAME`` overrides it) and
    ``service.instance.id`` (one per replica), plus ``OTEL_RESOURCE_ATTRIBUTES``;
    the sampler follows ``OTEL_TRACES_SAMPLER`` (parent-based, always on, by
    default). The global tracer provider is set too, the first time only (the
    API allows one), so libraries that trace on the API join the same traces.
    """
    exporters = exporters_from_env() if exporters is None else list(exporters)
    shutdown_tracing()
    if not exporters and store is None:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {"service.name": service_name}
    if instance_id:
        attributes["service.instance.id"] = instance_id
    resource = Resource.create(attributes)
    if os.environ.get("OTEL_SERVICE_NAME"):
        resource = resource.merge(Resource({"service.name": os.environ["OTEL_SERVICE_NAME"]}))
    provider = TracerProvider(resource=resource)
    if store is not None:
        provider.add_span_processor(store)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    _state.provider = provider
    _state.store = store
    _state.tracer = provider.get_tracer(_SCOPE)
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(provider)
    return True


def shutdown_tracing() -> None:
    """Flush and stop what ``setup_tracing`` started; tracing is off afterwards."""
    provider, _state.provider = _state.provider, None
    _state.tracer = None
    _state.store = None
    if provider is not None:
        try:
            provider.shutdown()
        except Exception:  # an exporter that cannot flush must not fail a stop
            log.warning("tracing shutdown failed", exc_info=True)


def force_flush(timeout_ms: int = 5000) -> bool:
    """Export every span ended so far (tests, and a stop that must not lose them)."""
    provider = _state.provider
    return True if provider is None else bool(provider.force_flush(timeout_ms))


# -- spans ----------------------------------------------------------------------


def _rpc_attributes(path: str) -> dict[str, Any]:
    service, _, method = path.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}


def extract(metadata: Sequence[tuple[str, str]]) -> otel_context.Context:
    """The trace context a call's metadata carries (empty when none)."""
    carrier = {k: v for k, v in metadata if k in TRACE_KEYS}
    return propagate.extract(carrier) if carrier else otel_context.Context()


def start_server_span(path: str, metadata: Sequence[tuple[str, str]], peer: str) -> Span | None:
    """The SERVER span of a call being served (None with tracing off), its parent the
    caller's context. Not made current: the caller sets it in the call's context."""
    tracer = _state.tracer
    if tracer is None:
        return None
    attributes = _rpc_attributes(path)
    if peer and peer != "local":
        attributes["network.peer.address"] = peer
    return tracer.start_span(
        path.lstrip("/"), context=extract(metadata), kind=SpanKind.SERVER, attributes=attributes
    )


def start_http_span(method: str, path: str, headers: Sequence[tuple[str, str]]) -> Span | None:
    """The SERVER span of an HTTP request (None with tracing off), its parent the
    ``traceparent`` header's context. Named ``<METHOD>`` until ``name_http_span``
    gives it its route."""
    tracer = _state.tracer
    if tracer is None:
        return None
    attributes = {"http.request.method": method, "url.path": path}
    return tracer.start_span(
        method, context=extract(headers), kind=SpanKind.SERVER, attributes=attributes
    )


def name_http_span(span: Span | None, method: str, route: str) -> None:
    """Name an HTTP span by its route template (``GET /v1/workflows/{workflow_id}``)."""
    if span is not None:
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)


def end_http_span(span: Span | None, status: int) -> None:
    """End an HTTP span with its response status (5xx is an error, as the semantic
    conventions say of servers)."""
    if span is None:
        return
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
    span.end()


def start_client_span(
    path: str, target: str = "", metadata: Sequence[tuple[str, str]] = ()
) -> Span | None:
    """The CLIENT span of a call about to be made (None with tracing off): a child of
    the current span, or, with none current, of the ``traceparent`` the caller put
    in ``metadata`` (a caller continuing a trace it got from elsewhere)."""
    tracer = _state.tracer
    if tracer is None:
        return None
    attributes = _rpc_attributes(path)
    if target:
        attributes["server.address"] = target
    parent = None
    if metadata and not trace.get_current_span().get_span_context().is_valid:
        parent = extract(metadata)
    return tracer.start_span(
        path.lstrip("/"), context=parent, kind=SpanKind.CLIENT, attributes=attributes
    )


def end_span(span: Span | None, error: BaseException | None = None) -> None:
    """End ``span`` with the gRPC status of ``error`` (OK when None)."""
    if span is None:
        return
    from meshwright.mesh.errors import MeshError, grpc_code

    if error is None:
        span.set_attribute("rpc.grpc.status_code", 0)
    elif isinstance(error, MeshError):
        code = grpc_code(error)
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        span.set_attribute("error.type", error.reason)
        span.set_status(Status(StatusCode.ERROR, f"{code.name}: {error.message}"))
    else:
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    span.end()


def in_context(span: Span | None, ctx: otel_context.Context | None = None) -> otel_context.Context:
    """``ctx`` (the current context when None) with ``span`` current in it."""
    base = otel_context.get_current() if ctx is None else ctx
    return base if span is None else trace.set_span_in_context(span, base)


def attach(span: Span | None) -> object | None:
    """Make ``span`` current until ``detach`` (in the same context: never across a yield)."""
    return None if span is None else otel_context.attach(trace.set_span_in_context(span))


def detach(token: object | None) -> None:
    if token is not None:
        otel_context.detach(token)  # type: ignore[arg-type]


def inject(metadata: list[tuple[str, str]], span: Span | None = None) -> list[tuple[str, str]]:
    """``metadata`` with the trace context of ``span`` (the current span when None)
    in place of any it had. With tracing off it is returned as it is: an incoming
    context passes through a process that does not trace."""
    if _state.tracer is None:
        return metadata
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=in_context(span))
    if not carrier:
        return metadata
    out = [(k, v) for k, v in metadata if k not in TRACE_KEYS]
    out.extend((k, v) for k, v in carrier.items() if k in TRACE_KEYS)
    return out


def current_traceparent() -> str:
    """The W3C ``traceparent`` of the current span ("" when there is none)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


def context_of(traceparent: str) -> otel_context.Context:
    """A context whose parent span is the one ``traceparent`` names (empty when "")."""
    if not traceparent:
        return otel_context.Context()
    return propagate.extract({"traceparent": traceparent})


def trace_id_of(traceparent: str) -> str:
    """The 32-hex trace id of a W3C ``traceparent`` ("" when it is not one)."""
    parts = traceparent.split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        return parts[1]
    return ""


@contextmanager
def span(
    name: str,
    *,
    parent: otel_context.Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span | None]:
    """An INTERNAL span current for the block (None with tracing off): a child of
    ``parent`` when given, else of the current span. An exception leaving the block
    marks it failed. Use in coroutines, never across a ``yield``."""
    tracer = _state.tracer
    if tracer is None:
        yield None
        return
    s = tracer.start_span(name, context=parent, kind=kind, attributes=dict(attributes or {}))
    token = otel_context.attach(trace.set_span_in_context(s))
    try:
        yield s
    except BaseException as err:
        import asyncio

        if isinstance(err, asyncio.CancelledError):
            s.set_attribute("meshwright.outcome", "cancelled")
        else:
            s.set_status(Status(StatusCode.ERROR, type(err).__name__))
        raise
    finally:
        otel_context.detach(token)
        s.end()


# -- the store ------------------------------------------------------------------


class SpanStore(SpanProcessor):
    """The recent finished spans of this process, by trace, bounded: at most
    ``max_traces`` traces (the least recently touched goes first) and
    ``max_spans`` spans in each (later ones are counted, not kept).

    A span processor (``on_end`` runs as each span ends, on the thread that ends
    it, so a lock guards the maps). ``meshwright up`` keeps one, so a workflow's
    trace can be read without installing anything.
    """

    def __init__(
        self,
        *,
        max_traces: int = DEFAULT_STORE_TRACES,
        max_spans: int = DEFAULT_STORE_SPANS_PER_TRACE,
    ) -> None:
        if max_traces < 1 or max_spans < 1:
            raise ValueError("max_traces and max_spans must be at least 1")
        self.max_traces = max_traces
        self.max_spans = max_spans
        self._traces: collections.OrderedDict[int, list[Any]] = collections.OrderedDict()
        self._dropped: dict[int, int] = {}
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None:
            return
        trace_id = span.context.trace_id
        with self._lock:
            spans = self._traces.get(trace_id)
            if spans is None:
                spans = self._traces[trace_id] = []
                while len(self._traces) > self.max_traces:
                    gone, _ = self._traces.popitem(last=False)
                    self._dropped.pop(gone, None)
            else:
                self._traces.move_to_end(trace_id)
            if len(spans) < self.max_spans:
                spans.append(span)
            else:
                self._dropped[trace_id] = self._dropped.get(trace_id, 0) + 1

    # reads
    def spans(self, trace_id: int | str) -> list[Any]:
        """The kept spans of a trace (an int or 32 hex digits), in start order."""
        if isinstance(trace_id, str):
            try:
                trace_id = int(trace_id, 16)
            except ValueError:
                return []
        with self._lock:
            spans = list(self._traces.get(trace_id, ()))
        return sorted(spans, key=lambda s: s.start_time or 0)

    def dropped(self, trace_id: int | str) -> int:
        """Spans of the trace that ended past ``max_spans`` (counted, not kept)."""
        if isinstance(trace_id, str):
            try:
                trace_id = int(trace_id, 16)
            except ValueError:
                return 0
        with self._lock:
            return self._dropped.get(trace_id, 0)

    def trace_ids(self) -> list[int]:
        """The kept traces, least recently touched first."""
        with self._lock:
            return list(self._traces)

    def __len__(self) -> int:
        with self._lock:
            return len(self._traces)


__all__ = [
    "TRACE_KEYS",
    "Span",
    "SpanKind",
    "Status",
    "StatusCode",
    "SpanStore",
    "attach",
    "context_of",
    "current_traceparent",
    "detach",
    "enabled",
    "end_http_span",
    "end_span",
    "exporters_from_env",
    "extract",
    "force_flush",
    "in_context",
    "inject",
    "name_http_span",
    "setup_tracing",
    "shutdown_tracing",
    "span",
    "span_store",
    "start_client_span",
    "start_http_span",
    "start_server_span",
    "trace_id_of",
]
