"""ChannelPool's retry policy: gRPC's own retries (service config, gRFC A6), over real sockets.

The server is a bare grpc.aio server whose handlers fail with a scripted code
the first K times; it records each attempt and the ``grpc-previous-rpc-attempts``
header gRPC puts on retries, so the tests see that the channel (not a loop of
ours) retried, how often, and after what delays.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor

from meshwright.agent.v1 import agent_pb2
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh._descriptors import methods_of
from meshwright.mesh.client import (
    DEFAULT_RETRY,
    MIN_BACKOFF_S,
    RETRIED_SERVICES,
    ChannelPool,
    RetryPolicy,
)
from meshwright.mesh.errors import (
    Aborted,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    MeshError,
    Unavailable,
    to_grpc_status,
)
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.v1 import workflow_pb2

REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
ECONOMY = economy_pb2.DESCRIPTOR.services_by_name["EconomyService"]
WORKFLOW = workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"]
AGENT = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
Code = grpc.StatusCode

FAST = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.02)
"""Four attempts with delays of at most 10-20 ms: tests that count attempts stay quick."""


@dataclass
class Attempt:
    at: float
    """time.monotonic() when it arrived."""
    previous: int
    """The ``grpc-previous-rpc-attempts`` header (0 on a first attempt)."""


@dataclass
class Script:
    """What one method answers: ``fail_first`` failures with ``code``, then success."""

    fail_first: int = 0
    code: Code = Code.UNAVAILABLE
    rich: MeshError | None = None
    """Abort with this error's google.rpc.Status instead (as MeshServer does)."""
    attempts: list[Attempt] = field(default_factory=list)


class ScriptedServer:
    """A bare grpc.aio server answering every unary method of some services by script."""

    def __init__(self, *services: descriptor.ServiceDescriptor) -> None:
        self.scripts: dict[str, Script] = {}
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        for service in services:
            handlers = {}
            for name, info in methods_of(service).items():
                if info.server_streaming:
                    continue
                handlers[name] = grpc.unary_unary_rpc_method_handler(
                    self._handler(info.path, info.response_type),
                    request_deserializer=info.request_type.FromString,
                    response_serializer=info.response_type.SerializeToString,
                )
            self.server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service.full_name, handlers),)
            )
        self.address = ""

    def script(self, service: descriptor.ServiceDescriptor, method: str) -> Script:
        return self.scripts.setdefault(f"/{service.full_name}/{method}", Script())

    def _handler(self, path: str, response: Any) -> Callable[[Any, Any], Any]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            script = self.scripts.setdefault(path, Script())
            md = dict(context.invocation_metadata() or ())
            previous = int(md.get("grpc-previous-rpc-attempts", 0))
            script.attempts.append(Attempt(time.monotonic(), previous))
            if len(script.attempts) <= script.fail_first:
                if script.rich is not None:
                    await context.abort_with_status(to_grpc_status(script.rich))
                await context.abort(script.code, f"scripted failure {len(script.attempts)}")
            return response()

        return handle

    async def start(self) -> None:
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.address = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        await self.server.stop(0)


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    s = ScriptedServer(REGISTRY, ECONOMY, WORKFLOW, AGENT)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def pools() -> AsyncIterator[Callable[..., ChannelPool]]:
    made: list[ChannelPool] = []

    def make(**options: Any) -> ChannelPool:
        pool = ChannelPool(**options)
        made.append(pool)
        return pool

    try:
        yield make
    finally:
        for pool in made:
            await pool.close()


async def get_agent(pool: ChannelPool, address: str, *, timeout: float = 5.0) -> Any:
    client = pool.client(address, REGISTRY)
    return await client.call(
        "GetAgent", registry_pb2.GetAgentRequest(agent_id="a"), timeout=timeout
    )


# -- the policy and the service config -----------------------------------------------------


def test_the_default_policy_names_the_mesh_services_and_not_the_agents() -> None:
    assert RETRIED_SERVICES == (REGISTRY.full_name, ECONOMY.full_name, WORKFLOW.full_name)
    assert AGENT.full_name not in DEFAULT_RETRY.services
    p = DEFAULT_RETRY
    assert (p.max_attempts, p.initial_backoff_s, p.max_backoff_s, p.backoff_multiplier) == (
        4,
        0.1,
        2.0,
        2.0,
    )
    assert p.codes == ("UNAVAILABLE",)
    assert ChannelPool().retry is DEFAULT_RETRY


