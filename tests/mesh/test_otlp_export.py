"""The mesh's OTLP exporter (meshwright.mesh._otlp): its hand-written encoder, parsed back
with the OTLP protobuf classes field by field; BatchExporter against the real OTLP/gRPC
receiver of tests/otlp_receiver.py and against transports of the test's own (batching,
the queue's bound, failures, flush, shutdown); the gRPC and HTTP transports against small
real servers (plain and TLS); every ``OTEL_*`` rule of ``exporters_from_env``; the console
exporter's JSON lines.

Spans are a dataclass of this file (the exporter is duck-typed). The receiver is a grpc.aio
server on the test's loop while the exporter's worker sends on a sync channel, so
everything that waits for a send (force_flush, shutdown) runs in a thread.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import gzip
import http.server
import io
import ipaddress
import json
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from meshwright.mesh import _otlp
from meshwright.mesh._otlp import (
    BatchExporter,
    ConsoleExporter,
    ExportError,
    GrpcTransport,
    HttpTransport,
    SpanLike,
    encode_spans,
    exporters_from_env,
)
from tests.otlp_receiver import OtlpReceiver, any_value

LOGGER = "meshwright.mesh._otlp"
T0 = 1_700_000_000_123_456_789
TRACE = 0x0AF7651916CD43DD8448EB211C80319C
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
RESOURCE = {"service.name": "svc-otlp", "service.instance.id": "replica-7"}
EXPORT_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


@dataclass
class Event:
    name: str
    timestamp: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Span:
    context: SpanContext
    parent: SpanContext | None
    name: str
    kind: SpanKind
    start_time: int
    end_time: int
    attributes: dict[str, Any] = field(default_factory=dict)
    status: Status = field(default_factory=Status)
    events: list[Event] = field(default_factory=list)


def ctx(span_id: int, trace_id: int = TRACE, *, remote: bool = False, **kw: Any) -> SpanContext:
    return SpanContext(trace_id, span_id, remote, kw.pop("flags", SAMPLED), **kw)


def make_span(
    name: str = "op",
    span_id: int = 0x1111,
    parent: SpanContext | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: dict[str, Any] | None = None,
    status: Status | None = None,
    events: list[Event] | None = None,
    context: SpanContext | None = None,
    start: int = T0,
    duration_ns: int = 1_500_000,
) -> Span:
    return Span(
        context=context or ctx(span_id),
        parent=parent,
        name=name,
        kind=kind,
        start_time=start,
        end_time=start + duration_ns,
        attributes=attributes or {},
        status=status or Status(),
        events=events or [],
    )


def parse(body: bytes) -> trace_service_pb2.ExportTraceServiceRequest:
    return trace_service_pb2.ExportTraceServiceRequest.FromString(body)


def parsed_spans(body: bytes) -> list[trace_pb2.Span]:
    request = parse(body)
    return [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def one_span(span: SpanLike) -> trace_pb2.Span:
    (out,) = parsed_spans(encode_spans([span], RESOURCE))
    return out


def attribute(value: Any, key: str = "k") -> common_pb2.AnyValue:
    """The AnyValue a span attribute ``key=value`` arrives as."""
    (kv,) = one_span(make_span(attributes={key: value})).attributes
    assert kv.key == key
    return kv.value


# -- the encoder ------------------------------------------------------------------


def kv(key: str, **value: Any) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(**value))


def test_the_encoding_parses_back_field_for_field() -> None:
    """Every field of every span, compared with the same request built from the protobuf
    classes: roots and children (local and remote parents), each kind, each status, events,
    a trace state, unicode."""
    remote_parent = ctx(0xAAAA, remote=True)
    spans = [
        make_span("root ☃ 名前", 0x01, kind=SpanKind.SERVER, status=Status(StatusCode.OK)),
        make_span(
            "meshwright.agent.v1.AgentService/ExecuteTask",
            0x02,
            ctx(0x01),
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "mesh.attempt": 2, "ünïcode.kéy": "välue ✓"},
        ),
        make_span(
            "failed",
            0x03,
            remote_parent,
            kind=SpanKind.PRODUCER,
            status=Status(StatusCode.ERROR, "agent gone: Ünavailable"),
            events=[
                Event("exception", T0 + 5, {"exception.type": "Unavailable", "retry": True}),
                Event("no attributes ∅", T0 + 6),
            ],
        ),
        make_span(
            "error without a description",
            0x04,
            ctx(0x01),
            kind=SpanKind.CONSUMER,
            status=Status(StatusCode.ERROR),
        ),
        make_span(
            "with state",
            0xFFFFFFFFFFFFFFFF,
            context=ctx(
                0xFFFFFFFFFFFFFFFF,
                trace_id=(1 << 128) - 1,
                flags=TraceFlags(0),
                trace_state=TraceState([("vendor", "abc"), ("other", "1")]),
            ),
        ),
    ]
    body = encode_spans(spans, {**RESOURCE, "deployment": "ci", "pid": 42}, "mesh ☃", "1.2.3")

    def flags(parent: SpanContext | None, trace_flags: int = 1) -> int:
        return trace_flags | 0x100 | (0x200 if parent is not None and parent.is_remote else 0)

    expected = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(
                    attributes=[
                        kv("service.name", string_value="svc-otlp"),
                        kv("service.instance.id", string_value="replica-7"),
                        kv("deployment", string_value="ci"),
                        kv("pid", int_value=42),
                    ]
                ),
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        scope=common_pb2.InstrumentationScope(name="mesh ☃", version="1.2.3"),
                        spans=[
                            trace_pb2.Span(
                                trace_id=TRACE.to_bytes(16, "big"),
                                span_id=(0x01).to_bytes(8, "big"),
                                name="root ☃ 名前",
                                kind=trace_pb2.Span.SPAN_KIND_SERVER,
                                start_time_unix_nano=T0,
                                end_time_unix_nano=T0 + 1_500_000,
                                status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_OK),
                                flags=flags(None),
                            ),
                            trace_pb2.Span(
                                trace_id=TRACE.to_bytes(16, "big"),
                                span_id=(0x02).to_bytes(8, "big"),
                                parent_span_id=(0x01).to_bytes(8, "big"),
                                name="meshwright.agent.v1.AgentService/ExecuteTask",
                                kind=trace_pb2.Span.SPAN_KIND_CLIENT,
                                start_time_unix_nano=T0,
                                end_time_unix_nano=T0 + 1_500_000,
                                attributes=[
                                    kv("rpc.system", string_value="grpc"),
                                    kv("mesh.attempt", int_value=2),
                                    kv("ünïcode.kéy", string_value="välue ✓"),
                                ],
                                flags=flags(ctx(0x01)),
                            ),
                            trace_pb2.Span(
                                trace_id=TRACE.to_bytes(16, "big"),
                                span_id=(0x03).to_bytes(8, "big"),
                                parent_span_id=(0xAAAA).to_bytes(8, "big"),
                                name="failed",
                                kind=trace_pb2.Span.SPAN_KIND_PRODUCER,
                                start_time_unix_nano=T0,
                                end_time_unix_nano=T0 + 1_500_000,
                                events=[
                                    trace_pb2.Span.Event(
                                        time_unix_nano=T0 + 5,
                                        name="exception",
                                        attributes=[
                                            kv("exception.type", string_value="Unavailable"),
                                            kv("retry", bool_value=True),
                                        ],
                                    ),
                                    trace_pb2.Span.Event(
                                        time_unix_nano=T0 + 6, name="no attributes ∅"
                                    ),
                                ],
                                status=trace_pb2.Status(
                                    code=trace_pb2.Status.STATUS_CODE_ERROR,
                                    message="agent gone: Ünavailable",
                                ),
                                flags=flags(remote_parent),
                            ),
                            trace_pb2.Span(
                                trace_id=TRACE.to_bytes(16, "big"),
                                span_id=(0x04).to_bytes(8, "big"),
                                parent_span_id=(0x01).to_bytes(8, "big"),
                                name="error without a description",
                                kind=trace_pb2.Span.SPAN_KIND_CONSUMER,
                                start_time_unix_nano=T0,
                                end_time_unix_nano=T0 + 1_500_000,
                                status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR),
                                flags=flags(ctx(0x01)),
                            ),
                            trace_pb2.Span(
                                trace_id=((1 << 128) - 1).to_bytes(16, "big"),
                                span_id=(0xFFFFFFFFFFFFFFFF).to_bytes(8, "big"),
                                trace_state="vendor=abc,other=1",
                                name="with state",
                                kind=trace_pb2.Span.SPAN_KIND_INTERNAL,
                                start_time_unix_nano=T0,
                                end_time_unix_nano=T0 + 1_500_000,
                                flags=flags(None, 0),
                            ),
                        ],
                    )
                ],
            )
        ]
    )
    got = parse(body)
    assert got == expected
    # And field by field where equality could hide a default: no parent is empty bytes, an
    # UNSET status with no message is absent (OTLP's default), the flags' bits.
    root, child, failed, error, stated = got.resource_spans[0].scope_spans[0].spans
    assert root.parent_span_id == b"" and stated.parent_span_id == b""
    assert not stated.HasField("status") and stated.status.code == 0
    assert root.flags == 0x101 and failed.flags == 0x301 and stated.flags == 0x100
    assert [s.kind for s in (root, child, failed, error, stated)] == [2, 3, 4, 5, 1]


def test_each_status_with_and_without_description() -> None:
    for code in StatusCode:
        for description in (None, "why ✗"):
            status = Status(code, description)  # the API keeps descriptions for ERROR only
            out = one_span(make_span(status=status))
            assert out.status.code == code.value
            assert out.status.message == (status.description or "")


def test_kind_is_the_api_value_plus_one() -> None:
    for kind in SpanKind:
        assert one_span(make_span(kind=kind)).kind == kind.value + 1


def test_attribute_types() -> None:
    """Each type as its AnyValue. Ints outside int64 go as their decimal string."""
    assert attribute("text ✓ 文字").string_value == "text ✓ 文字"
    assert attribute("").WhichOneof("value") == "string_value"
    assert attribute(True).WhichOneof("value") == "bool_value" and attribute(True).bool_value
    assert attribute(False).WhichOneof("value") == "bool_value" and not attribute(False).bool_value
    for n in (0, 1, 127, 128, 300, -1, -128, -(2**31), 2**40, 2**63 - 1, -(2**63)):
        value = attribute(n)
        assert value.WhichOneof("value") == "int_value" and value.int_value == n, n
    for n in (2**63, -(2**63) - 1, 2**64, 10**30):
        assert attribute(n).string_value == str(n), n
    for x in (1.5, -2.25, 0.0, 1e300, 5e-324, math.inf, -math.inf):
        value = attribute(x)
        assert value.WhichOneof("value") == "double_value" and value.double_value == x, x
    assert math.copysign(1.0, attribute(-0.0).double_value) == -1.0
    assert math.isnan(attribute(math.nan).double_value)
    assert any_value(attribute(["a", "ß"])) == ["a", "ß"]
    assert any_value(attribute((True, False))) == [True, False]
    assert any_value(attribute([1, -2, 2**63])) == [1, -2, str(2**63)]
    assert any_value(attribute((0.5, -1.0))) == [0.5, -1.0]
    empty = attribute([])
    assert empty.WhichOneof("value") == "array_value" and len(empty.array_value.values) == 0
    # Beyond the API's types, for a duck-typed tracer's sake:
    assert attribute(b"\x00\xff").bytes_value == b"\x00\xff"
    assert any_value(attribute({"a": 1, "b": ["x"]})) == {"a": 1, "b": ["x"]}
    assert attribute(None).WhichOneof("value") is None

    class Level(enum.IntEnum):
        HIGH = 3

    assert attribute(Level.HIGH).int_value == 3
    assert attribute(Path("/tmp/x")).string_value == "/tmp/x"


def test_cached_pairs_never_confuse_types_or_signs() -> None:
    """The cache keys a pair by its type too: True is not 1, 1 is not "1"; floats are not
    cached (-0.0 == 0.0)."""
    values: tuple[object, ...] = (True, 1, "1", 1.0, False, 0, 0.0, -0.0, True, 1, "1")
    for value in values:
        for _ in range(2):  # the second time from the cache
            got = any_value(attribute(value, key="same.key"))
            assert type(got) is type(value) and got == value, value
    for x in (0.0, -0.0, 0.0, -0.0):
        assert math.copysign(1.0, attribute(x, key="same.key").double_value) == math.copysign(
            1.0, x
        )


def test_the_caches_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_otlp, "_CACHE_MAX", 8)
    monkeypatch.setattr(_otlp, "_attr_cache", {})
    monkeypatch.setattr(_otlp, "_name_cache", {})
    spans = [
        make_span(f"name-{i}", i + 1, attributes={"n": i, "s": f"v{i}", "long": "x" * 300 + str(i)})
        for i in range(50)
    ]
    out = parsed_spans(encode_spans(spans, RESOURCE))
    assert len(_otlp._attr_cache) <= 8 and len(_otlp._name_cache) <= 8
    for i, s in enumerate(out):
        assert s.name == f"name-{i}"
        assert {a.key: any_value(a.value) for a in s.attributes} == {
            "n": i,
            "s": f"v{i}",
            "long": "x" * 300 + str(i),
        }
    assert not any("long" in key for key in _otlp._attr_cache)  # long strings are not kept


def test_no_spans_a_duck_typed_context_and_a_bad_string() -> None:
    request = parse(encode_spans([], {}))
    assert len(request.resource_spans[0].scope_spans[0].spans) == 0
    assert request.resource_spans[0].scope_spans[0].scope.name == "meshwright"

    @dataclass
    class Context:  # not a SpanContext: read through its attributes
        trace_id: int
        span_id: int
        trace_flags: int
        trace_state: Any = None
        is_remote: bool = True

    out = one_span(make_span(context=Context(TRACE, 7, 1), parent=Context(TRACE, 3, 0)))  # type: ignore[arg-type]
    assert out.span_id == (7).to_bytes(8, "big") and out.parent_span_id == (3).to_bytes(8, "big")
    assert out.flags == 0x301
    # A lone surrogate cannot be UTF-8: replaced rather than failing the whole batch.
    assert one_span(make_span("bad \udc80 name")).name == "bad ? name"


# -- BatchExporter with the real receiver ------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    r = OtlpReceiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def test_spans_reach_the_receiver_with_resource_and_parents(receiver: OtlpReceiver) -> None:
    transport = GrpcTransport(receiver.endpoint, insecure=False, timeout_s=5)  # http: insecure
    exporter = BatchExporter(transport, RESOURCE, delay_s=60)
    root = make_span("create", 0x10, kind=SpanKind.SERVER, attributes={"workflow": "w-1"})
    child = make_span(
        "ExecuteTask", 0x11, root.context, kind=SpanKind.CLIENT, status=Status(StatusCode.OK)
    )
    exporter.on_end(child)
    exporter.on_end(root)
    try:
        assert await asyncio.to_thread(exporter.force_flush, 5.0)
        spans = await receiver.wait_for(lambda s: len(s) >= 2, timeout=5)
    finally:
        await asyncio.to_thread(exporter.shutdown)
    got = {s.name: s for s in spans}
    assert set(got) == {"create", "ExecuteTask"}
    for s in spans:
        assert (s.service, s.instance_id, s.scope) == ("svc-otlp", "replica-7", "meshwright")
        assert s.trace_id == f"{TRACE:032x}" and s.resource == RESOURCE
    assert got["create"].parent_span_id == "" and got["create"].span_id == f"{0x10:016x}"
    assert got["ExecuteTask"].parent_span_id == got["create"].span_id
    assert got["create"].attributes == {"workflow": "w-1"}
    assert (got["create"].kind, got["ExecuteTask"].kind) == (2, 3)
    assert got["ExecuteTask"].status_code == 1
    assert (got["create"].start_ns, got["create"].end_ns) == (T0, T0 + 1_500_000)
    assert receiver.exports == 1 and exporter.exported == 2
    assert exporter.dropped == exporter.failed_batches == 0


async def test_seven_spans_in_batches_of_three_go_as_3_3_1(receiver: OtlpReceiver) -> None:
    sizes: list[int] = []
    grpc_transport = GrpcTransport(receiver.endpoint, timeout_s=5)

    class Counting:
        def send(self, body: bytes) -> None:
            sizes.append(len(parsed_spans(body)))
            grpc_transport.send(body)

        def close(self) -> None:
            grpc_transport.close()

    exporter = BatchExporter(Counting(), RESOURCE, max_batch=3, delay_s=60)
    try:
        for i in range(7):
            exporter.on_end(make_span(f"s{i}", i + 1))
        # Two full batches go without waiting for the delay; the last one on the flush.
        await receiver.wait_for(lambda s: len(s) >= 6, timeout=5)
        assert receiver.exports == 2 and len(exporter) == 1
        assert await asyncio.to_thread(exporter.force_flush, 5.0)
        spans = await receiver.wait_for(lambda s: len(s) >= 7, timeout=5)
    finally:
        await asyncio.to_thread(exporter.shutdown)
    assert sizes == [3, 3, 1] and receiver.exports == 3
    assert [s.name for s in spans] == [f"s{i}" for i in range(7)]
    assert exporter.exported == 7


async def test_the_delay_sends_a_partial_batch(receiver: OtlpReceiver) -> None:
    exporter = BatchExporter(GrpcTransport(receiver.endpoint, timeout_s=5), RESOURCE, delay_s=0.1)
    try:
        exporter.on_end(make_span("alone"))
        spans = await receiver.wait_for(lambda s: len(s) >= 1, timeout=5)
        assert spans[0].name == "alone"
    finally:
        await asyncio.to_thread(exporter.shutdown)


# -- BatchExporter with transports of the test's own --------------------------------


class FakeTransport:
    """Records what it is sent; can hold a send (``gate``) or fail (``fail``)."""

    def __init__(self, *, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.gate = gate
        self.fail = fail
        self.entered = threading.Event()
        self.bodies: list[bytes] = []
        self.closed = 0

    def send(self, body: bytes) -> None:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise ConnectionError("collector down")
        self.bodies.append(body)

    def close(self) -> None:
        self.closed += 1

    def names(self) -> list[str]:
        return [s.name for body in self.bodies for s in parsed_spans(body)]


def test_the_queue_holds_max_queue_spans_and_drops_the_next() -> None:
    gate = threading.Event()
    transport = FakeTransport(gate=gate)
    exporter = BatchExporter(transport, RESOURCE, max_queue=4, max_batch=4, delay_s=60)
    try:
        for i in range(4):  # a full batch: the worker takes it and is held in send
            exporter.on_end(make_span(f"first-{i}"))
        assert transport.entered.wait(5)
        for i in range(4):
            exporter.on_end(make_span(f"queued-{i}"))
        assert len(exporter) == 4 and exporter.dropped == 0  # exactly max_queue: all kept
        exporter.on_end(make_span("one too many"))
        assert len(exporter) == 4 and exporter.dropped == 1
        gate.set()
        assert exporter.force_flush(5)
    finally:
        gate.set()
        exporter.shutdown()
    assert transport.names() == [f"first-{i}" for i in range(4)] + [f"queued-{i}" for i in range(4)]
    assert exporter.exported == 8 and exporter.dropped == 1


def test_force_flush_false_when_a_send_outlasts_it_then_true() -> None:
    gate = threading.Event()
    transport = FakeTransport(gate=gate)
    exporter = BatchExporter(transport, RESOURCE, delay_s=60)
    try:
        assert exporter.force_flush(0.01)  # nothing queued, no worker yet
        exporter.on_end(make_span("slow"))
        assert not exporter.force_flush(0.2)
        gate.set()
        assert exporter.force_flush(5)
        assert transport.names() == ["slow"]
    finally:
        gate.set()
        exporter.shutdown()


def test_failures_are_counted_logged_once_and_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    transport = FakeTransport(fail=True)
    exporter = BatchExporter(transport, RESOURCE, max_batch=2, delay_s=60)
    try:
        for i in range(6):
            exporter.on_end(make_span(f"lost-{i}"))
        assert exporter.force_flush(5)  # a failed batch is done with: not retried
        assert exporter.failed_batches == 3 and exporter.failed_spans == 6
        assert exporter.exported == 0 and len(exporter) == 0
        warnings = [r for r in caplog.records if r.name == LOGGER]
        assert len(warnings) == 1 and "collector down" in warnings[0].getMessage()
        transport.fail = False  # the collector is back: one line says so
        exporter.on_end(make_span("kept"))
        assert exporter.force_flush(5)
        assert exporter.exported == 1 and transport.names() == ["kept"]
        records = [r for r in caplog.records if r.name == LOGGER]
        assert len(records) == 2 and "works again" in records[1].getMessage()
        transport.fail = True  # a new streak: logged once more
        exporter.on_end(make_span("lost again"))
        assert exporter.force_flush(5)
        assert len([r for r in caplog.records if r.name == LOGGER]) == 3
    finally:
        exporter.shutdown()


def test_a_span_that_cannot_be_encoded_fails_its_batch_only() -> None:
    transport = FakeTransport()
    exporter = BatchExporter(transport, RESOURCE, delay_s=60)
    try:
        broken = make_span("broken")
        broken.end_time = -1  # a fixed64 cannot hold it
        exporter.on_end(broken)
        assert exporter.force_flush(5)
        exporter.on_end(make_span("fine"))
        assert exporter.force_flush(5)
    finally:
        exporter.shutdown()
    assert exporter.failed_batches == 1 and transport.names() == ["fine"]


async def test_a_dead_endpoint_costs_the_caller_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exporter = BatchExporter(
        GrpcTransport(f"127.0.0.1:{port}", insecure=True, timeout_s=2), RESOURCE, max_batch=10
    )
    try:
        for i in range(30):
            exporter.on_end(make_span(f"s{i}"))
        assert await asyncio.to_thread(exporter.force_flush, 10.0)
        assert exporter.failed_batches == 3 and exporter.exported == 0
        # While the worker keeps failing, on_end stays a few microseconds.
        started = time.perf_counter()
        for i in range(1000):
            exporter.on_end(make_span(f"more{i}"))
        per_call = (time.perf_counter() - started) / 1000
        assert per_call < 500e-6, per_call
        assert await asyncio.to_thread(exporter.force_flush, 20.0)
        assert exporter.failed_batches >= 4
        warnings = [r for r in caplog.records if r.name == LOGGER]
        assert len(warnings) == 1 and "UNAVAILABLE" in warnings[0].getMessage()
    finally:
        await asyncio.to_thread(exporter.shutdown)


def test_shutdown_flushes_then_is_idempotent_and_later_spans_are_ignored() -> None:
    transport = FakeTransport()
    exporter = BatchExporter(transport, RESOURCE, delay_s=60)
    exporter.on_end(make_span("a"))
    exporter.on_end(make_span("b"))
    exporter.shutdown()
    assert transport.names() == ["a", "b"] and transport.closed == 1
    exporter.shutdown()
    assert transport.closed == 1
    exporter.on_end(make_span("late"))
    assert len(exporter) == 0 and exporter.dropped == 0
    assert exporter.force_flush(1) and transport.names() == ["a", "b"]


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "meshwright-otlp"]


def test_constructing_starts_nothing_and_shutdown_without_spans_closes() -> None:
    before = workers()
    transport = FakeTransport()
    exporter = BatchExporter(transport, RESOURCE)
    assert workers() == before
    exporter.shutdown()
    assert transport.closed == 1 and workers() == before


def test_bad_batch_settings() -> None:
    for kw in (
        {"max_queue": 0},
        {"max_batch": 0},
        {"max_queue": 10, "max_batch": 11},
        {"delay_s": 0},
        {"delay_s": math.inf},
        {"timeout_s": 0},
    ):
        with pytest.raises(ValueError):
            BatchExporter(FakeTransport(), RESOURCE, **kw)


def test_on_end_is_cheap() -> None:
    exporter = BatchExporter(FakeTransport(), RESOURCE, max_queue=100_000, max_batch=100_000)
    span = make_span()
    try:
        exporter.on_end(span)  # starts the worker
        started = time.perf_counter()
        for _ in range(10_000):
            exporter.on_end(span)
        per_call = (time.perf_counter() - started) / 10_000
    finally:
        exporter.shutdown()
    assert per_call < 50e-6, per_call  # about 0.5 us on the 2-core bench machine


# -- transports against real servers ---------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass(frozen=True)
class Pki:
    ca_pem: str
    cert_pem: bytes
    key_pem: bytes


@pytest.fixture(scope="module")
def pki() -> Pki:
    """A CA and a server certificate it signed for 127.0.0.1 / localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("otlp test CA"))
        .issuer_name(_name("otlp test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("collector"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Pki(
        ca.public_bytes(serialization.Encoding.PEM).decode(),
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class HttpCollector:
    """An OTLP/HTTP collector double: http.server in a thread on 127.0.0.1:0."""

    def __init__(self, tls: Pki | None = None) -> None:
        self.received: list[Received] = []
        self.status = 200
        self.answer = b""
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                collector.received.append(Received(self.path, headers, body))
                self.send_response(collector.status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(collector.answer)))
                self.end_headers()
                self.wfile.write(collector.answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            folder = Path(tls_dir(tls))
            context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


_tls_dirs: dict[int, str] = {}


def tls_dir(tls: Pki) -> str:
    import tempfile

    if id(tls) not in _tls_dirs:
        folder = tempfile.mkdtemp(prefix="otlp-tls-")
        (Path(folder) / "cert.pem").write_bytes(tls.cert_pem)
        (Path(folder) / "key.pem").write_bytes(tls.key_pem)
        _tls_dirs[id(tls)] = folder
    return _tls_dirs[id(tls)]


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpCollector]:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    c = HttpCollector()
    try:
        yield c
    finally:
        c.close()


def test_http_transport_posts_protobuf_with_its_headers(collector: HttpCollector) -> None:
    body = encode_spans([make_span("over http", attributes={"a": 1})], RESOURCE)
    transport = HttpTransport(
        collector.url, headers={"Authorization": "Bearer t0k", "X-Tenant": "acme"}, timeout_s=5
    )
    transport.send(body)
    transport.close()
    (got,) = collector.received
    assert got.path == "/v1/traces"
    assert got.headers["content-type"] == "application/x-protobuf"
    assert got.headers["authorization"] == "Bearer t0k" and got.headers["x-tenant"] == "acme"
    assert "content-encoding" not in got.headers
    assert got.body == body
    (span,) = parsed_spans(got.body)
    assert span.name == "over http"
    assert parse(got.body).resource_spans[0].resource.attributes[0].value.string_value == "svc-otlp"


def test_http_transport_gzip(collector: HttpCollector) -> None:
    body = encode_spans([make_span("zipped")], RESOURCE)
    HttpTransport(collector.url, compression="gzip", timeout_s=5).send(body)
    (got,) = collector.received
    assert got.headers["content-encoding"] == "gzip"
    assert gzip.decompress(got.body) == body


def test_http_transport_raises_on_an_error_status_and_counts_rejections(
    collector: HttpCollector, caplog: pytest.LogCaptureFixture
) -> None:
    transport = HttpTransport(collector.url, timeout_s=5)
    body = encode_spans([make_span()], RESOURCE)
    collector.status = 503
    collector.answer = b"overloaded"
    with pytest.raises(ExportError, match="503"):
        transport.send(body)
    collector.status = 200
    collector.answer = trace_service_pb2.ExportTraceServiceResponse(
        partial_success=trace_service_pb2.ExportTracePartialSuccess(
            rejected_spans=2, error_message="too old"
        )
    ).SerializeToString()
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport.send(body)  # a partial success is no failure
    transport.send(body)
    assert transport.rejected_spans == 4
    (warning,) = [r for r in caplog.records if r.name == LOGGER]
    assert "too old" in warning.getMessage()


def test_http_transport_refuses_a_dead_port_and_a_bad_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OSError):
        HttpTransport(f"http://127.0.0.1:{port}/v1/traces", timeout_s=2).send(b"")
    with pytest.raises(ValueError, match="http"):
        HttpTransport("localhost:4318/v1/traces")


