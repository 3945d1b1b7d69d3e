"""The one call pipeline every call passes, over gRPC, through the gateway or in-process.

In order: authentication (bearer JWT), rate limit (per principal), input
limits, authorization (the RPC's declared policy, ownership included), the
per-call context (caller, deadline, metadata) domain code reads, the deadline
itself, and error mapping (anything that is not a ``MeshError`` becomes
INTERNAL, logged here, never leaked). ``MeshServer`` adapts it to grpc.aio;
``LocalServiceClient`` calls through it in-process, so the embedded
``meshwright up`` has no shortcut around any step. Every call served is a
SERVER span (``mesh.telemetry``, when tracing is on) whose parent is the
caller's trace context; metrics and access logs hang on ``Pipeline.observers``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf import message

from meshwright.mesh import telemetry
from meshwright.mesh._descriptors import MethodInfo
from meshwright.mesh.auth import (
    ANONYMOUS_ADMIN,
    Principal,
    Role,
    TokenMissing,
    TokenVerifier,
    bearer_token,
)
from meshwright.mesh.context import CallContext, enter, serving
from meshwright.mesh.errors import (
    DeadlineExceeded,
    Internal,
    MeshError,
    to_status_proto,
)
from meshwright.mesh.limits import DEFAULT_LIMITS, InputLimits, RateLimiter, check_request
from meshwright.mesh.policy import Authorizer, Policy, policy_of

log = logging.getLogger(__name__)

Metadata = Sequence[tuple[str, str]]


class CallObserver(Protocol):
    """Told about every call the pipeline finishes (metrics and tracing hang here)."""

    def finished(
        self, call: CallContext | None, method: str, error: MeshError | None, seconds: float
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One RPC as one server serves it: its method and the policy in force there."""

    info: MethodInfo
    policy: Policy

    @classmethod
    def of(cls, info: MethodInfo, *, mesh: bool = False) -> Endpoint:
        return cls(info, policy_of(info.descriptor, mesh=mesh))