def test_the_service_config_is_one_method_config_per_policy() -> None:
    config = json.loads(
        RetryPolicy(initial_backoff_s=0.0123456789, max_backoff_s=2.5).service_config()
    )
    assert config == {
        "methodConfig": [
            {
                "name": [{"service": s} for s in RETRIED_SERVICES],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.012345679s",  # decimal, 9 digits at most
                    "maxBackoff": "2.5s",
                    "backoffMultiplier": 2.0,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }


def test_channel_options_carry_the_policy_and_enable_retries() -> None:
    options = dict(ChannelPool(retry=FAST).channel_options())
    assert options["grpc.enable_retries"] == 1
    assert options["grpc.service_config"] == FAST.service_config()
    bare = dict(ChannelPool(retry=None).channel_options())
    assert bare["grpc.enable_retries"] == 1  # transparent retries stay on
    assert "grpc.service_config" not in bare


@pytest.mark.parametrize("attempts", [2, 5])
def test_max_attempts_at_the_limits_is_accepted(attempts: int) -> None:
    config = json.loads(RetryPolicy(max_attempts=attempts).service_config())
    assert config["methodConfig"][0]["retryPolicy"]["maxAttempts"] == attempts


@pytest.mark.parametrize(
    "fields",
    [
        {"max_attempts": 1},
        {"max_attempts": 6},  # one past gRPC's cap
        {"initial_backoff_s": 0.0},
        {"initial_backoff_s": 0.0099},  # just under MIN_BACKOFF_S
        {"initial_backoff_s": math.nan},
        {"max_backoff_s": math.inf},
        {"backoff_multiplier": -1.0},
        {"initial_backoff_s": 3.0, "max_backoff_s": 2.0},
        {"codes": ()},
        {"codes": ("OK",)},
        {"codes": ("UNAVAILABLE", "NOT_A_CODE")},
        {"services": ()},
    ],
    ids=str,
)
def test_a_policy_out_of_range_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**fields)


def test_the_smallest_backoff_is_accepted_and_never_printed_as_an_exponent() -> None:
    assert MIN_BACKOFF_S == 0.01
    policy = RetryPolicy(initial_backoff_s=MIN_BACKOFF_S, max_backoff_s=MIN_BACKOFF_S)
    retry = json.loads(policy.service_config())["methodConfig"][0]["retryPolicy"]
    assert (retry["initialBackoff"], retry["maxBackoff"]) == ("0.01s", "0.01s")


# -- retries on a real channel -------------------------------------------------------------


@pytest.mark.parametrize("failures", [1, 3])  # 3: max_attempts - 1, the most that can succeed
async def test_unavailable_is_retried_until_an_attempt_succeeds(
    server: ScriptedServer, pools: Callable[..., ChannelPool], failures: int
) -> None:
    script = server.script(REGISTRY, "GetAgent")
    script.fail_first = failures
    await get_agent(pools(retry=FAST), server.address)
    assert len(script.attempts) == failures + 1
    # gRPC numbers its retries: the channel retried, not a loop of ours.
    assert [a.previous for a in script.attempts] == list(range(failures + 1))


async def test_it_gives_up_after_max_attempts(
    server: ScriptedServer, pools: Callable[..., ChannelPool]
) -> None:
    script = server.script(REGISTRY, "GetAgent")
    script.fail_first = 4  # every attempt fails
    with pytest.raises(Unavailable):
        await get_agent(pools(retry=FAST), server.address)
    assert len(script.attempts) == 4  # no fifth attempt


async def test_rich_mesh_errors_are_retried_and_come_back_typed(
    server: ScriptedServer, pools: Callable[..., ChannelPool]
) -> None:
    script = server.script(ECONOMY, "Transfer")
    script.fail_first = 10
    script.rich = Unavailable("ledger store unreachable", reason="STORE_UNAVAILABLE")
    client = pools(retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.01)).client(
        server.address, ECONOMY
    )
    with pytest.raises(Unavailable) as err:
        await client.call("Transfer", economy_pb2.TransferRequest(), timeout=5)
    assert err.value.reason == "STORE_UNAVAILABLE"
    assert len(script.attempts) == 2


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (Code.INVALID_ARGUMENT, InvalidArgument),
        (Code.ABORTED, Aborted),
        (Code.DEADLINE_EXCEEDED, DeadlineExceeded),
        (Code.INTERNAL, Internal),
    ],
)
async def test_other_codes_are_not_retried(
    server: ScriptedServer, pools: Callable[..., ChannelPool], code: Code, error: type[MeshError]
) -> None:
    script = server.script(WORKFLOW, "GetWorkflow")
    script.fail_first, script.code = 1, code
    client = pools(retry=FAST).client(server.address, WORKFLOW)
    with pytest.raises(error):
        await client.call("GetWorkflow", workflow_pb2.GetWorkflowRequest(), timeout=5)
    assert len(script.attempts) == 1


