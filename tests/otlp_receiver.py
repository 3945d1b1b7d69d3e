"""A real OTLP/gRPC trace receiver for tests and benches.

``OtlpReceiver`` serves ``opentelemetry.proto.collector.trace.v1.TraceService``
(``Export``) on a free port of 127.0.0.1 on the running event loop and keeps
every span it is sent, with the ``service.name`` and ``service.instance.id`` of
its resource and the raw ``opentelemetry.proto.trace.v1.trace_pb2.Span``::

    receiver = OtlpReceiver()
    await receiver.start()
    ...  # exporters sending to receiver.endpoint (or a child with receiver.env())
    spans = await receiver.wait_for(lambda spans: len(spans) >= 2, timeout=10)
    await receiver.stop()

The OTLP gRPC exporter is synchronous and blocks while it exports: flush it in
a thread (``await asyncio.to_thread(provider.force_flush)``) so this loop keeps
serving.

Run as a program (``python -m tests.otlp_receiver``) it serves in a process of
its own, counting spans without keeping them (so a bench's load does not share
its event loop): it prints ``READY <port>``, then answers each line read on
stdin with ``SPANS <json>`` (``{"total": n, "by_service": {name: n}}``), and
prints a last ``SPANS`` line and exits on stdin's end of file or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gzip
import json
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

HOST = "127.0.0.1"


def any_value(value: common_pb2.AnyValue) -> Any:
    """The plain Python value of an OTLP ``AnyValue`` (None when it holds nothing)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    return getattr(value, kind)  # string, bool, int, double or bytes


def attributes_of(pairs: Any) -> dict[str, Any]:
    """A repeated ``KeyValue`` as a dict of plain values."""
    return {kv.key: any_value(kv.value) for kv in pairs}


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver got it."""

    trace_id: str
    """32 hex digits."""
    span_id: str
    """16 hex digits."""
    parent_span_id: str
    """16 hex digits, "" for a root span."""
    name: str
    kind: int
    """``trace_pb2.Span.SpanKind``: 1 INTERNAL, 2 SERVER, 3 CLIENT, 4 PRODUCER, 5 CONSUMER."""
    service: str
    """The resource's ``service.name``."""
    instance_id: str
    """The resource's ``service.instance.id`` ("" when it has none)."""
    attributes: dict[str, Any]
    status_code: int
    """``trace_pb2.Status.StatusCode``: 0 UNSET, 1 OK, 2 ERROR."""
    start_ns: int
    end_ns: int
    scope: str = ""
    """The instrumentation scope's name."""
    resource: dict[str, Any] = field(default_factory=dict)
    """Every resource attribute."""
    raw: trace_pb2.Span | None = field(default=None, repr=False, compare=False)


def received_spans(request: trace_service_pb2.ExportTraceServiceRequest) -> list[ReceivedSpan]:
    """The spans of one Export request, each with its resource's service."""
    out: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = attributes_of(resource_spans.resource.attributes)
        service = str(resource.get("service.name", ""))
        instance = str(resource.get("service.instance.id", ""))
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for s in scope_spans.spans:
                out.append(
                    ReceivedSpan(
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        name=s.name,
                        kind=int(s.kind),
                        service=service,
                        instance_id=instance,
                        attributes=attributes_of(s.attributes),
                        status_code=int(s.status.code),
                        start_ns=int(s.start_time_unix_nano),
                        end_ns=int(s.end_time_unix_nano),
                        scope=scope,
                        resource=resource,
                        raw=s,
                    )
                )
    return out


def _count_by_service(request: trace_service_pb2.ExportTraceServiceRequest) -> dict[str, int]:
    counts: dict[str, int] = {}
    for resource_spans in request.resource_spans:
        service = ""
        for kv in resource_spans.resource.attributes:
            if kv.key == "service.name":
                service = kv.value.string_value
        n = sum(len(ss.spans) for ss in resource_spans.scope_spans)
        counts[service] = counts.get(service, 0) + n
    return counts


