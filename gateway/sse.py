"""Server-streaming RPCs as Server-Sent Events.

Each response message is one event (``id:`` and ``data: <json>``); a
``MeshError`` mid-stream is an ``event: error`` carrying the Status JSON and
ends the stream; a comment line keeps idle connections alive. The upstream
iterator is read one message ahead at most and is always closed: when it
ends, when it fails, when the client goes away and when the gateway shuts down.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar, cast

from starlette.types import Message, Receive, Scope, Send

from meshwright.gateway.status import error_response, status_json
from meshwright.mesh.errors import Cancelled, Internal, MeshError, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

HEARTBEAT = b": keepalive\n\n"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
]


def format_event(data: Any, *, event_id: str | None = None, event: str | None = None) -> bytes:
    """One SSE event; ``data`` is sent as compact JSON on a single line."""
    lines = []
    if event is not None:
        lines.append(f"event: {event}")
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False))
    return ("\n".join(lines) + "\n\n").encode()


class StreamSet:
    """The gateway's open event streams; ``close`` ends them all (for shutdown).

    Streams still open when the server stops would hold its graceful shutdown
    until they end by themselves, which for a watch is never.
    """

    def __init__(self) -> None:
        self._closing = asyncio.Event()

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closing.is_set()

    def close(self) -> None:
        """End every open stream and refuse new ones."""
        self._closing.set()

    async def wait_closed(self) -> None:
        """Block until ``close`` is called."""
        await self._closing.wait()


class _End:
    pass


_END = _End()


class EventStream(Generic[T]):
    """An ASGI response that relays ``upstream`` as Server-Sent Events.

    An error before the first message (or before ``header_wait_s``) is sent
    as an ordinary JSON error response with its HTTP status, so a watch of a
    resource that does not exist is a 404, not an empty stream.
    """

    def __init__(
        self,
        upstream: AsyncIterator[T],
        *,
        render: Callable[[T], Any],
        event_id: Callable[[T, int], str],
        streams: StreamSet,
        heartbeat_s: float = 15.0,
        header_wait_s: float = 0.5,
    ) -> None:
        self._upstream = upstream
        self._render = render
        self._event_id = event_id
        self._streams = streams
        self._heartbeat_s = heartbeat_s
        self._header_wait_s = header_wait_s
        self._step: asyncio.Future[T]  # the pending read of upstream, set per call

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = asyncio.ensure_future(_until_disconnect(receive))
        closing = asyncio.ensure_future(self._streams.wait_closed())
        self._step = asyncio.ensure_future(_next(self._upstream))
        try:
            await asyncio.wait(
                {self._step, disconnected, closing},
                timeout=self._header_wait_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if disconnected.done():
                return
            if closing.done():
                gone = Unavailable("the gateway is shutting down")
                await error_response(gone)(scope, receive, send)
                return
            if self._step.done():
                first = _outcome(self._step)
                if isinstance(first, MeshError):
                    await error_response(first)(scope, receive, send)
                    return
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            if await self._relay(disconnected, closing, send):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away while we wrote
        finally:
            disconnected.cancel()
            closing.cancel()
            await _close(self._step, self._upstream)

    async def _relay(
        self, disconnected: asyncio.Future[None], closing: asyncio.Future[None], send: Send
    ) -> bool:
        """Send events until the stream ends (True) or the client left (False)."""
        count = 0
        while True:
            if not self._step.done():
                await asyncio.wait(
                    {cast(asyncio.Future[Any], self._step), disconnected, closing},
                    timeout=self._heartbeat_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if disconnected.done():
                    return False
                if closing.done():
                    return True
                if not self._step.done():
                    await _chunk(send, HEARTBEAT)
                    continue
            outcome = _outcome(self._step)
            if isinstance(outcome, _End):
                return True
            if isinstance(outcome, MeshError):
                await _chunk(send, format_event(status_json(outcome), event="error"))
                return True
            count += 1
            try:
                chunk = format_event(self._render(outcome), event_id=self._event_id(outcome, count))
            except Exception:
                log.exception("cannot render a stream message")
                failed = status_json(Internal("internal error"))
                await _chunk(send, format_event(failed, event="error"))
                return True
            await _chunk(send, chunk)
            self._step = asyncio.ensure_future(_next(self._upstream))


async def _next(upstream: AsyncIterator[T]) -> T:
    return await upstream.__anext__()


def _outcome(step: asyncio.Future[T]) -> T | _End | MeshError:
    if step.cancelled():
        return Cancelled("the upstream stream was cancelled")
    err = step.exception()
    if err is None:
        return step.result()
    if isinstance(err, StopAsyncIteration):
        return _END
    if isinstance(err, MeshError):
        return err
    log.error("stream failed", exc_info=err)
    return Internal("internal error")


async def _chunk(send: Send, body: bytes) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": True})


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _close(step: asyncio.Future[Any], upstream: AsyncIterator[Any]) -> None:
    """Stop reading ``upstream`` and close it, so the RPC behind it is cancelled."""
    if not step.done():
        step.cancel()
        await asyncio.wait({step})
    elif not step.cancelled():
        step.exception()  # retrieved, so asyncio does not log it as never retrieved
    aclose = getattr(upstream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            log.exception("closing an upstream stream failed")


__all__ = ["HEARTBEAT", "EventStream", "StreamSet", "format_event"]
