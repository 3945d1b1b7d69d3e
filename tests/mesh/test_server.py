"""MeshServer: error mapping to google.rpc.Status, health, local/remote clients alike."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import (
    FieldViolation,
    InvalidArgument,
    LocalServiceClient,
    MeshServer,
    NotFound,
    RemoteServiceClient,
)
from meshwright.mesh.errors import FailedPrecondition, MeshError
from meshwright.mesh.security import insecure_pipeline

SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]


class LeaseMismatch(FailedPrecondition):
    reason = "TEST_LEASE_MISMATCH"


class EchoAgent:
    """A minimal AgentService implementation that exercises each error path."""

    async def GetAgentCard(self, request: Any) -> agent_pb2.GetAgentCardResponse:
        return agent_pb2.GetAgentCardResponse(card=agent_pb2.AgentCard(name="echo"))

    async def ExecuteTask(self, request: Any) -> agent_pb2.ExecuteTaskResponse:
        if not request.task_id:
            raise InvalidArgument(
                "bad request",
                violations=[
                    FieldViolation("task_id", "is required"),
                    FieldViolation("skill", "is required"),
                ],
            )
        if request.skill == "missing":
            raise NotFound(f"no skill {request.skill}")
        if request.skill == "lease":
            raise LeaseMismatch("lease changed", metadata={"agent_id": "a1"})
        return agent_pb2.ExecuteTaskResponse(task=agent_pb2.Task(task_id=request.task_id))

    async def StreamTask(self, request: Any) -> AsyncIterator[Any]:
        for i in range(3):
            yield agent_pb2.StreamTaskResponse(status_update=agent_pb2.TaskStatus(message=str(i)))
        raise NotFound("stream ended badly")

    async def CancelTask(self, request: Any) -> agent_pb2.CancelTaskResponse:
        if request.task_id == "bug":
            raise RuntimeError("secret detail")
        raise NotFound(request.task_id)


@pytest.fixture
async def served() -> AsyncIterator[tuple[MeshServer, grpc.aio.Channel]]:
    server = MeshServer(pipeline=insecure_pipeline(), port=0)
    server.add(EchoAgent(), SERVICE)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield server, channel
    finally:
        await channel.close()
        await server.stop(0)


async def test_binds_port_zero_and_serves_health(served: Any) -> None:
    server, channel = served
    assert server.port > 0
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE.full_name))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("remote", [True, False])
async def test_errors_are_the_same_local_and_remote(served: Any, remote: bool) -> None:
    _, channel = served
    client = (
        RemoteServiceClient(channel, SERVICE)
        if remote
        else LocalServiceClient(EchoAgent(), SERVICE, insecure_pipeline())
    )
    with pytest.raises(InvalidArgument) as bad:
        await client.call("ExecuteTask", agent_pb2.ExecuteTaskRequest())
    assert [v.field for v in bad.value.violations] == ["task_id", "skill"]
    assert bad.value.reason == "INVALID_ARGUMENT"

    with pytest.raises(NotFound) as missing:
        await client.call("ExecuteTask", agent_pb2.ExecuteTaskRequest(task_id="t", skill="missing"))
    assert missing.value.message == "no skill missing"

    with pytest.raises(LeaseMismatch) as lease:
        await client.call("ExecuteTask", agent_pb2.ExecuteTaskRequest(task_id="t", skill="lease"))
    assert lease.value.metadata == {"agent_id": "a1"}

    ok = await client.call("ExecuteTask", agent_pb2.ExecuteTaskRequest(task_id="t1", skill="x"))
    assert ok.task.task_id == "t1"

    seen = []
    with pytest.raises(NotFound):
        async for item in client.stream("StreamTask", agent_pb2.StreamTaskRequest()):
            seen.append(item.status_update.message)
    assert seen == ["0", "1", "2"]


async def test_rich_status_on_the_wire(served: Any) -> None:
    """A plain grpc client sees code, ErrorInfo and BadRequest in the trailers."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    _, channel = served
    call = channel.unary_unary(
        f"/{SERVICE.full_name}/ExecuteTask",
        request_serializer=agent_pb2.ExecuteTaskRequest.SerializeToString,
        response_deserializer=agent_pb2.ExecuteTaskResponse.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(agent_pb2.ExecuteTaskRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(err.value)  # type: ignore[arg-type]
    assert status is not None
    kinds = {d.TypeName() for d in status.details}
    assert kinds == {"google.rpc.ErrorInfo", "google.rpc.BadRequest"}
    for d in status.details:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
            assert (info.reason, info.domain) == ("INVALID_ARGUMENT", "meshwright.dev")


async def test_port_clash_fails_loudly(served: Any) -> None:
    server, _ = served
    other = MeshServer(pipeline=insecure_pipeline(), port=server.port)
    other.add(EchoAgent(), SERVICE)
    with pytest.raises(OSError, match="cannot bind gRPC port"):
        await other.start()


def test_unknown_reason_falls_back_to_code_class() -> None:
    from meshwright.mesh.errors import from_status_proto, to_status_proto

    status = to_status_proto(NotFound("gone", reason="SOMETHING_ELSE"))
    back = from_status_proto(status)
    assert type(back) is NotFound and back.reason == "SOMETHING_ELSE"
    assert isinstance(back, MeshError)


async def test_unexpected_exception_is_internal_without_detail(served: Any) -> None:
    from meshwright.mesh.errors import Internal

    _, channel = served
    client = RemoteServiceClient(channel, SERVICE)
    with pytest.raises(Internal) as err:
        await client.call("CancelTask", agent_pb2.CancelTaskRequest(task_id="bug"))
    assert err.value.message == "internal error"
    assert "secret" not in str(err.value)


async def test_a_burst_past_grpcs_default_pending_limit_is_served_not_cancelled() -> None:
    # gRPC core cancels (CANCELLED, no details) calls that arrive while more than
    # 1,000 wait for the application to take them: a burst of heartbeats did that.
    server = MeshServer(pipeline=insecure_pipeline(), port=0)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            async def check() -> str:
                try:
                    await stub.Check(health_pb2.HealthCheckRequest(), timeout=30)
                except grpc.aio.AioRpcError as err:
                    return err.code().name
                return "OK"

            outcomes = await asyncio.gather(*(check() for _ in range(3000)))
        assert collections.Counter(outcomes) == {"OK": 3000}
    finally:
        await server.stop(0)