class _Servicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    async def Export(  # noqa: N802 (the generated servicer's name)
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        await self._receiver._received(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """An OTLP trace receiver on 127.0.0.1 (insecure), serving on the running loop:
    OTLP/gRPC on ``port``, OTLP/HTTP (``POST /v1/traces``, protobuf) on ``http_port``.

    ``keep=False`` counts spans (``count``, ``by_service``) without keeping them.
    """

    def __init__(self, *, keep: bool = True) -> None:
        self.keep = keep
        self.port = 0
        self.exports = 0
        """Export requests served."""
        self.count = 0
        """Spans received."""
        self.by_service: collections.Counter[str] = collections.Counter()
        """Spans received, by ``service.name``."""
        self._spans: list[ReceivedSpan] = []
        self._server: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None
        self.http_port = 0
        self.http_headers: list[dict[str, str]] = []
        """The headers of each OTLP/HTTP export received."""
        self._changed: asyncio.Condition | None = None

    @property
    def endpoint(self) -> str:
        """Where an OTLP gRPC exporter sends: ``http://127.0.0.1:<port>``."""
        if not self.port:
            raise RuntimeError("the receiver is not started")
        return f"http://{HOST}:{self.port}"

    async def start(self) -> int:
        """Serve on a free port of 127.0.0.1; the port."""
        if self._server is not None:
            raise RuntimeError("the receiver is already started")
        self._changed = asyncio.Condition()
        server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Servicer(self), server)
        port = server.add_insecure_port(f"{HOST}:0")
        if not port:
            raise RuntimeError(f"could not bind {HOST}:0")
        await server.start()
        self._server = server
        self.port = port
        app = web.Application()
        app.router.add_post("/v1/traces", self._http_export)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        self._http = runner
        self.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return port

    @property
    def http_endpoint(self) -> str:
        """Where an OTLP/HTTP exporter sends: ``http://127.0.0.1:<port>/v1/traces``."""
        if not self.http_port:
            raise RuntimeError("the receiver is not started")
        return f"http://{HOST}:{self.http_port}/v1/traces"

    async def _http_export(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-protobuf":
            return web.Response(status=415, text="application/x-protobuf only")
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        try:
            export = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        except Exception:
            return web.Response(status=400, text="not an ExportTraceServiceRequest")
        self.http_headers.append({k.lower(): v for k, v in request.headers.items()})
        await self._received(export)
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    async def stop(self, grace: float | None = 0.5) -> None:
        """Stop serving (Exports under way get ``grace`` seconds). What was received stays."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
        http, self._http = self._http, None
        if http is not None:
            await http.cleanup()

    async def __aenter__(self) -> OtlpReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def env(self, protocol: str = "grpc") -> dict[str, str]:
        """The ``OTEL_*`` variables a child process needs to export its spans here
        (OTLP over insecure gRPC, or ``http/protobuf``; batches sent every 100 ms)."""
        http = protocol == "http/protobuf"
        return {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": self.http_endpoint if http else self.endpoint,
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }

    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, in the order received (a copy)."""
        return list(self._spans)

    def clear(self) -> None:
        """Forget the spans received so far (the counts too)."""
        self._spans.clear()
        self.count = 0
        self.exports = 0
        self.by_service.clear()

    async def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float
    ) -> list[ReceivedSpan]:
        """Wait until ``predicate(spans())`` holds (checked now and after each Export);
        the spans then. TimeoutError after ``timeout`` seconds."""
        if self._changed is None:
            raise RuntimeError("the receiver is not started")
        changed = self._changed
        try:
            async with asyncio.timeout(timeout):
                async with changed:
                    await changed.wait_for(lambda: predicate(self.spans()))
        except TimeoutError:
            names = sorted({s.name for s in self._spans})
            raise TimeoutError(
                f"the spans did not arrive within {timeout}s: {len(self._spans)} received"
                f" in {self.exports} exports, named {names[:20]}"
            ) from None
        return self.spans()

    async def _received(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        if self.keep:
            new = received_spans(request)
            self._spans.extend(new)
            counts = collections.Counter(s.service for s in new)
        else:
            counts = collections.Counter(_count_by_service(request))
        self.exports += 1
        self.count += sum(counts.values())
        self.by_service.update(counts)
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()


# -- as a program: a receiver in a process of its own -----------------------------------------


def _report(receiver: OtlpReceiver) -> str:
    body = {"total": receiver.count, "exports": receiver.exports}
    body["by_service"] = dict(sorted(receiver.by_service.items()))  # type: ignore[assignment]
    return "SPANS " + json.dumps(body, sort_keys=True)


async def _serve() -> None:
    receiver = OtlpReceiver(keep=False)
    port = await receiver.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    print("READY", port, receiver.http_port, flush=True)

    async def answer() -> None:
        while await reader.readline():  # each line asks for the counts
            print(_report(receiver), flush=True)
        stop.set()  # end of file

    answering = asyncio.create_task(answer())
    try:
        await stop.wait()
    finally:
        answering.cancel()
        transport.close()
        await receiver.stop()
        print(_report(receiver), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.otlp_receiver",
        description="Serve an OTLP/gRPC trace receiver on 127.0.0.1 and count the spans.",
    )
    parser.parse_args(argv)
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
