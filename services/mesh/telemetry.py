"""Traces: one OpenTelemetry trace per chain of calls, across processes and in-process.

The call pipeline opens a SERVER span for every call it serves (its parent read
from the caller's W3C ``traceparent``); the mesh clients open a CLIENT span
for every call they make and send its context on. The spans are written on the
OpenTelemetry API here, not by the contrib gRPC instrumentation: that one has
open bugs with streaming handlers and context detach, and it would miss the
in-process calls of ``meshwright up``, which never touch gRPC. The spans
themselves are ``mesh._tracer``'s and the export ``mesh._otlp``'s, not the
SDK's: both modules say why (the SDK cost 63% of a fan-out's throughput).

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

import asyncio
import collections
import functools
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from meshwright.mesh._tracer import MeshTracerProvider, resource_from, sampler_from
from meshwright.mesh.errors import MeshError, grpc_code

log = logging.getLogger(__name__)

TRACE_KEYS = frozenset({"traceparent", "tracestate"})
"""The metadata W3C trace context travels in (re-made by each traced hop)."""

DEFAULT_STORE_TRACES = 1000
DEFAULT_STORE_SPANS_PER_TRACE = 5000

_SCOPE = "meshwright"
_PROVIDER = MeshTracerProvider()
"""The process's one provider (the API's global once tracing is first turned on)."""


@dataclass
class _State:
    tracer: trace.Tracer | None = None
    store: SpanStore | None = None
    w3c: bool = True
    """Context in W3C form only (``OTEL_PROPAGATORS`` unset or tracecontext/baggage)."""


_state = _State()


def enabled() -> bool:
    """Whether this process makes spans."""
    return _state.tracer is not None


def span_store() -> SpanStore | None:
    """The recent spans this process keeps, None when it keeps none."""
    return _state.store


# -- configuration ------------------------------------------------------------


def exporters_from_env(
    env: Mapping[str, str] | None = None, resource: Mapping[str, Any] | None = None
) -> list[Any]:
    """The span exporters the standard ``OTEL_*`` variables of ``env`` (the process's
    environment when None) ask for, every setting read from ``env``: which
    (``OTEL_TRACES_EXPORTER``: otlp, console, none; unset, otlp when an OTLP
    endpoint is set, otherwise nothing: nothing is exported unless configured),
    the protocol (grpc, the default, or http/protobuf), endpoint, headers, TLS,
    timeouts and batching (``OTEL_BSP_*``). ``ValueError`` names a bad variable."""
    from meshwright.mesh import _otlp

    return list(_otlp.exporters_from_env(os.environ if env is None else env, resource or {}))


def setup_tracing(
    service_name: str,
    *,
    instance_id: str = "",
    store: SpanStore | None = None,
    exporters: Sequence[Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> bool:
    """Turn tracing on for this process when anything is to receive spans: the
    exporters (``exporters_from_env()`` when None) or ``store``. Returns whether it
    is on. Calling it again replaces what the previous call set up (its exporters
    are flushed and shut down).

    The resource names ``service.name`` and ``service.instance.id`` (one per
    replica); ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` win over
    them. The sampler follows ``OTEL_TRACES_SAMPLER`` (parent-based, always on,
    by default). The process's provider becomes the API's global one, so
    libraries that trace on the API join the same traces. ``ValueError`` names
    a bad variable (and leaves tracing as it was).
    """
    env = os.environ if env is None else env
    attributes: dict[str, Any] = {"service.name": service_name}
    if instance_id:
        attributes["service.instance.id"] = instance_id
    resource = resource_from(attributes, env)
    sampler = sampler_from(env)
    if exporters is None:
        exporters = exporters_from_env(env, resource.attributes)
    shutdown_tracing()
    processors: list[Any] = ([store] if store is not None else []) + list(exporters)
    if not processors:
        return False
    _PROVIDER.configure(resource=resource, sampler=sampler, processors=processors)
    _state.store = store
    _state.w3c = _w3c_only()
    _state.tracer = _PROVIDER.get_tracer(_SCOPE)
    if trace.get_tracer_provider() is not _PROVIDER:
        trace.set_tracer_provider(_PROVIDER)  # the API allows this once a process
        if trace.get_tracer_provider() is not _PROVIDER:
            log.warning("another tracer provider is the global one: libraries trace there")
    return True


def shutdown_tracing() -> None:
    """Flush and stop what ``setup_tracing`` started; tracing is off afterwards."""
    _state.tracer = None
    _state.store = None
    for processor in _PROVIDER.disable():
        try:
            processor.shutdown()
        except Exception:  # an exporter that cannot flush must not fail a stop
            log.warning("tracing shutdown failed", exc_info=True)


def force_flush(timeout_s: float = 5.0) -> bool:
    """Export every span ended so far (tests, and a stop that must not lose them)."""
    done = True
    for processor in _PROVIDER.processors:
        flush = getattr(processor, "force_flush", None)
        if flush is not None:
            done = bool(flush(timeout_s)) and done
    return done


# -- spans ----------------------------------------------------------------------


_RPC: dict[str, tuple[str, dict[str, Any]]] = {}
"""Per method path: the span name and the rpc attributes (a copy is taken per span)."""


def _rpc(path: str) -> tuple[str, dict[str, Any]]:
    """The span name of a call to ``path`` and a fresh dict of its rpc attributes."""
    known = _RPC.get(path)
    if known is None:
        name = path.lstrip("/")
        service, _, method = name.partition("/")
        known = (name, {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method})
        if len(_RPC) < 10_000:  # paths are the contract's methods; bounded all the same
            _RPC[path] = known
    return known[0], dict(known[1])


_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-\S*)?")
_EMPTY = otel_context.Context()


def _w3c_only() -> bool:
    """Whether the configured propagators are W3C trace context (and baggage, which
    passes through as metadata): then context is read and written here, at a fifth
    of the API's generic propagation cost; any other setting goes through it."""
    names = os.environ.get("OTEL_PROPAGATORS", "tracecontext,baggage")
    return {n.strip() for n in names.split(",") if n.strip()} <= {"tracecontext", "baggage"}


def parse_traceparent(value: str, tracestate: str = "") -> SpanContext | None:
    """The remote span context a W3C ``traceparent`` names (None when it is invalid:
    malformed, version ff, extra fields on version 00, an all-zero id)."""
    m = _TRACEPARENT.fullmatch(value.strip())
    if m is None:
        return None
    version, trace_hex, span_hex, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    state = TraceState.from_header([tracestate]) if tracestate else None
    return SpanContext(trace_id, span_id, True, TraceFlags(int(flags, 16) & 0xFF), state)


def format_traceparent(context: SpanContext) -> str:
    """``00-<trace id>-<span id>-<flags>``."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def extract(metadata: Sequence[tuple[str, str]]) -> otel_context.Context:
    """The trace context a call's metadata carries (empty when none)."""
    if not _state.w3c:
        carrier = {k: v for k, v in metadata if k in TRACE_KEYS}
        return propagate.extract(carrier) if carrier else _EMPTY
    traceparent = tracestate = ""
    for key, value in metadata:
        if key == "traceparent":
            traceparent = value
        elif key == "tracestate":
            tracestate = value
    if not traceparent:
        return _EMPTY
    context = parse_traceparent(traceparent, tracestate)
    if context is None:
        return _EMPTY
    return trace.set_span_in_context(trace.NonRecordingSpan(context), _EMPTY)


def start_server_span(path: str, metadata: Sequence[tuple[str, str]], peer: str) -> Span | None:
    """The SERVER span of a call being served (None with tracing off), its parent the
    caller's context: an in-process call's (``peer`` "local") is its current span
    when it has one (no traceparent is written and read back), else the metadata's.
    Not made current: the caller sets it in the call's context."""
    tracer = _state.tracer
    if tracer is None:
        return None
    name, attributes = _rpc(path)
    if peer == "local":
        current = otel_context.get_current()
        if trace.get_current_span(current).get_span_context().is_valid:
            return tracer.start_span(
                name, context=current, kind=SpanKind.SERVER, attributes=attributes
            )
    elif peer:
        attributes["network.peer.address"] = peer
    return tracer.start_span(
        name, context=extract(metadata), kind=SpanKind.SERVER, attributes=attributes
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
    name, attributes = _rpc(path)
    if target:
        attributes["server.address"] = target
    parent = None
    if (
        metadata
        and any(k == "traceparent" for k, _ in metadata)
        and not trace.get_current_span().get_span_context().is_valid
    ):
        parent = extract(metadata)
    return tracer.start_span(name, context=parent, kind=SpanKind.CLIENT, attributes=attributes)


def end_span(span: Span | None, error: BaseException | None = None) -> None:
    """End ``span`` with the gRPC status of ``error`` (OK when None)."""
    if span is None:
        return
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
    if _state.w3c:
        context = (span if span is not None else trace.get_current_span()).get_span_context()
        if not context.is_valid:
            return metadata
        out = [(k, v) for k, v in metadata if k not in TRACE_KEYS]
        out.append(("traceparent", format_traceparent(context)))
        if context.trace_state:
            out.append(("tracestate", context.trace_state.to_header()))
        return out
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=in_context(span))
    if not carrier:
        return metadata
    out = [(k, v) for k, v in metadata if k not in TRACE_KEYS]
    out.extend((k, v) for k, v in carrier.items() if k in TRACE_KEYS)
    return out


def current_traceparent() -> str:
    """The W3C ``traceparent`` of the current span ("" when there is none)."""
    context = trace.get_current_span().get_span_context()
    return format_traceparent(context) if context.is_valid else ""


def context_of(traceparent: str) -> otel_context.Context:
    """A context whose parent span is the one ``traceparent`` names (empty when "" or
    invalid)."""
    if not traceparent:
        return _EMPTY
    context = parse_traceparent(traceparent)
    if context is None:
        return _EMPTY
    return trace.set_span_in_context(trace.NonRecordingSpan(context), _EMPTY)


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
    """A span (INTERNAL unless ``kind`` says) current for the block (None with tracing
    off): a child of ``parent`` when given, else of the current span. An exception leaving the block
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
        if isinstance(err, asyncio.CancelledError):
            s.set_attribute("meshwright.outcome", "cancelled")
        else:
            s.set_status(Status(StatusCode.ERROR, type(err).__name__))
        raise
    finally:
        otel_context.detach(token)
        s.end()


_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])


def traced(name: str, **attributes: Any) -> Callable[[_F], _F]:
    """A coroutine method made a CLIENT span ``name`` (``redis apply``, ``consul
    renew``) with ``attributes`` (``db.system``...), a child of the current span;
    an exception leaving it marks it failed. Only inside a trace: a store's own
    background work (lease renewals, orphan scans) would otherwise be a root trace
    every few seconds. Off, one check and the plain call."""

    def wrap(fn: _F) -> _F:
        @functools.wraps(fn)
        async def call(*args: Any, **kwargs: Any) -> Any:
            if _state.tracer is None or not trace.get_current_span().get_span_context().is_valid:
                return await fn(*args, **kwargs)
            with span(name, kind=SpanKind.CLIENT, attributes=attributes):
                return await fn(*args, **kwargs)

        return call  # type: ignore[return-value]

    return wrap


# -- the store ------------------------------------------------------------------


class SpanStore:
    """The recent finished spans of this process, by trace, bounded: at most
    ``max_traces`` traces (the least recently touched goes first) and
    ``max_spans`` spans in each (later ones are counted, not kept).

    A span processor of ``mesh._tracer`` spans (``on_end`` runs as each span ends,
    on the thread that ends it, so a lock guards the maps). ``meshwright up``
    keeps one, so a workflow's trace can be read without installing anything.
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

    def on_end(self, span: Any) -> None:
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
    def force_flush(self, timeout_s: float | None = None) -> bool:
        return True

    def shutdown(self) -> None:
        """Nothing to release: the spans stay readable until the store is dropped."""

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
    "format_traceparent",
    "force_flush",
    "in_context",
    "inject",
    "name_http_span",
    "parse_traceparent",
    "setup_tracing",
    "shutdown_tracing",
    "span",
    "span_store",
    "start_client_span",
    "start_http_span",
    "start_server_span",
    "trace_id_of",
    "traced",
]