class Pipeline:
    """Authentication, limits, authorization, context, deadline and errors for every call."""

    def __init__(
        self,
        *,
        verifier: TokenVerifier | None,
        authorizer: Authorizer | None = None,
        limiter: RateLimiter | None = None,
        verify_limiter: RateLimiter | None = None,
        limits: InputLimits = DEFAULT_LIMITS,
    ) -> None:
        """``verifier`` None turns authentication off: every caller is an anonymous admin
        (``--insecure-no-auth``; the composition root logs a warning)."""
        self.verifier = verifier
        self.authorizer = authorizer or Authorizer()
        self.limiter = limiter
        self.verify_limiter = verify_limiter
        """Signature checks per remote host (tokens not in the verifier's cache)."""
        self.limits = limits
        self.observers: list[CallObserver] = []

    @property
    def auth_enabled(self) -> bool:
        return self.verifier is not None

    def authenticate(self, metadata: Metadata, peer: str = "local") -> Principal:
        """The caller a call's metadata names; ``Unauthenticated`` when it names none.

        A token not verified before costs a signature check; a remote peer gets
        only as many of those as ``verify_limiter`` allows per host
        (``RATE_LIMITED``), so a flood of forged tokens cannot buy CPU. Cached
        tokens are not counted.
        """
        if self.verifier is None:
            return ANONYMOUS_ADMIN
        token = bearer_token(metadata)
        if token is None:
            raise TokenMissing("this call needs a bearer token (authorization: Bearer <jwt>)")
        if (
            self.verify_limiter is not None
            and peer != "local"
            and not self.verifier.is_cached(token)
        ):
            self.verify_limiter.take(_host(peer))
        return self.verifier.verify(token)

    async def admit(
        self,
        endpoint: Endpoint,
        request: message.Message,
        *,
        metadata: Metadata,
        timeout: float | None,
        peer: str,
        principal: Principal | None = None,
    ) -> CallContext:
        """Every check before the handler runs; the call's context when all pass.

        ``principal``: the caller, when the transport authenticated it already.
        """
        if principal is None:
            principal = self.authenticate(metadata, peer)
        if self.limiter is not None:
            key = self._rate_key(principal, peer)
            if key is not None:
                self.limiter.take(key)
        check_request(request, self.limits)
        if self.verifier is not None:  # with auth off nobody is told apart: no policy applies
            await self.authorizer.authorize(endpoint.policy, principal, request)
        return CallContext(
            method=endpoint.info.path,
            principal=principal,
            deadline=None if timeout is None else time.monotonic() + timeout,
            metadata=tuple((k, v) for k, v in metadata if k != "authorization"),
            peer=peer,
        )

    def _rate_key(self, principal: Principal, peer: str) -> str | None:
        """Whose bucket a call spends: the principal's; with auth off (nobody is told
        apart) the peer's. The mesh's own traffic is not limited: service calls, and
        in-process calls with auth off."""
        if self.verifier is None:
            return None if peer == "local" else f"peer:{_host(peer)}"
        if principal.role is Role.SERVICE:
            return None
        return principal.name

    async def unary(
        self,
        endpoint: Endpoint,
        handler: Callable[[Any], Awaitable[Any]],
        request: message.Message,
        *,
        metadata: Metadata = (),
        timeout: float | None = None,
        peer: str = "local",
        principal: Principal | None = None,
        transport_deadline: bool = False,
    ) -> Any:
        """Run a unary handler through every step; raises only ``MeshError``.

        ``transport_deadline``: the transport enforces the deadline itself (gRPC
        cancels the handler when it passes), so no timer of ours is needed.
        """
        t0 = time.perf_counter()
        call: CallContext | None = None
        error: MeshError | None = None
        span = telemetry.start_server_span(endpoint.info.path, metadata, peer)
        token = telemetry.attach(span)
        try:
            call = await self.admit(
                endpoint,
                request,
                metadata=metadata,
                timeout=timeout,
                peer=peer,
                principal=principal,
            )
            if span is not None:
                span.set_attribute("enduser.id", call.principal.name)
            with serving(call):
                if timeout is None:
                    return await handler(request)
                if transport_deadline:
                    reply = await handler(request)
                else:
                    try:
                        async with asyncio.timeout(timeout):
                            reply = await handler(request)
                    except TimeoutError:
                        raise _late(endpoint, timeout) from None
                # A handler that swallowed the deadline's cancellation still answers late:
                # the caller has given up, so no half-true "success" is sent back.
                remaining = call.time_remaining()
                if remaining is not None and remaining <= 0:
                    raise _late(endpoint, timeout)
                return reply
        except MeshError as err:
            error = err
            raise
        except Exception as err:
            error = _unexpected(endpoint, err)
            raise error from None
        finally:
            telemetry.detach(token)
            telemetry.end_span(span, error)
            self._observe(call, endpoint, error, t0)

    async def stream(
        self,
        endpoint: Endpoint,
        handler: Callable[[Any], AsyncIterator[Any]],
        request: message.Message,
        *,
        metadata: Metadata = (),
        timeout: float | None = None,
        peer: str = "local",
        principal: Principal | None = None,
    ) -> AsyncIterator[Any]:
        """Run a server-streaming handler through every step; raises only ``MeshError``."""
        t0 = time.perf_counter()
        call: CallContext | None = None
        error: MeshError | None = None
        span = telemetry.start_server_span(endpoint.info.path, metadata, peer)
        try:
            call = await self.admit(
                endpoint,
                request,
                metadata=metadata,
                timeout=timeout,
                peer=peer,
                principal=principal,
            )
            # A stream is resumed by whoever iterates it, in their context; each
            # step runs in a context of its own that holds the call (and the span),
            # so domain code sees it on every resumption (and no contextvar token
            # crosses contexts: the span is set in that context, never attached here).
            ctx = contextvars.copy_context()
            ctx.run(enter, call)
            if span is not None:
                span.set_attribute("enduser.id", call.principal.name)
                ctx.run(telemetry.attach, span)
            items = ctx.run(handler, request)
            try:
                while True:
                    remaining = call.time_remaining()
                    if remaining is not None and remaining <= 0:
                        raise DeadlineExceeded(f"{endpoint.info.name} exceeded its deadline")
                    step: asyncio.Task[Any] = asyncio.get_running_loop().create_task(
                        _next(items), context=ctx
                    )
                    try:
                        async with asyncio.timeout(remaining):
                            item = await step
                    except StopAsyncIteration:
                        return
                    except TimeoutError:
                        raise DeadlineExceeded(
                            f"{endpoint.info.name} exceeded its deadline"
                        ) from None
                    yield item
            finally:
                aclose = getattr(items, "aclose", None)
                if aclose is not None:
                    await asyncio.get_running_loop().create_task(aclose(), context=ctx)
        except MeshError as err:
            error = err
            raise
        except (GeneratorExit, asyncio.CancelledError):
            if span is not None:
                span.set_attribute("meshwright.outcome", "cancelled")
            raise
        except Exception as err:
            error = _unexpected(endpoint, err)
            raise error from None
        finally:
            telemetry.end_span(span, error)
            self._observe(call, endpoint, error, t0)

    async def each(
        self,
        endpoint: Endpoint,
        handler: Callable[[Any], Awaitable[Any]],
        requests: AsyncIterator[message.Message | MeshError],
        *,
        metadata: Metadata = (),
        timeout: float | None = None,
        peer: str = "local",
        transport_deadline: bool = False,
    ) -> AsyncIterator[Any]:
        """Run a bidirectional stream of unary exchanges: one response per request, in order.

        Every request passes every step of ``unary`` (rate limit, input limits,
        policy, context, errors); a ``MeshError`` of one request (or a
        ``MeshError`` item: a request the transport could not decode) is answered
        by a response whose ``error`` holds its ``google.rpc.Status``, and the
        stream goes on. The caller is authenticated again before each request
        (a cache lookup for a token verified before), so the stream ends
        ``Unauthenticated`` once its token expires. ``timeout`` bounds the whole
        stream. Raises only ``MeshError``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise DeadlineExceeded(f"{endpoint.info.name} exceeded its deadline")
                try:
                    if remaining is None or transport_deadline:
                        request = await anext(requests)
                    else:  # an idle stream ends at its deadline too
                        async with asyncio.timeout(remaining):
                            request = await anext(requests)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise DeadlineExceeded(f"{endpoint.info.name} exceeded its deadline") from None
                principal = self.authenticate(metadata, peer)  # raises: the stream ends
                remaining = None if deadline is None else deadline - time.monotonic()
                try:
                    if isinstance(request, MeshError):
                        raise request
                    reply = await self.unary(
                        endpoint,
                        handler,
                        request,
                        metadata=metadata,
                        timeout=remaining,
                        peer=peer,
                        principal=principal,
                        transport_deadline=transport_deadline,
                    )
                except MeshError as err:
                    if deadline is not None and time.monotonic() >= deadline:
                        # The stream's own deadline passed: it ends here.
                        raise DeadlineExceeded(
                            f"{endpoint.info.name} exceeded its deadline"
                        ) from None
                    reply = endpoint.info.response_type()
                    # Exchanges carry a google.rpc.Status ``error`` field (checked when the
                    # service is added: server.py); set by name, as the type is generic.
                    getattr(reply, "error").CopyFrom(to_status_proto(err))  # noqa: B009
                yield reply
        except MeshError:
            raise
        except (GeneratorExit, asyncio.CancelledError):
            raise
        except Exception as err:  # the request iterator failed: a bug, or a broken peer
            raise _unexpected(endpoint, err) from None

    def _observe(
        self, call: CallContext | None, endpoint: Endpoint, error: MeshError | None, t0: float
    ) -> None:
        if not self.observers:
            return
        seconds = time.perf_counter() - t0
        for observer in self.observers:
            try:
                observer.finished(call, endpoint.info.path, error, seconds)
            except Exception:  # an observer must never fail a call
                log.exception("call observer failed")


def _late(endpoint: Endpoint, timeout: float) -> DeadlineExceeded:
    return DeadlineExceeded(f"{endpoint.info.name} exceeded its {timeout:.3f}s deadline")


def _host(peer: str) -> str:
    # "ipv4:127.0.0.1:5123" -> "ipv4:127.0.0.1": one bucket per host, not per connection.
    return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer


async def _next(items: AsyncIterator[Any]) -> Any:
    return await anext(items)


def _unexpected(endpoint: Endpoint, err: Exception) -> MeshError:
    # A bug: log it here, and tell the caller no more than that it happened.
    log.error("unexpected error in %s", endpoint.info.path, exc_info=err)
    return Internal("internal error")


__all__ = ["CallObserver", "Endpoint", "Pipeline"]
