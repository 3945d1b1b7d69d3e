"""mesh._tracer: the light tracer on the OpenTelemetry API (sampling, resource, spans)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from meshwright.mesh import _tracer, telemetry
from meshwright.mesh._tracer import (
    MAX_ATTRIBUTES,
    MAX_EVENTS,
    MeshTracerProvider,
    Resource,
    ratio_sampler,
    resource_from,
    sampler_from,
)


class Kept:
    def __init__(self) -> None:
        self.spans: list[Any] = []

    def on_end(self, span: Any) -> None:
        self.spans.append(span)


def provider(env: dict[str, str] | None = None) -> tuple[MeshTracerProvider, Kept]:
    p = MeshTracerProvider()
    kept = Kept()
    p.configure(
        resource=Resource({"service.name": "t"}), sampler=sampler_from(env or {}), processors=[kept]
    )
    return p, kept


def ctx(sampled: bool, *, remote: bool = True) -> SpanContext:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return SpanContext(0xABC, 0xDEF, remote, flags)


# -- sampling -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "parent", "expected"),
    [
        ("always_on", None, True),
        ("always_off", None, False),
        ("always_on", ctx(False), True),  # not parent-based: the parent does not count
        ("always_off", ctx(True), False),
        ("parentbased_always_on", None, True),
        ("parentbased_always_on", ctx(False), False),
        ("parentbased_always_off", None, False),
        ("parentbased_always_off", ctx(True), True),
        ("PARENTBASED_ALWAYS_ON", ctx(True), True),
    ],
)
def test_samplers(name: str, parent: SpanContext | None, expected: bool) -> None:
    assert sampler_from({"OTEL_TRACES_SAMPLER": name})(parent, 123) is expected


def test_the_default_follows_the_parent_and_samples_roots() -> None:
    sample = sampler_from({})
    assert sample(None, 1) and sample(ctx(True), 1) and not sample(ctx(False), 1)


def test_ratio_sampling_cuts_at_the_low_64_bits() -> None:
    half = ratio_sampler(0.5)
    assert half(0) and half((1 << 63) - 1)
    assert not half(1 << 63)  # exactly the bound: out
    assert half((5 << 64) | 1)  # the high bits do not count
    assert not ratio_sampler(0.0)(0) and ratio_sampler(1.0)((1 << 64) - 1)
    env = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}
    sample = sampler_from(env)
    assert sample(None, 1) and not sample(None, 1 << 63)
    assert sample(ctx(True), 1 << 63)  # a sampled parent wins over the ratio


@pytest.mark.parametrize(
    ("env", "word"),
    [
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "jaeger_remote"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"}, "half"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.01"}, "1.01"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "-0.1"}, "-0.1"),
    ],
)
def test_bad_sampler_settings_are_named(env: dict[str, str], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        sampler_from(env)


# -- resource -------------------------------------------------------------------------


def test_the_resource_takes_the_operators_variables_over_the_code() -> None:
    r = resource_from(
        {"service.name": "meshwright", "service.instance.id": "h:1"},
        {"OTEL_RESOURCE_ATTRIBUTES": " deployment.environment=prod , team=a%2Cb,service.name=x"},
    )
    assert r.attributes["deployment.environment"] == "prod"
    assert r.attributes["team"] == "a,b"  # percent-decoded
    assert r.attributes["service.name"] == "x"
    assert r.attributes["service.instance.id"] == "h:1"
    assert r.attributes["telemetry.sdk.language"] == "python"
    named = resource_from(
        {"service.name": "meshwright"},
        {"OTEL_RESOURCE_ATTRIBUTES": "service.name=x", "OTEL_SERVICE_NAME": "y"},
    )
    assert named.attributes["service.name"] == "y"  # OTEL_SERVICE_NAME wins over both


@pytest.mark.parametrize("bad", ["novalue", "=v"])
def test_a_malformed_resource_pair_is_an_error(bad: str) -> None:
    with pytest.raises(ValueError, match="OTEL_RESOURCE_ATTRIBUTES"):
        resource_from({}, {"OTEL_RESOURCE_ATTRIBUTES": f"a=b,{bad}"})


# -- spans ------------------------------------------------------------------------------


def test_a_root_span_records_and_reaches_the_processors() -> None:
    p, kept = provider()
    span = p.get_tracer("x").start_span("work", kind=SpanKind.CLIENT, attributes={"a": 1})
    assert span.is_recording()
    c = span.get_span_context()
    assert c.is_valid and c.trace_flags.sampled and not c.is_remote
    span.set_attribute("b", "two")
    span.end()
    span.end()  # once only
    (done,) = kept.spans
    assert done is span and done.parent is None
    assert done.attributes == {"a": 1, "b": "two"}
    assert done.kind is SpanKind.CLIENT and done.resource.attributes["service.name"] == "t"
    assert done.start_time <= done.end_time
    assert not done.is_recording()
    done.set_attribute("late", True)  # after the end: ignored
    assert "late" not in done.attributes


def test_a_child_joins_its_parents_trace_and_keeps_its_trace_state() -> None:
    p, kept = provider()
    parent = SpanContext(
        0x1234, 0x99, True, TraceFlags(TraceFlags.SAMPLED), trace.TraceState([("k", "v")])
    )
    context = trace.set_span_in_context(trace.NonRecordingSpan(parent))
    child = p.get_tracer("x").start_span("child", context=context)
    assert child.get_span_context().trace_id == 0x1234
    assert child.get_span_context().span_id != 0x99
    assert child.get_span_context().trace_state.get("k") == "v"
    child.end()
    assert kept.spans[0].parent.span_id == 0x99


def test_a_span_not_sampled_is_not_recorded_but_its_context_travels() -> None:
    p, kept = provider({"OTEL_TRACES_SAMPLER": "always_off"})
    span = p.get_tracer("x").start_span("dropped")
    assert not span.is_recording()
    c = span.get_span_context()
    assert c.is_valid and not c.trace_flags.sampled
    span.end()
    assert kept.spans == []


def test_a_disabled_provider_makes_no_spans() -> None:
    p, kept = provider()
    tracer = p.get_tracer("lib")
    assert p.disable() == (kept,)
    assert tracer.start_span("x") is trace.INVALID_SPAN
    assert not p.enabled


def test_the_attribute_and_event_limits_hold_at_exactly_the_limit() -> None:
    p, kept = provider()
    span = p.get_tracer("x").start_span("many")
    for i in range(MAX_ATTRIBUTES + 1):
        span.set_attribute(f"k{i}", i)
    span.set_attribute("k0", "changed")  # an existing key may still change
    for i in range(MAX_EVENTS + 1):
        span.add_event(f"e{i}")
    span.end()
    (done,) = kept.spans
    assert len(done.attributes) == MAX_ATTRIBUTES and f"k{MAX_ATTRIBUTES}" not in done.attributes
    assert done.attributes["k0"] == "changed"
    assert len(done.events) == MAX_EVENTS


def test_status_ok_is_final_and_error_keeps_its_description() -> None:
    p, kept = provider()
    t = p.get_tracer("x")
    bad = t.start_span("bad")
    bad.set_status(StatusCode.ERROR, "boom")
    bad.end()
    good = t.start_span("good")
    good.set_status(Status(StatusCode.OK))
    good.set_status(StatusCode.ERROR, "too late")
    good.end()
    assert kept.spans[0].status.status_code is StatusCode.ERROR
    assert kept.spans[0].status.description == "boom"
    assert kept.spans[1].status.status_code is StatusCode.OK


def test_an_exception_is_an_event_and_marks_the_span_when_it_escapes() -> None:
    p, kept = provider()
    with pytest.raises(KeyError), p.get_tracer("x").start_as_current_span("raising"):
        raise KeyError("missing")
    (done,) = kept.spans
    assert done.status.status_code is StatusCode.ERROR
    (event,) = done.events
    assert event.name == "exception" and event.attributes["exception.type"] == "KeyError"
    assert "missing" in event.attributes["exception.message"]
    assert "Traceback" in event.attributes["exception.stacktrace"]


def test_current_span_inside_start_as_current_span() -> None:
    p, kept = provider()
    with p.get_tracer("x").start_as_current_span("outer") as outer:
        assert trace.get_current_span() is outer
        inner = p.get_tracer("x").start_span("inner")
        inner.end()
    assert kept.spans[0].parent.span_id == outer.get_span_context().span_id


def test_a_failing_processor_does_not_fail_the_traced_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def on_end(self, span: Any) -> None:
            raise RuntimeError("disk full")

    p = MeshTracerProvider()
    kept = Kept()
    p.configure(resource=Resource(), sampler=sampler_from({}), processors=[Broken(), kept])
    p.get_tracer("x").start_span("x").end()
    assert len(kept.spans) == 1  # the next processor still got it
    assert "span processor" in caplog.text


def test_the_process_provider_is_the_global_one_and_follows_reconfiguration() -> None:
    """A library's tracer taken once keeps working across setup_tracing calls (one
    provider per process, reconfigured), and stops making spans when tracing is off."""
    store = telemetry.SpanStore()
    telemetry.setup_tracing("first", store=store, exporters=[])
    try:
        assert trace.get_tracer_provider() is telemetry._PROVIDER
        library = trace.get_tracer("some.library")
        library.start_span("one").end()
        second = telemetry.SpanStore()
        telemetry.setup_tracing("second", store=second, exporters=[])
        library.start_span("two").end()
        (one,) = [s for t in store.trace_ids() for s in store.spans(t)]
        (two,) = [s for t in second.trace_ids() for s in second.spans(t)]
        assert one.resource.attributes["service.name"] == "first"
        assert two.resource.attributes["service.name"] == "second"
    finally:
        telemetry.shutdown_tracing()
    assert not library.start_span("three").is_recording()


def test_module_exports() -> None:
    assert set(_tracer.__all__) <= set(dir(_tracer))