async def test_the_codes_retried_are_the_policys(
    server: ScriptedServer, pools: Callable[..., ChannelPool]
) -> None:
    script = server.script(WORKFLOW, "GetWorkflow")
    script.fail_first, script.code = 2, Code.ABORTED
    policy = RetryPolicy(initial_backoff_s=0.01, codes=("UNAVAILABLE", "ABORTED"))
    client = pools(retry=policy).client(server.address, WORKFLOW)
    await client.call("GetWorkflow", workflow_pb2.GetWorkflowRequest(), timeout=5)
    assert len(script.attempts) == 3


@pytest.mark.parametrize("retry", [DEFAULT_RETRY, FAST], ids=["default", "fast"])
async def test_agent_service_calls_are_never_retried(
    server: ScriptedServer, pools: Callable[..., ChannelPool], retry: RetryPolicy
) -> None:
    script = server.script(AGENT, "ExecuteTask")
    script.fail_first = 1
    client = pools(retry=retry).client(server.address, AGENT)
    with pytest.raises(Unavailable):
        await client.call("ExecuteTask", agent_pb2.ExecuteTaskRequest(), timeout=5)
    assert len(script.attempts) == 1
    await client.call("ExecuteTask", agent_pb2.ExecuteTaskRequest(), timeout=5)
    assert len(script.attempts) == 2


async def test_without_a_policy_nothing_is_retried(
    server: ScriptedServer, pools: Callable[..., ChannelPool]
) -> None:
    script = server.script(REGISTRY, "GetAgent")
    script.fail_first = 1
    with pytest.raises(Unavailable):
        await get_agent(pools(retry=None), server.address)
    assert len(script.attempts) == 1


# -- backoff -------------------------------------------------------------------------------


async def test_the_delays_stay_within_the_capped_backoff(
    server: ScriptedServer, pools: Callable[..., ChannelPool]
) -> None:
    # Uncapped, the bounds would be 0.01, 1 and 100 s; capped at 0.02 s the three
    # delays are each drawn from [0, 0.01], [0, 0.02] and [0, 0.02].
    policy = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.02, backoff_multiplier=100)
    script = server.script(REGISTRY, "GetAgent")
    script.fail_first = 3
    started = time.monotonic()
    await get_agent(pools(retry=policy), server.address, timeout=5)
    elapsed = time.monotonic() - started
    gaps = [b.at - a.at for a, b in zip(script.attempts, script.attempts[1:], strict=False)]
    assert len(gaps) == 3
    bounds = [0.01, 0.02, 0.02]
    # Loose on purpose (an order of magnitude): a slow CI box must not fail it, an
    # uncapped or hand-rolled backoff (seconds) must.
    assert all(gap < 10 * bound for gap, bound in zip(gaps, bounds, strict=True)), gaps
    assert elapsed < 10 * sum(bounds) + 0.5


async def test_the_deadline_bounds_every_attempt_and_backoff_together(
    server: ScriptedServer, pools: Callable[..., ChannelPool]
) -> None:
    policy = RetryPolicy(max_attempts=5, initial_backoff_s=2.0, max_backoff_s=2.0)
    script = server.script(REGISTRY, "GetAgent")
    script.fail_first = 5
    started = time.monotonic()
    with pytest.raises((DeadlineExceeded, Unavailable)):
        await get_agent(pools(retry=policy), server.address, timeout=0.3)
    # Up to 8 s of backoff left when the 0.3 s deadline ended the call.
    assert time.monotonic() - started < 3.0
    assert 1 <= len(script.attempts) <= 5
