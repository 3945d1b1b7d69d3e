"""start_gateway: uvicorn in the caller's loop, port 0, clean stop with open streams."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from meshwright.gateway import create_app, start_gateway
from meshwright.mesh import LocalServiceClient
from meshwright.mesh.security import insecure_pipeline
from tests.gateway.support import AGENT, RestAgent


async def test_port_zero_clash_and_stop_ends_open_streams() -> None:
    agent = RestAgent()
    app = create_app([LocalServiceClient(agent, AGENT, insecure_pipeline())], heartbeat_s=60)
    gateway = await start_gateway(app, port=0)
    assert gateway.port > 0 and gateway.url == f"http://127.0.0.1:{gateway.port}"
    with pytest.raises(OSError):
        await start_gateway(create_app([]), port=gateway.port)

    async with httpx.AsyncClient(base_url=gateway.url) as http:
        opened = asyncio.Event()

        async def watch() -> str:
            async with http.stream(
                "POST", "/v1/agent/tasks:stream", json={"taskId": "open", "skill": "hang"}
            ) as r:
                opened.set()
                await r.aread()
                return "ended"

        reader = asyncio.create_task(watch())
        await asyncio.wait_for(opened.wait(), 5)
        started = time.monotonic()
        await gateway.stop()
        assert time.monotonic() - started < 2  # not the graceful-shutdown timeout
        assert await asyncio.wait_for(reader, 5) == "ended"
    assert agent.stream_closed == ["open"]
    await gateway.stop()  # idempotent


async def test_extra_routes_come_before_derived_routes() -> None:
    async def page(request: Request) -> Response:
        return PlainTextResponse("dashboard")

    app = create_app(
        [LocalServiceClient(RestAgent(), AGENT, insecure_pipeline())],
        extra_routes=[Route("/ui/", page)],
    )
    gateway = await start_gateway(app)
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            assert (await http.get("/ui/")).text == "dashboard"
            assert (await http.get("/v1/agent/card")).status_code == 200
            assert (await http.get("/ui/other")).json()["code"] == 5
    finally:
        await gateway.stop()
