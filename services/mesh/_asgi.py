"""An ASGI app served by uvicorn inside the caller's event loop (no thread, no new loop).

The gateway and the metrics endpoints both run this way: bound before
``serve_asgi`` returns (a port clash raises ``OSError`` at once; port 0 picks a
free port), signals left to the embedding process, stopped gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections.abc import Iterator
from typing import Literal

import uvicorn
from starlette.types import ASGIApp


class _EmbeddedServer(uvicorn.Server):
    """uvicorn that leaves signals to its host process and says when it is up."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process that embeds the server owns SIGINT/SIGTERM; uvicorn's own
        # handlers would replace the event loop's.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


class AsgiServer:
    """An app being served: ``port`` is the bound one; ``stop`` lets requests finish."""

    def __init__(
        self, server: _EmbeddedServer, task: asyncio.Task[None], host: str, port: int
    ) -> None:
        self.host = host
        self.port = port
        self._server = server
        self._task = task

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def wait(self) -> None:
        """Block until the server has stopped (after ``stop`` or on failure)."""
        await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Stop accepting, let requests in progress finish (within the grace); idempotent."""
        self._server.should_exit = True
        await asyncio.shield(self._task)


async def serve_asgi(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    grace_s: float,
    what: str,
    lifespan: Literal["auto", "on", "off"] = "auto",
) -> AsgiServer:
    """Serve ``app`` on ``host:port``; ``what`` names it in errors ("the gateway")."""
    sock = _bind(host, port, what)
    config = uvicorn.Config(
        app,
        log_config=None,  # the embedding process configures logging
        access_log=False,
        lifespan=lifespan,
        timeout_graceful_shutdown=math.ceil(grace_s),
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(_serve(server, sock, what), name=f"{what} {host}:{port}")
    ready = asyncio.ensure_future(server.ready.wait())
    try:
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
    if not server.ready.is_set():
        sock.close()
        await task  # raises the startup failure
        raise RuntimeError(f"{what} stopped during startup")
    return AsgiServer(server, task, host, int(sock.getsockname()[1]))


async def _serve(server: uvicorn.Server, sock: socket.socket, what: str) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:  # uvicorn exits on startup failures; keep the loop alive
        raise RuntimeError(f"{what} failed to start (exit code {exc.code})") from None


def _bind(host: str, port: int, what: str) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise OSError(
            err.errno, f"cannot bind the port of {what}, {host}:{port}: {err.strerror or err}"
        ) from err
    return sock


__all__ = ["AsgiServer", "serve_asgi"]
