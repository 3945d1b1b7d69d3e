"""Running the gateway under uvicorn inside the caller's event loop."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp

from meshwright.gateway.sse import StreamSet
from meshwright.mesh._asgi import AsgiServer, serve_asgi

log = logging.getLogger(__name__)


class GatewayHandle:
    """A gateway being served; ``stop`` shuts it down gracefully."""

    def __init__(self, app: ASGIApp, server: AsgiServer, host: str) -> None:
        self.app = app
        self.host = host
        self.port = server.port
        """The bound port (the real one when 0 was asked for)."""
        self._server = server

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080``."""
        return self._server.url

    async def wait(self) -> None:
        """Block until the server has stopped (after ``stop`` or on failure)."""
        await self._server.wait()

    async def stop(self) -> None:
        """End open event streams, stop accepting, let requests finish."""
        streams = getattr(getattr(self.app, "state", None), "event_streams", None)
        if isinstance(streams, StreamSet):
            streams.close()
        await self._server.stop()


async def start_gateway(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, grace_s: float = 5.0
) -> GatewayHandle:
    """Serve ``app`` with uvicorn in the running event loop (no thread, no new loop).

    Binds before returning, so a port clash raises ``OSError`` here; port 0
    picks a free port (``handle.port``). ``grace_s`` bounds how long ``stop``
    waits for in-flight requests.
    """
    server = await serve_asgi(app, host=host, port=port, grace_s=grace_s, what="the gateway")
    log.info("REST gateway on http://%s:%d", host, server.port)
    return GatewayHandle(app, server, host)


__all__ = ["GatewayHandle", "start_gateway"]
