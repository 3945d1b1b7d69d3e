"""The client side: call a service by method name, in-process or remote.

Both flavours take and return the contract's messages and raise the same
``MeshError`` classes, so a domain (or the gateway) holds a ``ServiceClient``
and does not care whether the other domain lives in this process (the
embedded ``meshwright up``, no loopback hop) or behind a channel.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import descriptor, message

from meshwright.mesh import telemetry
from meshwright.mesh._descriptors import methods_of
from meshwright.mesh.context import current_call
from meshwright.mesh.errors import NotFound, from_rpc_error
from meshwright.mesh.limits import MAX_MESSAGE_BYTES
from meshwright.mesh.pipeline import Endpoint, Pipeline
from meshwright.mesh.tls import TlsConfig

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

    def exchange(
        self,
        method: str,
        requests: AsyncIterator[Any],
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> AsyncIterator[Any]:
        """Call a bidirectional RPC that answers each request in order; yields the answers."""
        ...


def outgoing(
    metadata: Metadata,
    timeout: float | None,
    token: str | None,
    span: telemetry.Span | None = None,
    *,
    inject: bool = True,
) -> tuple[list[tuple[str, str]], float | None]:
    """Metadata and deadline of a call made now.

    While serving a call, an outgoing call carries that call's propagated
    metadata (trace context, request id) and never outlives its deadline. With
    tracing on, the trace context is the call's own CLIENT ``span`` (else the
    current span) instead of the one that came in (``inject`` False: left as it is,
    for an in-process call, whose server span reads the current span itself).
    ``token`` (this client's own credentials) replaces any authorization given.
    """
    out = list(metadata)
    call = current_call()
    if call is not None:
        given = {k for k, _ in out}
        out.extend((k, v) for k, v in call.propagated() if k not in given)
        remaining = call.time_remaining()
        if remaining is not None:
            timeout = remaining if timeout is None else min(timeout, remaining)
    if token is not None:
        out = [(k, v) for k, v in out if k != "authorization"]
        out.append(("authorization", f"Bearer {token}"))
    return (telemetry.inject(out, span) if inject else out), timeout


class RemoteServiceClient:
    """Calls a service over a grpc.aio channel."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        service: descriptor.ServiceDescriptor,
        *,
        token: str | None = None,
        target: str = "",
        client_spans: bool = True,
    ) -> None:
        """``token``: the bearer token this client calls with (None: only what callers pass).
        ``target``: where the channel goes (named on the calls' spans). ``client_spans``
        False: the calls make no CLIENT span of their own; the caller's current span
        (one that already stands for the call, as a task attempt does) is their parent."""
        self.service = service
        self._channel = channel
        self._token = token
        self._target = target
        self._client_spans = client_spans
        self._paths = {name: info.path for name, info in methods_of(service).items()}
        self._unary: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}
        self._streams: dict[str, grpc.aio.UnaryStreamMultiCallable] = {}
        self._exchanges: dict[str, grpc.aio.StreamStreamMultiCallable] = {}
        for name, info in methods_of(service).items():
            if info.client_streaming:
                self._exchanges[name] = channel.stream_stream(
                    info.path,
                    request_serializer=info.request_type.SerializeToString,
                    response_deserializer=info.response_type.FromString,
                )
            elif info.server_streaming:
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
        span = (
            telemetry.start_client_span(self._paths[method], self._target, metadata)
            if self._client_spans
            else None
        )
        md, timeout = outgoing(metadata, timeout, self._token, span)
        error: BaseException | None = None
        try:
            return await fn(request, timeout=timeout, metadata=md or None)
        except grpc.aio.AioRpcError as err:
            error = from_rpc_error(err)
            raise error from None
        except BaseException as err:
            error = err
            raise
        finally:
            telemetry.end_span(span, error)

    def stream(
        self,
        method: str,
        request: message.Message,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> AsyncIterator[Any]:
        fn = self._streams.get(method)
        if fn is None:
            return _refused(f"{self.service.full_name} has no streaming method {method}")
        # The trace context goes in when the stream starts (its span's, or the current one).
        md, timeout = outgoing(metadata, timeout, self._token, inject=False)
        return _items(
            lambda span: fn(request, timeout=timeout, metadata=telemetry.inject(md, span) or None),
            self._paths[method] if self._client_spans else "",
            self._target,
            metadata,
        )

    def exchange(
        self,
        method: str,
        requests: AsyncIterator[Any],
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> AsyncIterator[Any]:
        fn = self._exchanges.get(method)
        if fn is None:
            return _refused(f"{self.service.full_name} has no bidirectional method {method}")
        md, timeout = outgoing(metadata, timeout, self._token)
        # No span of its own: an exchange (a heartbeat stream) lives as long as its
        # agent; each message is a SERVER span on the other side.
        return _items(lambda _: fn(requests, timeout=timeout, metadata=md or None))


async def _items(
    start: Callable[[telemetry.Span | None], Any],
    path: str = "",
    target: str = "",
    metadata: Metadata = (),
) -> AsyncIterator[Any]:
    """The responses of the streaming call ``start`` makes (when first read, so a stream
    never read starts no call), its failure as a ``MeshError``; cancelled when left.
    With a ``path`` the call is a CLIENT span (ended with the stream), its context
    injected explicitly (never attached across a yield)."""
    span = telemetry.start_client_span(path, target, metadata) if path else None
    error: BaseException | None = None
    call = start(span)
    try:
        async for item in call:
            yield item
    except grpc.aio.AioRpcError as err:
        error = from_rpc_error(err)
        raise error from None
    except BaseException as err:
        error = err
        raise
    finally:
        call.cancel()
        telemetry.end_span(span, None if isinstance(error, GeneratorExit) else error)


async def _refused(why: str) -> AsyncIterator[Any]:
    """A stream that fails ``NotFound`` when read, as a call to an unknown method does."""
    raise NotFound(why)
    yield  # pragma: no cover (makes this an async generator)


class LocalServiceClient:
    """Calls a servicer object in this process through the same pipeline: no hop, no shortcut.

    Same messages, same errors, same authentication, policies, limits and
    deadlines as over gRPC; only the serialization is skipped. Traced, a call is
    the pipeline's SERVER span alone, a child of the caller's current span: with
    no hop in between, a CLIENT span would time the same thing twice.
    """

    def __init__(
        self,
        servicer: object,
        service: descriptor.ServiceDescriptor,
        pipeline: Pipeline,
        *,
        token: str | None = None,
        mesh: bool = False,
    ) -> None:
        """``token``: the bearer token this client calls with (None: only what callers pass).
        ``mesh``: the servicer serves this contract for others (``mesh_access`` policies)."""
        self.service = service
        self._servicer = servicer
        self._pipeline = pipeline
        self._token = token
        self._mesh = mesh
        self._endpoints: dict[str, Endpoint] = {}
        for name, info in methods_of(service).items():
            if not callable(getattr(servicer, name, None)):
                raise TypeError(f"{type(servicer).__name__} does not implement {name}")
            self._endpoints[name] = Endpoint.of(info, mesh=mesh)

    def with_token(self, token: str | None) -> LocalServiceClient:
        """The same service, called with another bearer token."""
        return LocalServiceClient(
            self._servicer, self.service, self._pipeline, token=token, mesh=self._mesh
        )

    def _endpoint(self, method: str, kind: str) -> Endpoint:
        endpoint = self._endpoints.get(method)
        if endpoint is None:
            raise NotFound(f"{self.service.full_name} has no method {method}")
        actual = _kind(endpoint)
        if actual != kind:
            raise NotFound(f"{self.service.full_name}.{method} is a {actual} method, not {kind}")
        return endpoint

    async def call(
        self,
        method: str,
        request: message.Message,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Any:
        endpoint = self._endpoint(method, "unary")
        md, timeout = outgoing(metadata, timeout, self._token, inject=False)
        return await self._pipeline.unary(
            endpoint, getattr(self._servicer, method), request, metadata=md, timeout=timeout
        )

    async def stream(
        self,
        method: str,
        request: message.Message,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> AsyncIterator[Any]:
        endpoint = self._endpoint(method, "streaming")
        md, timeout = outgoing(metadata, timeout, self._token, inject=False)
        items = self._pipeline.stream(
            endpoint, getattr(self._servicer, method), request, metadata=md, timeout=timeout
        )
        try:
            async for item in items:
                yield item
        finally:
            await items.aclose()  # type: ignore[attr-defined]

    async def exchange(
        self,
        method: str,
        requests: AsyncIterator[Any],
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> AsyncIterator[Any]:
        endpoint = self._endpoint(method, "bidirectional")
        md, timeout = outgoing(metadata, timeout, self._token, inject=False)
        self._pipeline.authenticate(md)  # at open, as the server does
        items = self._pipeline.each(
            endpoint, getattr(self._servicer, method), requests, metadata=md, timeout=timeout
        )
        try:
            async for item in items:
                yield item
        finally:
            await items.aclose()  # type: ignore[attr-defined]


def _kind(endpoint: Endpoint) -> str:
    if endpoint.info.client_streaming:
        return "bidirectional"
    return "streaming" if endpoint.info.server_streaming else "unary"


RETRIED_SERVICES = (
    "meshwright.registry.v1.RegistryService",
    "meshwright.economy.v1.EconomyService",
    "meshwright.workflow.v1.WorkflowService",
)
"""The services a ``RetryPolicy`` applies to by default.

Not ``meshwright.agent.v1.AgentService``: the engine retries a task itself, on another
agent, and the mesh's router answers NO_AGENT_AVAILABLE as UNAVAILABLE only after
waiting for an agent, so a transport retry there would multiply the wait. The others
answer UNAVAILABLE when a replica is down or its store unreachable, and their mutations
that must not happen twice (economy moves, CreateWorkflow) carry request ids the
services replay, so a retried attempt is harmless."""

_MAX_ATTEMPTS_CAP = 5
"""gRPC treats a larger ``maxAttempts`` as 5 (gRFC A6, "Limits on Retries and Hedges")."""
MIN_BACKOFF_S = 0.01
"""The smallest backoff a ``RetryPolicy`` takes. gRPC refuses the whole service config
for one under 1 ms, and with backoffs of a millisecond or two grpcio 1.85 often leaves a
retried call waiting until its deadline (a race of the retry timer, grpc/grpc#41036);
from a few milliseconds up it did not in thousands of calls."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """gRPC's own retries (service config ``retryPolicy``, gRFC A6) on a pool's channels.

    The channel retries a failed attempt itself, under the call's one deadline;
    nothing in our code loops. Before its ``n``-th retry it waits a delay gRPC draws
    uniformly from ``[0, min(initial_backoff_s * backoff_multiplier**(n-1),
    max_backoff_s)]`` (gRFC A6, "Exponential Backoff"): the jitter is gRPC's own, over
    the full range, so callers that failed together do not come back together. Only
    attempts that got no response headers are retried (A6: a call is "committed" once
    the server sent them), so a stream that delivered items is never replayed.
    """

    max_attempts: int = 4
    """Attempts in all, the first included (2 to 5: gRPC requires 2 and caps at 5)."""
    initial_backoff_s: float = 0.1
    """Upper bound of the delay before the first retry (at least ``MIN_BACKOFF_S``)."""
    max_backoff_s: float = 2.0
    """No delay bound grows past this (at least ``initial_backoff_s``)."""
    backoff_multiplier: float = 2.0
    """Growth of the delay bound per retry."""
    codes: tuple[str, ...] = ("UNAVAILABLE",)
    """Status codes (``grpc.StatusCode`` names) that are retried; anything else fails at once."""
    services: tuple[str, ...] = RETRIED_SERVICES
    """Full names of the services whose methods are retried (see ``RETRIED_SERVICES``)."""

    def __post_init__(self) -> None:
        if not 2 <= self.max_attempts <= _MAX_ATTEMPTS_CAP:
            raise ValueError(
                f"max_attempts must be 2 to {_MAX_ATTEMPTS_CAP} "
                f"(gRPC ignores more), not {self.max_attempts}"
            )
        for name in ("initial_backoff_s", "max_backoff_s", "backoff_multiplier"):
            value = getattr(self, name)
            if not (value > 0) or math.isinf(value):
                raise ValueError(f"{name} must be a finite number > 0, not {value}")
        if self.initial_backoff_s < MIN_BACKOFF_S:
            raise ValueError(
                f"initial_backoff_s must be at least {MIN_BACKOFF_S} s, not "
                f"{self.initial_backoff_s} (see MIN_BACKOFF_S)"
            )
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("max_backoff_s must be at least initial_backoff_s")
        names = {c.name for c in grpc.StatusCode} - {"OK"}
        unknown = [c for c in self.codes if c not in names]
        if not self.codes or unknown:
            raise ValueError(f"codes must name non-OK grpc.StatusCode values, not {unknown}")
        if not self.services:
            raise ValueError("services must name at least one service")

    def service_config(self) -> str:
        """The ``grpc.service_config`` JSON: one methodConfig naming ``services``."""
        return json.dumps(
            {
                "methodConfig": [
                    {
                        "name": [{"service": s} for s in self.services],
                        "retryPolicy": {
                            "maxAttempts": self.max_attempts,
                            "initialBackoff": _duration(self.initial_backoff_s),
                            "maxBackoff": _duration(self.max_backoff_s),
                            "backoffMultiplier": self.backoff_multiplier,
                            "retryableStatusCodes": list(self.codes),
                        },
                    }
                ]
            }
        )


DEFAULT_RETRY = RetryPolicy()
"""The retry policy of a ``ChannelPool`` unless told otherwise."""


def _duration(seconds: float) -> str:
    # Protobuf JSON Duration: decimal seconds with at most 9 fractional digits, never
    # the exponent form ("1e-05s") str(float) would give.
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


class ChannelPool:
    """One grpc.aio channel per target, reused by every caller in the process.

    ``tls`` makes every channel mutual TLS; ``token`` is the bearer token the
    clients it makes call with (this process's own identity); ``retry`` is the
    retry policy of every channel (None: no policy, so only gRPC's transparent
    retries of attempts that never reached the server).
    """

    def __init__(
        self,
        *,
        tls: TlsConfig | None = None,
        token: str | None = None,
        retry: RetryPolicy | None = DEFAULT_RETRY,
    ) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.tls = tls
        self.token = token
        self.retry = retry

    def get(self, target: str) -> grpc.aio.Channel:
        """The channel to ``target`` (``host:port``), created on first use."""
        ch = self._channels.get(target)
        if ch is None:
            ch = self._open(target)
            self._channels[target] = ch
        return ch

    def channel_options(self) -> list[tuple[str, Any]]:
        """The options every channel of the pool is opened with."""
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 30000),
            # On even without a policy: it also enables gRPC's transparent retries.
            ("grpc.enable_retries", 1),
        ]
        if self.retry is not None:
            options.append(("grpc.service_config", self.retry.service_config()))
        return options

    def _open(self, target: str) -> grpc.aio.Channel:
        options = self.channel_options()
        if self.tls is None:
            return grpc.aio.insecure_channel(target, options=options)
        return grpc.aio.secure_channel(target, self.tls.channel_credentials(), options=options)

    def client(
        self, target: str, service: descriptor.ServiceDescriptor, *, client_spans: bool = True
    ) -> RemoteServiceClient:
        """A remote client for ``service`` at ``target``, calling with the pool's token."""
        return RemoteServiceClient(
            self.get(target), service, token=self.token, target=target, client_spans=client_spans
        )

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
    "DEFAULT_RETRY",
    "MIN_BACKOFF_S",
    "RETRIED_SERVICES",
    "ChannelPool",
    "RetryPolicy",
    "outgoing",
    "LocalServiceClient",
    "RemoteServiceClient",
    "ServiceClient",
]
