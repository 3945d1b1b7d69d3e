"""mesh.telemetry: exporters chosen by the OTEL_* variables, the bounded span store,
trace context in and out of metadata, and spans that end with their call's status."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from meshwright.mesh import _otlp, telemetry
from meshwright.mesh.errors import InvalidArgument, NotFound

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def store() -> Iterator[telemetry.SpanStore]:
    spans = telemetry.SpanStore(max_traces=10, max_spans=100)
    assert telemetry.setup_tracing("t", store=spans, exporters=[])
    try:
        yield spans
    finally:
        telemetry.shutdown_tracing()


# -- exporters ----------------------------------------------------------------------


GRPC, HTTP, CONSOLE = "grpc", "http", "console"


def _kind(exporter: object) -> str:
    if isinstance(exporter, _otlp.ConsoleExporter):
        return CONSOLE
    assert isinstance(exporter, _otlp.BatchExporter)
    return GRPC if isinstance(exporter.transport, _otlp.GrpcTransport) else HTTP


@pytest.mark.parametrize(
    ("env", "kinds"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, [GRPC]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"}, [GRPC]),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            [HTTP],
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            [HTTP],
        ),
        ({"OTEL_TRACES_EXPORTER": "console"}, [CONSOLE]),
        ({"OTEL_TRACES_EXPORTER": "console, otlp"}, [CONSOLE, GRPC]),
    ],
)
def test_exporters_follow_the_standard_variables(env: dict[str, str], kinds: list[str]) -> None:
    got = telemetry.exporters_from_env(env)
    try:
        assert [_kind(e) for e in got] == kinds
    finally:
        for e in got:
            e.shutdown()


@pytest.mark.parametrize(
    ("env", "word"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "zipkin"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "http/json"),
    ],
)
def test_an_exporter_this_build_lacks_is_a_clear_error(env: dict[str, str], word: str) -> None:
    with pytest.raises(ValueError, match=word.replace("/", ".")):
        telemetry.exporters_from_env(env)


def test_nothing_to_receive_spans_leaves_tracing_off() -> None:
    assert not telemetry.setup_tracing("t", exporters=[])
    assert not telemetry.enabled()
    assert telemetry.start_server_span("/a.B/C", [("traceparent", TP)], "local") is None
    assert telemetry.start_client_span("/a.B/C") is None
    # Off, an incoming context passes through as it came.
    md = [("traceparent", TP), ("x-request-id", "r")]
    assert telemetry.inject(list(md)) == md


def test_the_resource_names_the_service_and_replica(
    store: telemetry.SpanStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    telemetry.setup_tracing("meshwright-economy", instance_id="host:42", store=store, exporters=[])
    with telemetry.span("work"):
        pass
    (trace_id,) = store.trace_ids()
    (span,) = store.spans(trace_id)
    assert span.resource.attributes["service.name"] == "meshwright-economy"
    assert span.resource.attributes["service.instance.id"] == "host:42"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "renamed")
    telemetry.setup_tracing("meshwright-economy", store=store, exporters=[])
    with telemetry.span("work"):
        pass
    names = {
        s.resource.attributes["service.name"] for t in store.trace_ids() for s in store.spans(t)
    }
    assert "renamed" in names


# -- the store ------------------------------------------------------------------------


def _spans_in_new_traces(n: int) -> list[str]:
    ids = []
    for _ in range(n):
        with telemetry.span("root") as s:
            assert s is not None
            ids.append(f"{s.get_span_context().trace_id:032x}")
    return ids


def test_the_store_keeps_exactly_max_traces_and_drops_the_least_recent(
    store: telemetry.SpanStore,
) -> None:
    ids = _spans_in_new_traces(10)
    assert len(store) == 10 and all(store.spans(i) for i in ids)
    ids += _spans_in_new_traces(1)  # one past the bound
    assert len(store) == 10
    assert store.spans(ids[0]) == [] and store.spans(ids[-1])


def test_a_touched_trace_is_kept_over_older_ones(store: telemetry.SpanStore) -> None:
    first = telemetry.start_client_span("/a.B/C")
    assert first is not None
    ctx = telemetry.in_context(first)
    first_id = f"{first.get_span_context().trace_id:032x}"
    first.end()
    _spans_in_new_traces(9)
    with telemetry.span("late child", parent=ctx):  # touches the first trace
        pass
    _spans_in_new_traces(1)
    assert len(store.spans(first_id)) == 2


def test_the_store_keeps_max_spans_of_a_trace_and_counts_the_rest() -> None:
    spans = telemetry.SpanStore(max_traces=2, max_spans=3)
    telemetry.setup_tracing("t", store=spans, exporters=[])
    try:
        with telemetry.span("root") as root:
            assert root is not None
            for _ in range(3):  # 3 children + the root: one past the bound
                with telemetry.span("child"):
                    pass
        trace_id = root.get_span_context().trace_id
        assert len(spans.spans(trace_id)) == 3
        assert spans.dropped(trace_id) == 1
        assert spans.dropped("not hex") == 0 and spans.spans("not hex") == []
    finally:
        telemetry.shutdown_tracing()


@pytest.mark.parametrize(("traces", "per_trace"), [(0, 1), (1, 0)])
def test_a_store_must_keep_something(traces: int, per_trace: int) -> None:
    with pytest.raises(ValueError):
        telemetry.SpanStore(max_traces=traces, max_spans=per_trace)


# -- context in and out ---------------------------------------------------------------


def test_a_server_span_is_a_child_of_the_callers_context(store: telemetry.SpanStore) -> None:
    span = telemetry.start_server_span(
        "/meshwright.x.v1.S/Do", [("traceparent", TP)], "ipv4:1.2.3.4:5"
    )
    assert span is not None
    ctx = span.get_span_context()
    assert f"{ctx.trace_id:032x}" == TP.split("-")[1]
    telemetry.end_span(span)
    (kept,) = store.spans(TP.split("-")[1])
    assert kept.parent is not None and f"{kept.parent.span_id:016x}" == TP.split("-")[2]
    assert kept.attributes["rpc.service"] == "meshwright.x.v1.S"
    assert kept.attributes["rpc.method"] == "Do"
    assert kept.attributes["network.peer.address"] == "ipv4:1.2.3.4:5"
    assert kept.attributes["rpc.grpc.status_code"] == 0


def test_a_call_without_context_starts_a_trace(store: telemetry.SpanStore) -> None:
    span = telemetry.start_server_span("/a.B/C", [("x-request-id", "r")], "local")
    assert span is not None and span.parent is None  # type: ignore[attr-defined]
    telemetry.end_span(span)


def test_inject_replaces_the_incoming_context_with_the_calls_span(
    store: telemetry.SpanStore,
) -> None:
    span = telemetry.start_client_span("/a.B/C", metadata=[("traceparent", TP)])
    assert span is not None
    out = telemetry.inject(
        [("traceparent", TP), ("tracestate", "k=v"), ("x-request-id", "r")], span
    )
    traceparent = dict(out)["traceparent"]
    assert traceparent.split("-")[1] == TP.split("-")[1]  # same trace
    assert traceparent.split("-")[2] == f"{span.get_span_context().span_id:016x}"  # our span
    assert [k for k, _ in out].count("traceparent") == 1
    assert ("x-request-id", "r") in out
    telemetry.end_span(span)


def test_a_client_span_prefers_the_current_span_over_metadata(store: telemetry.SpanStore) -> None:
    with telemetry.span("current") as current:
        assert current is not None
        span = telemetry.start_client_span("/a.B/C", metadata=[("traceparent", TP)])
        assert span is not None
        assert span.parent.span_id == current.get_span_context().span_id  # type: ignore[attr-defined]
        telemetry.end_span(span)


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (None, 0, None),
        (NotFound("no such thing"), 5, "NOT_FOUND: no such thing"),
        (InvalidArgument("bad"), 3, "INVALID_ARGUMENT: bad"),
        (RuntimeError("boom"), None, "RuntimeError"),
    ],
)
def test_a_span_ends_with_its_calls_status(
    store: telemetry.SpanStore, error: Exception | None, code: int | None, status: str | None
) -> None:
    span = telemetry.start_client_span("/a.B/C")
    telemetry.end_span(span, error)
    assert span is not None
    (kept,) = store.spans(span.get_span_context().trace_id)
    assert kept.attributes.get("rpc.grpc.status_code") == code
    if status is None:
        assert kept.status.is_ok or kept.status.is_unset
    else:
        assert not kept.status.is_ok and kept.status.description == status


def test_an_exception_leaving_a_span_block_marks_it_failed(store: telemetry.SpanStore) -> None:
    with pytest.raises(KeyError), telemetry.span("work") as s:
        raise KeyError("x")
    assert s is not None
    (kept,) = store.spans(s.get_span_context().trace_id)
    assert not kept.status.is_ok and kept.status.description == "KeyError"


def test_http_spans_carry_route_and_status(store: telemetry.SpanStore) -> None:
    span = telemetry.start_http_span("GET", "/v1/workflows/wf-1", [("traceparent", TP)])
    telemetry.name_http_span(span, "GET", "/v1/workflows/{workflow_id}")
    telemetry.end_http_span(span, 503)
    (kept,) = store.spans(TP.split("-")[1])
    assert kept.name == "GET /v1/workflows/{workflow_id}"
    assert kept.attributes["http.route"] == "/v1/workflows/{workflow_id}"
    assert kept.attributes["http.response.status_code"] == 503
    assert not kept.status.is_ok  # 5xx is a server error
    ok = telemetry.start_http_span("GET", "/x", [])
    telemetry.end_http_span(ok, 404)  # 4xx is the caller's, not an error of the span
    (kept,) = [s for t in store.trace_ids() for s in store.spans(t) if s.name == "GET"]
    assert kept.status.is_unset


@pytest.mark.parametrize(
    ("traceparent", "trace_id"),
    [(TP, TP.split("-")[1]), ("", ""), ("garbage", ""), ("00-short-00f067aa0ba902b7-01", "")],
)
def test_trace_id_of(traceparent: str, trace_id: str) -> None:
    assert telemetry.trace_id_of(traceparent) == trace_id


def test_current_traceparent_names_the_current_span(store: telemetry.SpanStore) -> None:
    assert telemetry.current_traceparent() == ""
    with telemetry.span("x") as s:
        assert s is not None
        tp = telemetry.current_traceparent()
        assert tp.split("-")[2] == f"{s.get_span_context().span_id:016x}"
    ctx: Any = telemetry.context_of(tp)
    with telemetry.span("child", parent=ctx) as child:
        assert child is not None
        assert child.parent.span_id == s.get_span_context().span_id  # type: ignore[attr-defined]


# -- W3C trace context, read and written here -----------------------------------------

TRACE, SPAN = TP.split("-")[1], TP.split("-")[2]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (TP, True),
        (f" {TP} ", True),  # surrounding whitespace is tolerated
        (f"01-{TRACE}-{SPAN}-01-future", True),  # a later version may carry more
        (f"00-{TRACE}-{SPAN}-01-extra", False),  # version 00 may not
        (f"ff-{TRACE}-{SPAN}-01", False),  # ff is never valid
        (f"00-{'0' * 32}-{SPAN}-01", False),
        (f"00-{TRACE}-{'0' * 16}-01", False),
        (TP.upper(), False),  # lower-case hex only
        (f"00-{TRACE[:-1]}-{SPAN}-01", False),
        ("", False),
    ],
)
def test_traceparent_parsing_follows_the_w3c_rules(value: str, ok: bool) -> None:
    parsed = telemetry.parse_traceparent(value)
    assert (parsed is not None) is ok
    if parsed is not None:
        assert f"{parsed.trace_id:032x}" == TRACE and f"{parsed.span_id:016x}" == SPAN
        assert parsed.is_remote and parsed.trace_flags.sampled


def test_traceparent_round_trips_with_its_flags_and_state() -> None:
    parsed = telemetry.parse_traceparent(TP.replace("-01", "-00"), "k=v,x=y")
    assert parsed is not None and not parsed.trace_flags.sampled
    assert telemetry.format_traceparent(parsed) == TP.replace("-01", "-00")
    assert parsed.trace_state.get("x") == "y"


def test_an_invalid_incoming_traceparent_starts_a_new_trace(store: telemetry.SpanStore) -> None:
    span = telemetry.start_server_span("/a.B/C", [("traceparent", "garbage")], "local")
    assert span is not None and span.parent is None  # type: ignore[attr-defined]
    telemetry.end_span(span)
    assert telemetry.context_of("garbage") == telemetry.context_of("")


@pytest.mark.parametrize("w3c", [True, False])
def test_the_api_propagators_and_the_fast_path_agree(
    store: telemetry.SpanStore, monkeypatch: pytest.MonkeyPatch, w3c: bool
) -> None:
    monkeypatch.setattr(telemetry._state, "w3c", w3c)
    incoming = [("traceparent", TP), ("tracestate", "k=v")]
    span = telemetry.start_server_span("/a.B/C", incoming, "local")
    assert span is not None
    assert f"{span.get_span_context().trace_id:032x}" == TRACE
    assert span.get_span_context().trace_state.get("k") == "v"
    out = dict(telemetry.inject([("x", "1")], span))
    assert out["traceparent"] == telemetry.format_traceparent(span.get_span_context())
    assert out["tracestate"] == "k=v" and out["x"] == "1"
    telemetry.end_span(span)


def test_the_fast_path_is_used_only_for_w3c_propagators(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, fast in (
        (None, True),
        ("tracecontext", True),
        ("baggage, tracecontext", True),
        ("b3", False),
        ("tracecontext,jaeger", False),
    ):
        if value is None:
            monkeypatch.delenv("OTEL_PROPAGATORS", raising=False)
        else:
            monkeypatch.setenv("OTEL_PROPAGATORS", value)
        assert telemetry._w3c_only() is fast, value


async def test_traced_methods_are_client_spans_with_their_attributes(
    store: telemetry.SpanStore,
) -> None:
    class Backend:
        @telemetry.traced("redis get", **{"db.system": "redis"})
        async def get(self, key: str) -> str:
            return key.upper()

        @telemetry.traced("redis put", **{"db.system": "redis"})
        async def put(self, key: str) -> None:
            raise ConnectionError("down")

    backend = Backend()
    with telemetry.span("caller") as caller:
        assert caller is not None
        assert await backend.get("k") == "K"
        with pytest.raises(ConnectionError):
            await backend.put("k")
    spans = store.spans(caller.get_span_context().trace_id)
    got, put = [s for s in spans if s.name.startswith("redis")]
    assert got.name == "redis get" and got.kind is telemetry.SpanKind.CLIENT
    assert got.attributes["db.system"] == "redis"
    assert got.parent.span_id == caller.get_span_context().span_id
    assert not put.status.is_ok and put.status.description == "ConnectionError"
    traces = len(store)
    assert await backend.get("alone") == "ALONE"  # outside any trace: no root span of its own
    assert len(store) == traces
    telemetry.shutdown_tracing()
    assert await backend.get("off") == "OFF"  # off: the plain call, no span
