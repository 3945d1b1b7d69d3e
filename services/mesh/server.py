"""Server bootstrap shared by every meshwright process.

One ``MeshServer`` serves any set of services on one grpc.aio server, plus
``grpc.health.v1.Health`` (a status per service) and server reflection (both open to
every caller), so ``grpcurl host:port list`` works against every process.
Every domain method is served through the one call ``Pipeline``
(authentication, limits, policy, context, deadline, errors); a ``MeshError``
becomes a rich ``google.rpc.Status`` in one place instead of status codes set
by hand in every method. Servicer methods take just the request.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import descriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from meshwright.mesh._descriptors import MethodInfo, methods_of
from meshwright.mesh.errors import InvalidArgument, MeshError, to_grpc_status
from meshwright.mesh.limits import MAX_MESSAGE_BYTES
from meshwright.mesh.pipeline import Endpoint, Pipeline
from meshwright.mesh.tls import TlsConfig

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

MAX_PENDING_CALLS = 20_000
"""Calls gRPC core holds for the application before it cancels new ones."""
_OPTIONS = [
    # A port clash must fail loudly instead of sharing the port.
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5000),
    # Calls that arrived but wait for the event loop to take them: past 1,000 (gRPC's
    # default) gRPC core cancels new ones with no details, which a burst of heartbeats
    # at a busy registry met. Their deadlines bound the wait instead.
    ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
    ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
]


class RequestUndecodable(InvalidArgument):
    """The request bytes are not the method's message (corrupt wire format, bad UTF-8)."""

    reason = "REQUEST_UNDECODABLE"


def _decode(info: MethodInfo, raw: bytes) -> Any:
    try:
        return info.request_type.FromString(raw)
    except Exception as err:  # DecodeError, or upb's RuntimeError on some inputs
        raise RequestUndecodable(
            f"the request is not a valid {info.request_type.DESCRIPTOR.full_name}: "
            f"{type(err).__name__}"
        ) from None


