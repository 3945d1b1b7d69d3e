"""Heartbeats over one long-lived ``StreamHeartbeats`` stream instead of a call each.

A unary call costs a Python gRPC server several times what one message on an
open stream does (``bench/grpc_streams.py``), and heartbeats are most of what a
registry of thousands of agents serves. ``HeartbeatStream`` keeps one stream
open, sends each heartbeat on it and waits for its answer (the registry answers
in order), opens it again after it broke, and retires it after ``max_age_s`` so
that agents spread over registry replicas that joined since. A registry that
does not serve the RPC (an older one) is remembered as ``unsupported``; the
caller then heartbeats by unary calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from meshwright.mesh.client import ServiceClient
from meshwright.mesh.errors import (
    DeadlineExceeded,
    MeshError,
    Unavailable,
    Unimplemented,
    from_status_proto,
)
from meshwright.registry.v1 import registry_pb2

METHOD = "StreamHeartbeats"
DEFAULT_MAX_AGE_S = 600.0
"""How long one stream is used before a fresh one is opened (and balanced afresh)."""


class HeartbeatStream:
    """Sends heartbeats one at a time over a ``StreamHeartbeats`` stream it keeps open."""

    def __init__(
        self,
        registry: ServiceClient,
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not max_age_s > 0:
            raise ValueError(f"max_age_s must be > 0, not {max_age_s}")
        self._registry = registry
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._outbox: asyncio.Queue[registry_pb2.StreamHeartbeatsRequest | None] | None = None
        self._answers: AsyncIterator[Any] | None = None
        self._opened_at = 0.0
        self.unsupported = False
        """The registry does not serve ``StreamHeartbeats``: heartbeat by unary calls."""
        self.opened = 0
        """Streams opened so far."""

    @property
    def is_open(self) -> bool:
        return self._answers is not None

    async def beat(
        self, request: registry_pb2.HeartbeatRequest, *, timeout: float
    ) -> registry_pb2.HeartbeatResponse:
        """Send one heartbeat and return its answer; raises what ``Heartbeat`` would.

        ``timeout`` bounds the wait for the answer: past it the stream is closed
        (the next beat opens another) and ``DeadlineExceeded`` raised. A broken
        stream raises what broke it (``Unavailable`` if it just ended); an
        ``Unimplemented`` one sets ``unsupported``.
        """
        async with self._lock:
            if self.is_open and self._clock() - self._opened_at >= self._max_age_s:
                await self._close()
            answers = self._answers if self._answers is not None else self._open()
            assert self._outbox is not None
            self._outbox.put_nowait(registry_pb2.StreamHeartbeatsRequest(heartbeat=request))
            try:
                async with asyncio.timeout(timeout):
                    reply = await anext(answers)
            except TimeoutError:
                await self._close()
                raise DeadlineExceeded(
                    f"the registry sent no heartbeat answer within {timeout:.3g}s"
                ) from None
            except StopAsyncIteration:
                await self._close()
                raise Unavailable("the registry ended the heartbeat stream") from None
            except Unimplemented:
                self.unsupported = True
                await self._close()
                raise
            except MeshError:
                await self._close()
                raise
            except asyncio.CancelledError:
                self._forget()  # the cancellation ended the stream's generator too
                raise
            if reply.HasField("error"):
                raise from_status_proto(reply.error)
            return reply.heartbeat

    def _open(self) -> AsyncIterator[Any]:
        outbox: asyncio.Queue[registry_pb2.StreamHeartbeatsRequest | None] = asyncio.Queue()
        self._outbox = outbox
        self._answers = self._registry.exchange(METHOD, _drain(outbox))
        self._opened_at = self._clock()
        self.opened += 1
        return self._answers

    def _forget(self) -> AsyncIterator[Any] | None:
        answers, self._answers = self._answers, None
        if self._outbox is not None:
            self._outbox.put_nowait(None)  # half-close: no more heartbeats on this one
            self._outbox = None
        return answers

    async def _close(self) -> None:
        answers = self._forget()
        if answers is not None:
            aclose = getattr(answers, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(MeshError):
                    await aclose()

    async def close(self) -> None:
        """Close the stream (a later ``beat`` opens another)."""
        async with self._lock:
            await self._close()


async def _drain(
    outbox: asyncio.Queue[registry_pb2.StreamHeartbeatsRequest | None],
) -> AsyncIterator[registry_pb2.StreamHeartbeatsRequest]:
    while (item := await outbox.get()) is not None:
        yield item


__all__ = ["DEFAULT_MAX_AGE_S", "HeartbeatStream"]
