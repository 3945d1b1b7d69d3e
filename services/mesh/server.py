"""Server bootstrap shared by every meshwright process.

One ``MeshServer`` serves any set of services on one grpc.aio server, plus
``grpc.health.v1.Health`` (a status per service) and server reflection, so
``grpcurl -plaintext host:port list`` works against every process. Servicer
methods raise ``MeshError``; the wrapper installed here turns that into a
rich ``google.rpc.Status`` in one place instead of status codes set by hand
in every method.
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

from meshwright.mesh._descriptors import methods_of
from meshwright.mesh.errors import Internal, MeshError, to_grpc_status

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

_OPTIONS = [
    # A port clash must fail loudly instead of sharing the port.
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5000),
]


def _unexpected(err: Exception) -> grpc.Status:
    # A bug: log it here, and tell the caller no more than that it happened.
    log.error("unexpected error in a servicer", exc_info=err)
    return to_grpc_status(Internal("internal error"))


def _wrap_unary(fn: Callable[[Any, Any], Awaitable[Any]]) -> Callable[[Any, Any], Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(request, context)
        except MeshError as err:
            await context.abort_with_status(to_grpc_status(err))
        except grpc.aio.AbortError:
            raise
        except Exception as err:
            await context.abort_with_status(_unexpected(err))

    return handler


def _wrap_stream(
    fn: Callable[[Any, Any], AsyncIterator[Any]],
) -> Callable[[Any, Any], AsyncIterator[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in fn(request, context):
                yield item
        except MeshError as err:
            await context.abort_with_status(to_grpc_status(err))
        except grpc.aio.AbortError:
            raise
        except Exception as err:
            await context.abort_with_status(_unexpected(err))

    return handler


def service_handler(
    servicer: object, service: descriptor.ServiceDescriptor
) -> grpc.GenericRpcHandler:
    """A generic handler serving ``servicer``'s methods for ``service``.

    Built from the descriptor, so every service is registered the same way
    and gets the same error mapping.
    """
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for name, info in methods_of(service).items():
        fn = getattr(servicer, name)
        if info.client_streaming:
            raise ValueError(f"{info.path}: client streaming is not supported")
        if info.server_streaming:
            handlers[name] = grpc.unary_stream_rpc_method_handler(
                _wrap_stream(fn),
                request_deserializer=info.request_type.FromString,
                response_serializer=info.response_type.SerializeToString,
            )
        else:
            handlers[name] = grpc.unary_unary_rpc_method_handler(
                _wrap_unary(fn),
                request_deserializer=info.request_type.FromString,
                response_serializer=info.response_type.SerializeToString,
            )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


class MeshServer:
    """A grpc.aio server with health, reflection and graceful shutdown."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, grace_s: float = 5.0) -> None:
        self.host = host
        self.requested_port = port
        self.grace_s = grace_s
        self.port = 0
        self._services: list[tuple[object, descriptor.ServiceDescriptor]] = []
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
        return [svc.full_name for _, svc in self._services]

    def add(self, servicer: object, service: descriptor.ServiceDescriptor) -> None:
        """Serve ``servicer`` as ``service``; call before ``start``."""
        if self._server is not None:
            raise RuntimeError("add services before start()")
        self._services.append((servicer, service))

    def on_stop(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` after in-flight calls finished, during ``stop``."""
        self._on_stop.append(fn)

    async def start(self) -> int:
        """Bind and start serving; returns the bound port."""
        server = grpc.aio.server(options=_OPTIONS)
        for servicer, service in self._services:
            server.add_generic_rpc_handlers((service_handler(servicer, service),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server)
        where = f"{self.host}:{self.requested_port}"
        try:
            port = server.add_insecure_port(where)
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
