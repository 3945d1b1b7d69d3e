"""The OTLP receiver of tests/otlp_receiver.py, fed by the real SDK and OTLP gRPC exporter.

Spans come from local ``TracerProvider``s (the global one is left alone: other
tests in this process set it). The exporter blocks while it exports, so every
flush runs in a thread and the receiver's loop keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from meshwright.mesh import telemetry
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    r = OtlpReceiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


def provider_to(exporter: SpanExporter, service: str, instance: str = "") -> TracerProvider:
    attributes = {"service.name": service}
    if instance:
        attributes["service.instance.id"] = instance
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.name: s for s in spans}


async def test_parent_and_child_arrive_with_their_link_attributes_and_service(
    receiver: OtlpReceiver,
) -> None:
    assert receiver.endpoint == f"http://127.0.0.1:{receiver.port}"
    provider = provider_to(
        OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True), "svc-test", "replica-1"
    )
    try:
        tracer = provider.get_tracer("test-scope")
        with tracer.start_as_current_span(
            "parent", kind=SpanKind.SERVER, attributes={"rpc.method": "Do", "n": 3}
        ) as parent:
            with tracer.start_as_current_span(
                "child",
                attributes={"ok": True, "ratio": 0.5, "tags": ["a", "b"]},
            ) as child:
                child.set_status(StatusCode.ERROR, "boom")
        assert await asyncio.to_thread(provider.force_flush, 10_000)
        spans = await receiver.wait_for(lambda s: {"parent", "child"} <= {x.name for x in s}, 10)
    finally:
        await asyncio.to_thread(provider.shutdown)

    got = by_name(spans)
    assert set(got) == {"parent", "child"}
    p, c = got["parent"], got["child"]
    pctx, cctx = parent.get_span_context(), child.get_span_context()
    assert p.trace_id == c.trace_id == f"{pctx.trace_id:032x}"
    assert p.span_id == f"{pctx.span_id:016x}" and c.span_id == f"{cctx.span_id:016x}"
    assert p.parent_span_id == ""
    assert c.parent_span_id == p.span_id
    assert p.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert c.kind == trace_pb2.Span.SPAN_KIND_INTERNAL
    assert p.attributes == {"rpc.method": "Do", "n": 3}
    assert c.attributes == {"ok": True, "ratio": 0.5, "tags": ["a", "b"]}
    assert c.status_code == trace_pb2.Status.STATUS_CODE_ERROR
    assert p.status_code == trace_pb2.Status.STATUS_CODE_UNSET
    assert {p.service, c.service} == {"svc-test"}
    assert {p.instance_id, c.instance_id} == {"replica-1"}
    assert p.scope == "test-scope"
    assert p.start_ns <= c.start_ns <= c.end_ns <= p.end_ns
    assert isinstance(c.raw, trace_pb2.Span) and c.raw.name == "child"
    assert receiver.count == 2 and receiver.by_service == {"svc-test": 2}


async def test_two_services_of_one_trace_are_told_apart(receiver: OtlpReceiver) -> None:
    caller = provider_to(OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True), "caller")
    callee = provider_to(OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True), "callee")
    try:
        with caller.get_tracer("t").start_as_current_span("call", kind=SpanKind.CLIENT):
            # the callee's span parented on the caller's (as a propagated traceparent does)
            with callee.get_tracer("t").start_as_current_span("serve", kind=SpanKind.SERVER):
                pass
        await asyncio.gather(
            asyncio.to_thread(caller.force_flush), asyncio.to_thread(callee.force_flush)
        )
        spans = await receiver.wait_for(lambda s: len(s) >= 2, 10)
    finally:
        await asyncio.gather(asyncio.to_thread(caller.shutdown), asyncio.to_thread(callee.shutdown))
    got = by_name(spans)
    assert got["call"].service == "caller" and got["serve"].service == "callee"
    assert got["serve"].parent_span_id == got["call"].span_id
    assert got["serve"].trace_id == got["call"].trace_id


async def test_env_configures_the_exporter_that_telemetry_builds(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variables env() gives are enough: telemetry.exporters_from_env builds from
    them an exporter that reaches the receiver (as a child process started with them)."""
    env = receiver.env()
    assert env == {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_INSECURE", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    store_free = telemetry.setup_tracing("from-env", instance_id="t-9")  # reads os.environ
    try:
        assert store_free and telemetry.enabled()
        with telemetry.span("via-env"):
            pass
        # no force_flush: the 100 ms schedule delay alone sends it
        spans = await receiver.wait_for(lambda s: any(x.name == "via-env" for x in s), 10)
    finally:
        await asyncio.to_thread(telemetry.shutdown_tracing)
    assert [(s.service, s.instance_id) for s in spans] == [("from-env", "t-9")]


async def test_wait_for_times_out_with_what_arrived(receiver: OtlpReceiver) -> None:
    with pytest.raises(TimeoutError, match="0 received"):
        await receiver.wait_for(lambda s: len(s) > 0, 0.1)


async def test_as_a_program_it_counts_and_reports_on_request_and_at_the_end() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.otlp_receiver",
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    provider: TracerProvider | None = None
    try:
        ready = (await asyncio.wait_for(proc.stdout.readline(), 30)).split()
        assert ready[0] == b"READY"
        endpoint = f"http://127.0.0.1:{int(ready[1])}"
        provider = provider_to(OTLPSpanExporter(endpoint=endpoint, insecure=True), "counted")
        tracer = provider.get_tracer("t")
        for i in range(3):
            with tracer.start_as_current_span(f"s{i}"):
                pass
        assert await asyncio.to_thread(provider.force_flush, 10_000)
        # the export has returned, so the receiver has counted it
        proc.stdin.write(b"\n")
        await proc.stdin.drain()
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert line.startswith(b"SPANS ")
        counts = json.loads(line[6:])
        assert counts["total"] == 3 and counts["by_service"] == {"counted": 3}
        proc.stdin.close()
        last = json.loads((await asyncio.wait_for(proc.stdout.readline(), 10))[6:])
        assert last["total"] == 3
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if provider is not None:
            await asyncio.to_thread(provider.shutdown)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
