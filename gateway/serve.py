"""Running the gateway under uvicorn inside the caller's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from meshwright.gateway.sse import StreamSet

log = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn that leaves signals to its host process and says when it is up."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process that embeds the gateway owns SIGINT/SIGTERM; uvicorn's
        # own handlers would replace the event loop's.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


class GatewayHandle:
    """A gateway being served; ``stop`` shuts it down gracefully."""

    def __init__(
        self,
        app: ASGIApp,
        server: _EmbeddedServer,
        task: asyncio.Task[None],
        host: str,
        port: int,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        """The bound port (the real one when 0 was asked for)."""
        self._server = server
        self._task = task

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def wait(self) -> None:
        """Block until the server has stopped (after ``stop`` or on failure)."""
        await asyncio.shield(self._task)

    async def stop(self) -> None:
        """End open event streams, stop accepting, let requests finish."""
        streams = getattr(getattr(self.app, "state", None), "event_streams", None)
        if isinstance(streams, StreamSet):
            streams.close()
        self._server.should_exit = True
        await asyncio.shield(self._task)


async def start_gateway(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, grace_s: float = 5.0
) -> GatewayHandle:
    """Serve ``app`` with uvicorn in the running event loop (no thread, no new loop).

    Binds before returning, so a port clash raises ``OSError`` here; port 0
    picks a free port (``handle.port``). ``grace_s`` bounds how long ``stop``
    waits for in-flight requests.
    """
    sock = _bind(host, port)
    config = uvicorn.Config(
        app,
        log_config=None,  # the embedding process configures logging
        access_log=False,
        timeout_graceful_shutdown=math.ceil(grace_s),
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(_serve(server, sock), name=f"gateway {host}:{port}")
    ready = asyncio.ensure_future(server.ready.wait())
    try:
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
    if not server.ready.is_set():
        sock.close()
        await task  # raises the startup failure
        raise RuntimeError("the gateway stopped during startup")
    bound = int(sock.getsockname()[1])
    log.info("REST gateway on http://%s:%d", host, bound)
    return GatewayHandle(app, server, task, host, bound)


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:  # uvicorn exits on startup failures; keep the loop alive
        raise RuntimeError(f"the gateway failed to start (exit code {exc.code})") from None


def _bind(host: str, port: int) -> socket.socket:
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
            err.errno, f"cannot bind HTTP port {host}:{port}: {err.strerror or err}"
        ) from err
    return sock


__all__ = ["GatewayHandle", "start_gateway"]
