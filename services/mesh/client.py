"""The client side: call a service by method name, in-process or remote.

Both flavours take and return the contract's messages and raise the same
``MeshError`` classes, so a domain (or the gateway) holds a ``ServiceClient``
and does not care whether the other domain lives in this process (the
embedded ``meshwright up``, no loopback hop) or behind a channel.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import descriptor, message

from meshwright.mesh._descriptors import MethodInfo, methods_of
from meshwright.mesh.errors import DeadlineExceeded, NotFound, from_rpc_error

M = TypeVar("M", bound=message.Message)

Metadata = Sequence[tuple[str, str]]


class ServiceClient(Protocol):
    """Calls one service's RPCs by short method name."""

    service: descriptor.ServiceDescriptor

    async def call(
        self,
        method: str,
        request: message.Message,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Any:
        """Call a unary RPC; returns its response message."""
        ...

    def stream(
        self,
        method: str,
        request: message.Message,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> AsyncIterator[Any]:
        """Call a server-streaming RPC; yields its responses."""
        ...


def _method(service: descriptor.ServiceDescriptor, name: str) -> MethodInfo:
    try:
        return methods_of(service)[name]
    except KeyError:
        raise NotFound(f"{service.full_name} has no method {name}") from None


class RemoteServiceClient:
    """Calls a service over a grpc.aio channel."""

    def __init__(self, channel: grpc.aio.Channel, service: descriptor.ServiceDescriptor) -> None:
        self.service = service
        self._channel = channel
        self._unary: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}
        self._streams: dict[str, grpc.aio.UnaryStreamMultiCallable] = {}
        for name, info in methods_of(service).items():
            if info.server_streaming:
                self._streams[name] = channel.unary_stream(
                    info.path,
                    request_serializer=info.request_type.SerializeToString,
                    response_deserializer=info.response_type.FromString,
                )
            else:
                self._unary[name] = channel.unary_unary(
                    info.path,
                    request_serializer=info.request_type.SerializeToString,
                    response_deserializer=info.response_type.FromString,
                )

    async def call(
        self,
        method: str,
        request: message.Message,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Any:
        fn = self._unary.get(method)
        if fn is None:
            raise NotFound(f"{self.service.full_name} has no unary method {method}")
        try:
            return await fn(request, timeout=timeout, metadata=metadata or None)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None

    async def stream(
        self,
        method: str,
        request: message.Message,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> AsyncIterator[Any]:
        fn = self._streams.get(method)
        if fn is None:
            raise NotFound(f"{self.service.full_name} has no streaming method {method}")
        call = fn(request, timeout=timeout, metadata=metadata or None)
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None
        finally:
            call.cancel()


class LocalContext:
    """The parts of ``grpc.aio.ServicerContext`` servicers use, for in-process calls."""

    def __init__(self, timeout: float | None, metadata: Metadata) -> None:
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._metadata = tuple(metadata)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def peer(self) -> str:
        return "local"

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False


class LocalServiceClient:
    """Calls a servicer object in this process: same messages, same errors, no hop."""

    def __init__(self, servicer: object, service: descriptor.ServiceDescriptor) -> None:
        self.service = service
        self._servicer = servicer
        for name in methods_of(service):
            if not callable(getattr(servicer, name, None)):
                raise TypeError(f"{type(servicer).__name__} does not implement {name}")

    async def call(
        self,
        method: str,
        request: message.Message,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Any:
        info = _method(self.service, method)
        if info.server_streaming:
            raise NotFound(f"{self.service.full_name}.{method} is a streaming method")
        fn = getattr(self._servicer, method)
        ctx = LocalContext(timeout, metadata)
        try:
            if timeout is None:
                return await fn(request, ctx)
            return await asyncio.wait_for(fn(request, ctx), timeout)
        except TimeoutError:
            raise DeadlineExceeded(f"{info.path} exceeded its {timeout:.3f}s deadline") from None

    async def stream(
        self,
        method: str,
        request: message.Message,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> AsyncIterator[Any]:
        info = _method(self.service, method)
        if not info.server_streaming:
            raise NotFound(f"{self.service.full_name}.{method} is not a streaming method")
        ctx = LocalContext(timeout, metadata)
        async for item in getattr(self._servicer, method)(request, ctx):
            yield item


class ChannelPool:
    """One grpc.aio channel per target, reused by every caller in the process."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}

    def get(self, target: str) -> grpc.aio.Channel:
        """The channel to ``target`` (``host:port``), created on first use."""
        ch = self._channels.get(target)
        if ch is None:
            ch = grpc.aio.insecure_channel(
                target,
                options=[
                    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
                    ("grpc.keepalive_time_ms", 30000),
                    ("grpc.enable_retries", 1),
                ],
            )
            self._channels[target] = ch
        return ch

    def client(self, target: str, service: descriptor.ServiceDescriptor) -> RemoteServiceClient:
        """A remote client for ``service`` at ``target``."""
        return RemoteServiceClient(self.get(target), service)

    async def discard(self, target: str) -> None:
        """Close and forget the channel to ``target``."""
        ch = self._channels.pop(target, None)
        if ch is not None:
            await ch.close()

    async def close(self) -> None:
        """Close every channel."""
        channels, self._channels = list(self._channels.values()), {}
        for ch in channels:
            await ch.close()


__all__ = [
    "ChannelPool",
    "LocalContext",
    "LocalServiceClient",
    "RemoteServiceClient",
    "ServiceClient",
]