def _timeout(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None or remaining > 1e9 else float(remaining)


def _unary_handler(
    pipeline: Pipeline, endpoint: Endpoint, fn: Callable[[Any], Awaitable[Any]]
) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def handler(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            metadata = tuple(context.invocation_metadata() or ())
            # Who calls before what they sent: an anonymous caller learns nothing
            # but UNAUTHENTICATED, whatever bytes it sends.
            principal = pipeline.authenticate(metadata, context.peer())
            request = _decode(endpoint.info, raw)
            return await pipeline.unary(
                endpoint,
                fn,
                request,
                metadata=metadata,
                timeout=_timeout(context),
                peer=context.peer(),
                principal=principal,
                transport_deadline=True,  # grpc cancels the handler at the deadline
            )
        except MeshError as err:
            await context.abort_with_status(to_grpc_status(err))

    return handler


def _stream_handler(
    pipeline: Pipeline, endpoint: Endpoint, fn: Callable[[Any], AsyncIterator[Any]]
) -> Callable[[bytes, grpc.aio.ServicerContext], AsyncIterator[Any]]:
    async def handler(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            metadata = tuple(context.invocation_metadata() or ())
            principal = pipeline.authenticate(metadata, context.peer())
            request = _decode(endpoint.info, raw)
            async for item in pipeline.stream(
                endpoint,
                fn,
                request,
                metadata=metadata,
                timeout=_timeout(context),
                peer=context.peer(),
                principal=principal,
            ):
                yield item
        except MeshError as err:
            await context.abort_with_status(to_grpc_status(err))

    return handler


def _each_handler(
    pipeline: Pipeline, endpoint: Endpoint, fn: Callable[[Any], Awaitable[Any]]
) -> Callable[[AsyncIterator[bytes], grpc.aio.ServicerContext], AsyncIterator[Any]]:
    info = endpoint.info

    async def requests(raw: AsyncIterator[bytes]) -> AsyncIterator[Any]:
        async for item in raw:
            try:
                yield _decode(info, item)
            except MeshError as err:  # answered as this message's error; the stream goes on
                yield err

    async def handler(
        raw: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        try:
            metadata = tuple(context.invocation_metadata() or ())
            peer = context.peer()
            # Who calls before anything they send is read.
            pipeline.authenticate(metadata, peer)
            async for item in pipeline.each(
                endpoint,
                fn,
                requests(raw),
                metadata=metadata,
                timeout=_timeout(context),
                peer=peer,
                transport_deadline=True,
            ):
                yield item
        except MeshError as err:
            await context.abort_with_status(to_grpc_status(err))

    return handler


def _answers_errors(info: MethodInfo) -> bool:
    field = info.response_type.DESCRIPTOR.fields_by_name.get("error")
    return field is not None and (
        field.message_type is not None and field.message_type.full_name == "google.rpc.Status"
    )


def service_handler(
    servicer: object,
    service: descriptor.ServiceDescriptor,
    pipeline: Pipeline,
    *,
    mesh: bool = False,
) -> grpc.GenericRpcHandler:
    """A generic handler serving ``servicer``'s methods for ``service`` through ``pipeline``.

    Built from the descriptor, so every service is registered the same way and
    every method passes the same pipeline under its declared policy (``mesh``:
    the ``mesh_access`` policy, for contracts the mesh serves for others).
    Requests are decoded here, so undecodable bytes are INVALID_ARGUMENT.
    """
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for name, info in methods_of(service).items():
        fn = getattr(servicer, name)
        endpoint = Endpoint.of(info, mesh=mesh)
        if info.client_streaming:
            if not info.server_streaming or not _answers_errors(info):
                raise ValueError(
                    f"{info.path}: only bidirectional streams whose responses carry a "
                    "google.rpc.Status `error` are supported (one answer per request)"
                )
            handlers[name] = grpc.stream_stream_rpc_method_handler(
                _each_handler(pipeline, endpoint, fn),
                response_serializer=info.response_type.SerializeToString,
            )
        elif info.server_streaming:
            handlers[name] = grpc.unary_stream_rpc_method_handler(
                _stream_handler(pipeline, endpoint, fn),
                response_serializer=info.response_type.SerializeToString,
            )
        else:
            handlers[name] = grpc.unary_unary_rpc_method_handler(
                _unary_handler(pipeline, endpoint, fn),
                response_serializer=info.response_type.SerializeToString,
            )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


class MeshServer:
    """A grpc.aio server with health, reflection and graceful shutdown."""

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        host: str = "127.0.0.1",
        port: int = 0,
        grace_s: float = 5.0,
        tls: TlsConfig | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.tls = tls
        self.host = host
        self.requested_port = port
        self.grace_s = grace_s
        self.port = 0
        self._services: list[tuple[object, descriptor.ServiceDescriptor, bool]] = []
        self._server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        self._stopped = asyncio.Event()
        self._on_stop: list[Callable[[], Awaitable[None]]] = []

    @property
    def address(self) -> str:
        """``host:port`` the server listens on (after ``start``)."""
        return f"{self.host}:{self.port}"

    @property
    def service_names(self) -> list[str]:
        """Full names of the domain services served."""
        return [svc.full_name for _, svc, _ in self._services]

    def add(
        self, servicer: object, service: descriptor.ServiceDescriptor, *, mesh: bool = False
    ) -> None:
        """Serve ``servicer`` as ``service``; call before ``start``.

        ``mesh``: the mesh serves this contract for others (its ``mesh_access`` policies).
        """
        if self._server is not None:
            raise RuntimeError("add services before start()")
        self._services.append((servicer, service, mesh))

    def on_stop(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` after in-flight calls finished, during ``stop``."""
        self._on_stop.append(fn)

    async def start(self) -> int:
        """Bind and start serving; returns the bound port."""
        server = grpc.aio.server(options=_OPTIONS)
        for servicer, service, mesh in self._services:
            server.add_generic_rpc_handlers(
                (service_handler(servicer, service, self.pipeline, mesh=mesh),)
            )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server)
        where = f"{self.host}:{self.requested_port}"
        try:
            if self.tls is None:
                port = server.add_insecure_port(where)
            else:
                port = server.add_secure_port(where, self.tls.server_credentials())
        except RuntimeError:
            port = 0
        if port == 0:
            raise OSError(f"cannot bind gRPC port {where}: is another process using it?")
        await server.start()
        self._server = server
        self.port = port
        for name in self.service_names:
            await self.health.set(name, SERVING)
        await self.health.set("", SERVING)
        log.info("serving %s on %s", ", ".join(self.service_names) or "health", self.address)
        return port

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop accepting calls, let in-flight calls finish, run stop hooks."""
        if self._server is None or self._stopped.is_set():
            return
        self._stopped.set()
        await self.health.enter_graceful_shutdown()
        await self._server.stop(self.grace_s if grace_s is None else grace_s)
        for fn in reversed(self._on_stop):
            try:
                await fn()
            except Exception:  # a failing hook must not stop the others
                log.exception("stop hook failed")

    async def wait_stopped(self) -> None:
        """Block until ``stop`` has been called."""
        await self._stopped.wait()


def install_signal_handlers(stop: Callable[[], None]) -> None:
    """Call ``stop`` on SIGTERM or SIGINT (graceful shutdown)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
