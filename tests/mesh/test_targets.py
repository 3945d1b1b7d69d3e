"""Targets that list several replicas: calls reach a live one."""

from __future__ import annotations

import pytest

from meshwright.mesh import ChannelPool, RemoteServiceClient
from meshwright.mesh.balancer import BalancedClient
from meshwright.mesh.targets import service_client, split_targets
from meshwright.registry.v1 import registry_pb2
from tests.agent.conftest import start_mesh
from tests.agent.test_runtime import make_agent
from tests.conftest import eventually, free_port

REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]


def test_split_targets() -> None:
    assert split_targets("a:1") == ["a:1"]
    assert split_targets(" a:1 , b:2,, ") == ["a:1", "b:2"]
    assert split_targets(" , ") == []


async def test_one_address_is_direct_several_are_balanced() -> None:
    pool = ChannelPool()
    try:
        assert isinstance(service_client(pool, "127.0.0.1:1", REGISTRY), RemoteServiceClient)
        assert isinstance(service_client(pool, "127.0.0.1:1,127.0.0.1:2", REGISTRY), BalancedClient)
        with pytest.raises(ValueError, match="no address"):
            service_client(pool, " , ", REGISTRY)
    finally:
        await pool.close()


async def test_an_agent_given_two_registries_registers_through_the_live_one() -> None:
    server, registry = await start_mesh()
    dead = f"127.0.0.1:{free_port()}"  # nobody listens here
    runtime = await make_agent().start(
        f"{dead},{server.address}", lease_ttl_s=1.0, insecure_no_auth=True
    )
    try:

        async def registered_and_beating() -> bool:
            reg = runtime.registration
            return reg is not None and reg.registrations >= 1 and reg.heartbeats >= 3

        await eventually(registered_and_beating, timeout=10)
        agent = await registry.get_agent(runtime.agent_id)
        assert agent.state == registry_pb2.AGENT_STATE_ACTIVE
    finally:
        await runtime.stop()
        await registry.stop()
        await server.stop(0)
