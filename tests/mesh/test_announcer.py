"""The ServiceAnnouncer against the Consul double: what it registers, and that it puts
back a registration the Consul agent lost (a node's agent replaced without its data)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from meshwright.mesh.discovery import ServiceAnnouncer, open_consul
from tests.conftest import eventually
from tests.consul_double import ConsulDouble, ConsulDoubleConfig


@pytest.fixture
async def double() -> AsyncIterator[ConsulDouble]:
    d = ConsulDouble(ConsulDoubleConfig(first_check_at_once=True, min_check_interval_s=0.1))
    await d.start()
    try:
        yield d
    finally:
        await d.stop()


async def test_a_lost_registration_is_put_back_and_a_present_one_left_alone(
    double: ConsulDouble,
) -> None:
    consul = open_consul(double.url)
    try:
        announcer = ServiceAnnouncer(consul, check_interval_s=1.0)
        first = await announcer.announce("workflow", "127.0.0.1:50061")
        second = await announcer.announce("gateway", "127.0.0.1:8080", http_url="http://x:8080")
        assert set(await consul.agent.services()) == {first, second}
        assert await announcer.reannounce_missing() == []  # nothing lost: nothing written

        await consul.agent.service.deregister(first)  # the agent forgot it
        assert await announcer.reannounce_missing() == [first]
        services = await consul.agent.services()
        assert services[first]["Port"] == 50061 and services[first]["Tags"] == [
            "meshwright",
            "workflow",
        ]
        assert announcer.reannounced == 1

        # The upkeep does it by itself, every interval, until the announcer withdraws.
        announcer.start_upkeep(0.05)
        await consul.agent.service.deregister(second)
        await eventually(lambda: _has(consul, second), timeout=5)
        await announcer.withdraw_all()
        assert await consul.agent.services() == {}
        await asyncio.sleep(0.2)  # no upkeep after a withdrawal: nothing comes back
        assert await consul.agent.services() == {}
    finally:
        await consul.close()


async def _has(consul: object, service_id: str) -> bool:
    return service_id in await consul.agent.services()  # type: ignore[attr-defined]