def test_https_transport_trusts_the_given_certificate(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    c = HttpCollector(tls=pki)
    try:
        body = encode_spans([make_span("over https")], RESOURCE)
        HttpTransport(c.url, certificate=pki.ca_pem, timeout_s=5).send(body)
        assert c.received[0].body == body
        with pytest.raises(OSError):  # the system's roots do not know this CA
            HttpTransport(c.url, timeout_s=5).send(body)
    finally:
        c.close()


class GrpcCollector:
    """A sync gRPC server answering TraceService/Export with raw bytes, keeping the
    metadata and body of each call."""

    def __init__(self, tls: Pki | None = None) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.answer = b""
        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))
        handler = grpc.method_handlers_generic_handler(
            EXPORT_SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(self._export)}
        )
        self.server.add_generic_rpc_handlers((handler,))
        if tls is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            credentials = grpc.ssl_server_credentials([(tls.key_pem, tls.cert_pem)])
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.server.start()

    def _export(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.calls.append((dict(context.invocation_metadata()), request))
        return self.answer

    def close(self) -> None:
        self.server.stop(None)


def test_grpc_transport_sends_the_bytes_with_lowercased_metadata(
    caplog: pytest.LogCaptureFixture,
) -> None:
    collector = GrpcCollector()
    transport = GrpcTransport(
        f"127.0.0.1:{collector.port}",
        insecure=True,
        headers={"Authorization": "Bearer t0k", "X-Tenant": "acme"},
        timeout_s=5,
    )
    try:
        body = encode_spans([make_span("over grpc")], RESOURCE)
        transport.send(body)
        metadata, got = collector.calls[0]
        assert got == body
        assert metadata["authorization"] == "Bearer t0k" and metadata["x-tenant"] == "acme"
        collector.answer = trace_service_pb2.ExportTraceServiceResponse(
            partial_success=trace_service_pb2.ExportTracePartialSuccess(rejected_spans=1)
        ).SerializeToString()
        caplog.set_level(logging.WARNING, logger=LOGGER)
        transport.send(body)
        assert transport.rejected_spans == 1 and len(caplog.records) == 1
        gzipped = GrpcTransport(
            f"http://127.0.0.1:{collector.port}", compression="gzip", timeout_s=5
        )
        gzipped.send(body)
        gzipped.close()
        assert collector.calls[-1][1] == body
    finally:
        transport.close()
        collector.close()
    stopped = GrpcTransport(f"127.0.0.1:{collector.port}", insecure=True, timeout_s=2)
    with pytest.raises(grpc.RpcError):  # a stopped server: the error reaches the caller
        stopped.send(body)
    stopped.close()


def test_grpc_transport_over_tls_with_the_given_certificate(pki: Pki) -> None:
    collector = GrpcCollector(tls=pki)
    try:
        body = encode_spans([make_span("over tls")], RESOURCE)
        for endpoint in (f"https://127.0.0.1:{collector.port}", f"127.0.0.1:{collector.port}"):
            transport = GrpcTransport(endpoint, insecure=False, certificate=pki.ca_pem, timeout_s=5)
            assert transport.secure
            transport.send(body)
            transport.close()
        assert [b for _, b in collector.calls] == [body, body]
        plain = GrpcTransport(f"http://127.0.0.1:{collector.port}", timeout_s=2)
        with pytest.raises(grpc.RpcError):  # plaintext to a TLS port
            plain.send(body)
        plain.close()
    finally:
        collector.close()


def test_grpc_endpoint_schemes() -> None:
    cases = [
        (("http://h:4317", False), ("h:4317", False)),
        (("http://h:4317", True), ("h:4317", False)),
        (("https://h:4317", True), ("h:4317", True)),
        (("https://h:4317/ignored/path", False), ("h:4317", True)),
        (("h:4317", True), ("h:4317", False)),
        (("h:4317", False), ("h:4317", True)),
        (("unix:///run/otel.sock", True), ("unix:///run/otel.sock", False)),
    ]
    for (endpoint, insecure), (target, secure) in cases:
        transport = GrpcTransport(endpoint, insecure=insecure)
        assert (transport.target, transport.secure) == (target, secure), endpoint
        transport.close()


# -- exporters_from_env --------------------------------------------------------------


@pytest.fixture
def from_env() -> Iterator[Any]:
    made: list[Any] = []

    def build(env: Mapping[str, str]) -> list[Any]:
        out = exporters_from_env(env, RESOURCE)
        made.extend(out)
        return out

    yield build
    for exporter in made:
        exporter.shutdown()


def otlp(from_env: Any, **env: str) -> BatchExporter:
    """The one OTLP exporter ``env`` makes (OTEL_TRACES_EXPORTER=otlp unless given)."""
    env.setdefault("OTEL_TRACES_EXPORTER", "otlp")
    (exporter,) = from_env(env)
    assert isinstance(exporter, BatchExporter)
    return exporter


def test_env_which_exporters(from_env: Any) -> None:
    assert from_env({}) == []
    assert from_env({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) == []  # no endpoint: nothing
    (a,) = from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317"})
    (b,) = from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"})
    assert isinstance(a, BatchExporter) and isinstance(b, BatchExporter)
    assert from_env({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x:1"}) == []
    (console,) = from_env({"OTEL_TRACES_EXPORTER": "console"})
    assert isinstance(console, ConsoleExporter) and console.resource == RESOURCE
    both = from_env({"OTEL_TRACES_EXPORTER": " OTLP , console,console,"})
    assert [type(e) for e in both] == [BatchExporter, ConsoleExporter]
    (only,) = from_env({"OTEL_TRACES_EXPORTER": "none,console"})
    assert isinstance(only, ConsoleExporter)
    # Empty counts as unset: the endpoint rule decides.
    (c,) = from_env({"OTEL_TRACES_EXPORTER": "", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"})
    assert isinstance(c, BatchExporter) and c.resource == RESOURCE
    with pytest.raises(ValueError, match="'zipkin'"):
        from_env({"OTEL_TRACES_EXPORTER": "console,zipkin"})


def test_env_protocol_and_endpoint(from_env: Any) -> None:
    default = otlp(from_env).transport
    assert isinstance(default, GrpcTransport)
    assert (default.endpoint, default.target, default.secure) == (
        "http://localhost:4317",
        "localhost:4317",
        False,
    )
    http = otlp(from_env, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf").transport
    assert isinstance(http, HttpTransport) and http.url == "http://localhost:4318/v1/traces"
    traces_wins = otlp(
        from_env,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="grpc",
    ).transport
    assert isinstance(traces_wins, GrpcTransport)
    traces_wins_http = otlp(
        from_env,
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
    ).transport
    assert isinstance(traces_wins_http, HttpTransport)
    for variable in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
        with pytest.raises(ValueError, match=f"{variable}='http/json'"):
            otlp(from_env, **{variable: "http/json"})

    def url(**env: str) -> str:
        transport = otlp(from_env, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", **env).transport
        assert isinstance(transport, HttpTransport)
        return transport.url

    assert url(OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318") == "http://c:4318/v1/traces"
    assert url(OTEL_EXPORTER_OTLP_ENDPOINT="https://c/base/") == "https://c/base/v1/traces"
    assert url(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://c:4318/mine") == "http://c:4318/mine"
    assert url(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://c:4318") == "http://c:4318"
    assert (
        url(
            OTEL_EXPORTER_OTLP_ENDPOINT="http://g:1",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://t:2",
        )
        == "http://t:2"
    )

    def grpc_endpoint(**env: str) -> str:
        transport = otlp(from_env, **env).transport
        assert isinstance(transport, GrpcTransport)
        return transport.endpoint

    assert grpc_endpoint(OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4317") == "http://c:4317"
    assert grpc_endpoint(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://t:1") == "http://t:1"
    assert (
        grpc_endpoint(
            OTEL_EXPORTER_OTLP_ENDPOINT="http://g:1",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://t:2",
        )
        == "http://t:2"
    )


def test_env_headers(from_env: Any) -> None:
    def headers(**env: str) -> dict[str, str]:
        return dict(otlp(from_env, **env).transport.headers)  # type: ignore[attr-defined]

    assert headers() == {}
    assert headers(OTEL_EXPORTER_OTLP_HEADERS="a=1,b=2") == {"a": "1", "b": "2"}
    assert headers(OTEL_EXPORTER_OTLP_HEADERS=" a = 1 , b=two words ,") == {
        "a": "1",
        "b": "two words",
    }
    assert headers(
        OTEL_EXPORTER_OTLP_HEADERS="api-key=abc%3D%3D,x-name=hello%20w%C3%B6rld,k=a=b"
    ) == {"api-key": "abc==", "x-name": "hello wörld", "k": "a=b"}
    assert headers(  # the traces variable replaces the generic one, no merging
        OTEL_EXPORTER_OTLP_HEADERS="a=1,b=2", OTEL_EXPORTER_OTLP_TRACES_HEADERS="c=3"
    ) == {"c": "3"}
    http = otlp(
        from_env,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_HEADERS="Authorization=Basic%20eA%3D%3D",
    ).transport
    assert isinstance(http, HttpTransport) and http.headers == {"Authorization": "Basic eA=="}
    grpc_upper = otlp(from_env, OTEL_EXPORTER_OTLP_HEADERS="X-Key=v").transport
    assert isinstance(grpc_upper, GrpcTransport) and grpc_upper.headers == {"x-key": "v"}
    for variable in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
        for bad in ("novalue", "a=1,broken", "=v", "bad key=1"):
            with pytest.raises(ValueError, match=variable):
                otlp(from_env, **{variable: bad})


def test_env_insecure(from_env: Any, caplog: pytest.LogCaptureFixture) -> None:
    def secure(endpoint: str, **env: str) -> bool:
        transport = otlp(from_env, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=endpoint, **env).transport
        assert isinstance(transport, GrpcTransport)
        return transport.secure

    assert secure("c:4317")  # no scheme, not insecure: TLS
    assert not secure("c:4317", OTEL_EXPORTER_OTLP_INSECURE="true")
    assert not secure("c:4317", OTEL_EXPORTER_OTLP_TRACES_INSECURE="TRUE")
    assert secure(
        "c:4317", OTEL_EXPORTER_OTLP_INSECURE="true", OTEL_EXPORTER_OTLP_TRACES_INSECURE="false"
    )
    assert not secure("http://c:4317", OTEL_EXPORTER_OTLP_INSECURE="false")  # the scheme decides
    assert secure("https://c:4317", OTEL_EXPORTER_OTLP_INSECURE="true")
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert secure("c:4317", OTEL_EXPORTER_OTLP_INSECURE="yes")  # not "true": false, logged
    (warning,) = [r for r in caplog.records if r.name == LOGGER]
    assert "OTEL_EXPORTER_OTLP_INSECURE='yes'" in warning.getMessage()


def test_env_certificate(from_env: Any, pki: Pki, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(pki.ca_pem)
    other = tmp_path / "other.pem"
    other.write_text(pki.cert_pem.decode())
    grpc_t = otlp(
        from_env,
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="https://c:4317",
        OTEL_EXPORTER_OTLP_CERTIFICATE=str(ca),
    ).transport
    assert isinstance(grpc_t, GrpcTransport) and grpc_t.certificate == pki.ca_pem
    http_t = otlp(
        from_env,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT="https://c",
        OTEL_EXPORTER_OTLP_CERTIFICATE=str(other),
        OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE=str(ca),
    ).transport
    assert isinstance(http_t, HttpTransport) and http_t.certificate == pki.ca_pem
    assert otlp(from_env).transport.certificate is None  # type: ignore[attr-defined]
    for variable in ("OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"):
        with pytest.raises(ValueError, match=variable):
            otlp(from_env, **{variable: str(tmp_path / "missing.pem")})


def test_env_compression(from_env: Any) -> None:
    assert otlp(from_env).transport.compression is None  # type: ignore[attr-defined]
    gz = otlp(from_env, OTEL_EXPORTER_OTLP_COMPRESSION="gzip").transport
    assert gz.compression == "gzip"  # type: ignore[attr-defined]
    off = otlp(
        from_env,
        OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
        OTEL_EXPORTER_OTLP_TRACES_COMPRESSION="none",
    ).transport
    assert off.compression is None  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_COMPRESSION='br'"):
        otlp(from_env, OTEL_EXPORTER_OTLP_COMPRESSION="br")


def test_env_timeouts(from_env: Any) -> None:
    default = otlp(from_env)
    assert default.transport.timeout_s == 10.0 and default.timeout_s == 30.0  # type: ignore[attr-defined]
    assert otlp(from_env, OTEL_EXPORTER_OTLP_TIMEOUT="2500").transport.timeout_s == 2.5  # type: ignore[attr-defined]
    traces = otlp(
        from_env, OTEL_EXPORTER_OTLP_TIMEOUT="2500", OTEL_EXPORTER_OTLP_TRACES_TIMEOUT="700"
    )
    assert traces.transport.timeout_s == 0.7  # type: ignore[attr-defined]
    # The batch's timeout bounds each send too: the smaller of the two wins.
    short_batch = otlp(from_env, OTEL_EXPORTER_OTLP_TIMEOUT="5000", OTEL_BSP_EXPORT_TIMEOUT="1000")
    assert short_batch.transport.timeout_s == 1.0 and short_batch.timeout_s == 1.0  # type: ignore[attr-defined]
    long_send = otlp(from_env, OTEL_EXPORTER_OTLP_TIMEOUT="60000")
    assert long_send.transport.timeout_s == 30.0 and long_send.timeout_s == 30.0  # type: ignore[attr-defined]
    for variable in (
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_BSP_EXPORT_TIMEOUT",
        "OTEL_BSP_SCHEDULE_DELAY",
    ):
        for bad in ("soon", "0", "-5", "inf", "nan"):
            with pytest.raises(ValueError, match=variable):
                otlp(from_env, **{variable: bad})


def test_env_batch_settings(from_env: Any) -> None:
    default = otlp(from_env)
    assert (default.delay_s, default.max_queue, default.max_batch) == (5.0, 2048, 512)
    tuned = otlp(
        from_env,
        OTEL_BSP_SCHEDULE_DELAY="250",
        OTEL_BSP_MAX_QUEUE_SIZE="100",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="100",
    )
    assert (tuned.delay_s, tuned.max_queue, tuned.max_batch) == (0.25, 100, 100)
    for variable in ("OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"):
        for bad in ("many", "0", "-1", "1.5"):
            with pytest.raises(ValueError, match=variable):
                otlp(from_env, **{variable: bad})
    with pytest.raises(ValueError, match="OTEL_BSP_MAX_EXPORT_BATCH_SIZE=600.*QUEUE_SIZE=512"):
        otlp(from_env, OTEL_BSP_MAX_QUEUE_SIZE="512", OTEL_BSP_MAX_EXPORT_BATCH_SIZE="600")
    with pytest.raises(ValueError, match="OTEL_BSP_MAX_EXPORT_BATCH_SIZE=3000.*QUEUE_SIZE=2048"):
        otlp(from_env, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="3000", OTEL_BSP_MAX_QUEUE_SIZE="")


async def test_env_from_the_receiver_exports_there(receiver: OtlpReceiver) -> None:
    (exporter,) = exporters_from_env(receiver.env(), RESOURCE)
    assert isinstance(exporter, BatchExporter) and exporter.delay_s == 0.1
    try:
        exporter.on_end(make_span("configured"))
        spans = await receiver.wait_for(lambda s: len(s) >= 1, timeout=5)
    finally:
        await asyncio.to_thread(exporter.shutdown)
    assert spans[0].name == "configured" and spans[0].service == "svc-otlp"


# -- the console exporter ----------------------------------------------------------------


def test_console_lines_are_json_with_the_fields() -> None:
    stream = io.StringIO()
    exporter = ConsoleExporter(stream, resource=RESOURCE)
    root = make_span("root", 0x21, kind=SpanKind.SERVER)
    child = make_span(
        "child ✓",
        0x22,
        root.context,
        kind=SpanKind.CLIENT,
        attributes={"n": 1, "tags": ("a", "b"), "ok": True, "raw": b"\x01"},
        status=Status(StatusCode.ERROR, "boom"),
        events=[Event("retry", T0 + 1000, {"attempt": 2})],
        start=T0 + 1,
        duration_ns=2_500_000,
    )
    exporter.on_end(root)
    exporter.on_end(child)
    assert exporter.force_flush()
    exporter.shutdown()
    exporter.on_end(root)  # after shutdown: ignored
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["trace_id"] == f"{TRACE:032x}" and first["span_id"] == f"{0x21:016x}"
    assert first["parent_id"] is None and first["kind"] == "SERVER"
    assert first["status"] == {"code": "UNSET", "description": None}
    assert first["resource"] == RESOURCE and first["events"] == []
    assert second["parent_id"] == f"{0x21:016x}" and second["name"] == "child ✓"
    assert second["kind"] == "CLIENT" and second["duration_ms"] == 2.5
    assert second["attributes"] == {"n": 1, "tags": ["a", "b"], "ok": True, "raw": "01"}
    assert second["status"] == {"code": "ERROR", "description": "boom"}
    assert second["start_time_unix_nano"] == T0 + 1
    assert second["end_time_unix_nano"] == T0 + 1 + 2_500_000
    assert second["start_time"] == "2023-11-14T22:13:20.123456790Z"
    assert second["end_time"] == "2023-11-14T22:13:20.125956790Z"
    assert second["events"] == [
        {"name": "retry", "time": "2023-11-14T22:13:20.123457789Z", "attributes": {"attempt": 2}}
    ]


def test_console_defaults_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    exporter = ConsoleExporter()
    exporter.on_end(make_span("to stdout"))
    line = capsys.readouterr().out.strip()
    assert json.loads(line)["name"] == "to stdout" and "resource" not in json.loads(line)


def test_span_like_accepts_the_test_dataclass() -> None:
    span: SpanLike = make_span()  # the dataclass fits the protocol (for mypy)
    spans: Sequence[SpanLike] = [span]
    assert parsed_spans(encode_spans(spans, RESOURCE))[0].name == "op"
