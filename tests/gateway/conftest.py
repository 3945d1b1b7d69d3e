"""One real stack for the package: MeshServer with test services, the gateway under uvicorn.

Started and stopped once: uvicorn's shutdown takes a few tenths of a second,
too long to pay per test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest_asyncio

from meshwright.gateway import create_app, start_gateway
from meshwright.mesh import MeshServer, RemoteServiceClient
from meshwright.mesh.security import insecure_pipeline
from tests.gateway.support import (
    AGENT,
    CORS_ORIGIN,
    HEARTBEAT_S,
    WORKFLOW,
    RestAgent,
    Stack,
    Workflows,
)


@pytest_asyncio.fixture(loop_scope="package", scope="package")
async def stack() -> AsyncIterator[Stack]:
    agent = RestAgent()
    server = MeshServer(pipeline=insecure_pipeline(), port=0)
    server.add(agent, AGENT)
    server.add(Workflows(), WORKFLOW)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    app = create_app(
        [RemoteServiceClient(channel, AGENT), RemoteServiceClient(channel, WORKFLOW)],
        cors_origins=[CORS_ORIGIN],
        heartbeat_s=HEARTBEAT_S,
    )
    gateway = await start_gateway(app, port=0)
    http = httpx.AsyncClient(base_url=gateway.url, timeout=5.0)
    try:
        yield Stack(http, gateway, server, agent, channel)
    finally:
        await http.aclose()
        await gateway.stop()
        await channel.close()
        await server.stop(0)
