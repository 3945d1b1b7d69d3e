"""Hard limits on every input (on real contract messages) and the per-principal rate limiter.

Each bound is tried at exactly its limit and one past it; each rule by an
input only it rejects, so the field a violation names is that rule's.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import message, struct_pb2, wrappers_pb2

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import ChannelPool, InvalidArgument, MeshServer, RemoteServiceClient
from meshwright.mesh.errors import ResourceExhausted, grpc_code
from meshwright.mesh.limits import (
    DEFAULT_LIMITS,
    MAX_MESSAGE_BYTES,
    InputLimits,
    RateLimit,
    RateLimited,
    RateLimiter,
    check_request,
)
from meshwright.mesh.security import insecure_pipeline
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.v1 import workflow_pb2

A = agent_pb2
SERVICE = A.DESCRIPTOR.services_by_name["AgentService"]


def violations(msg: message.Message, limits: InputLimits = DEFAULT_LIMITS) -> list[str]:
    """The fields ``check_request`` names (empty when the message passes)."""
    try:
        check_request(msg, limits)
    except InvalidArgument as err:
        return [v.field for v in err.violations]
    return []


def nested(depth: int, leaf: Any = 1) -> dict[str, Any]:
    """A Struct whose leaf value sits ``depth`` keys deep."""
    value: Any = leaf
    for _ in range(depth - 1):
        value = {"a": value}
    return {"a": value}


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data)
    return s


# -- strings, bytes, repeated, maps ---------------------------------------------------------


def test_string_at_4096_passes_and_4097_is_named() -> None:
    assert violations(A.ExecuteTaskRequest(task_id="x" * 4096)) == []
    with pytest.raises(InvalidArgument) as err:
        check_request(A.ExecuteTaskRequest(task_id="x" * 4097, skill="ok"))
    assert [(v.field, v.description) for v in err.value.violations] == [
        ("task_id", "is 4097 characters long; at most 4096")
    ]
    assert err.value.message == "invalid request: task_id: is 4097 characters long; at most 4096"


def test_string_length_counts_characters_not_bytes() -> None:
    assert violations(A.ExecuteTaskRequest(task_id="é" * 4096)) == []
    assert violations(A.ExecuteTaskRequest(task_id="é" * 4097)) == ["task_id"]


def test_nested_string_is_named_by_its_path() -> None:
    card = A.AgentCard(skills=[A.AgentSkill(id="ok"), A.AgentSkill(id="x" * 4097)])
    assert violations(registry_pb2.RegisterAgentRequest(card=card)) == ["card.skills[1].id"]


def test_description_override_16384() -> None:
    ok = A.AgentCard(description="d" * 16_384, skills=[A.AgentSkill(description="d" * 16_384)])
    assert violations(ok) == []
    assert violations(A.AgentCard(description="d" * 16_385)) == ["description"]
    assert violations(A.AgentCard(skills=[A.AgentSkill(description="d" * 16_385)])) == [
        "skills[0].description"
    ]
    # The override is per field name: a 4097-char name next to it is still refused.
    assert violations(A.AgentCard(name="n" * 4097, description="d" * 5000)) == ["name"]


def test_reason_override_1024() -> None:
    assert violations(workflow_pb2.CancelWorkflowRequest(reason="r" * 1024)) == []
    assert violations(workflow_pb2.CancelWorkflowRequest(reason="r" * 1025)) == ["reason"]


def test_custom_limits_apply() -> None:
    tight = InputLimits(max_string_chars=3, string_overrides={"skill": 5})
    assert violations(A.ExecuteTaskRequest(task_id="abc", skill="abcde"), tight) == []
    assert violations(A.ExecuteTaskRequest(task_id="abcd", skill="abcdef"), tight) == [
        "task_id",
        "skill",
    ]


def test_bytes_at_1_mib_passes_and_one_more_is_refused() -> None:
    # No meshwright message has a bytes field today; a well-known one stands in.
    assert violations(wrappers_pb2.BytesValue(value=b"\0" * (1024 * 1024))) == []
    assert violations(wrappers_pb2.BytesValue(value=b"\0" * (1024 * 1024 + 1))) == ["value"]


def test_repeated_10000_passes_and_10001_is_refused() -> None:
    assert violations(A.AgentSkill(tags=["t"] * 10_000)) == []
    with pytest.raises(InvalidArgument) as err:
        check_request(A.AgentSkill(tags=["t"] * 10_001))
    assert [(v.field, v.description) for v in err.value.violations] == [
        ("tags", "has 10001 items; at most 10000")
    ]


def test_each_repeated_item_is_checked() -> None:
    assert violations(A.AgentSkill(tags=["t", "x" * 4097])) == ["tags[1]"]


def test_map_10000_passes_and_10001_is_refused() -> None:
    # A join over every other task of a 10,000-task workflow gets 9,999 upstream outputs.
    ok = A.ExecuteTaskRequest(metadata={f"k{i}": "v" for i in range(10_000)})
    assert violations(ok) == []
    with pytest.raises(InvalidArgument) as err:
        check_request(A.ExecuteTaskRequest(metadata={f"k{i}": "v" for i in range(10_001)}))
    assert [(v.field, v.description) for v in err.value.violations] == [
        ("metadata", "has 10001 entries; at most 10000")
    ]


def test_a_join_over_two_thousand_upstream_outputs_passes() -> None:
    # Found by bench/fanout.py: a 1,000-entry map bound failed the fan-out's join task.
    join = A.ExecuteTaskRequest(task_id="join", skill="text.wordcount")
    for i in range(1998):
        join.upstream_outputs[f"t{i:05d}"].update({"text": f"t{i:05d}"})
    assert violations(join) == []


def test_map_keys_and_values_are_checked() -> None:
    assert violations(A.ExecuteTaskRequest(metadata={"k": "v" * 4097})) == ["metadata['k']"]
    assert violations(A.ExecuteTaskRequest(metadata={"k" * 4097: "v"})) == [
        "metadata['" + "k" * 39 + "]"  # the key's repr is abbreviated to 40 characters
    ]
    assert violations(A.ExecuteTaskRequest(metadata={"k" * 4096: "v" * 4096})) == []


# -- Structs ----------------------------------------------------------------------------------


def test_struct_depth_32_passes_and_33_is_refused() -> None:
    assert violations(A.ExecuteTaskRequest(input=struct(nested(32)))) == []
    with pytest.raises(InvalidArgument) as err:
        check_request(A.ExecuteTaskRequest(input=struct(nested(33))))
    (v,) = err.value.violations
    assert v.field == "input" + ".a" * 33
    assert v.description == "nests deeper than 32 levels"


def test_list_nesting_counts_as_depth() -> None:
    def lists(depth: int) -> Any:
        value: Any = 1
        for _ in range(depth - 1):
            value = [value]
        return value

    assert violations(A.ExecuteTaskRequest(input=struct({"l": lists(32)}))) == []
    assert violations(A.ExecuteTaskRequest(input=struct({"l": lists(33)}))) == [
        "input.l" + "[0]" * 32
    ]


def test_struct_depth_in_a_map_of_structs() -> None:
    ok = A.ExecuteTaskRequest(upstream_outputs={"t1": struct(nested(32))})
    assert violations(ok) == []
    deep = A.ExecuteTaskRequest(upstream_outputs={"t1": struct(nested(33))})
    assert violations(deep) == ["upstream_outputs['t1']" + ".a" * 33]


def _struct_of_size(n: int) -> struct_pb2.Struct:
    """A Struct serializing to exactly ``n`` bytes."""
    s = struct({"k": ""})
    s.fields["k"].string_value = "x" * (n - s.ByteSize())
    while s.ByteSize() > n:  # a length prefix grew by a byte
        s.fields["k"].string_value = s.fields["k"].string_value[:-1]
    assert s.ByteSize() == n
    return s


def test_struct_of_1_mib_passes_and_one_byte_more_is_refused() -> None:
    mib = 1024 * 1024
    assert violations(A.ExecuteTaskRequest(input=_struct_of_size(mib))) == []
    with pytest.raises(InvalidArgument) as err:
        check_request(A.ExecuteTaskRequest(input=_struct_of_size(mib + 1)))
    assert [(v.field, v.description) for v in err.value.violations] == [
        ("input", f"is {mib + 1} bytes; at most {mib}")
    ]


def test_strings_inside_a_struct_are_bounded_by_its_size_only() -> None:
    assert violations(A.ExecuteTaskRequest(input=struct({"text": "x" * 100_000}))) == []


def test_struct_key_256_passes_and_257_is_refused() -> None:
    assert violations(A.ExecuteTaskRequest(input=struct({"k" * 256: 1}))) == []
    assert violations(A.ExecuteTaskRequest(input=struct({"k" * 257: 1}))) == ["input"]


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_in_a_struct_are_refused(number: float) -> None:
    req = A.ExecuteTaskRequest(input=struct({"ok": 1.5, "deep": {"list": [0, number]}}))
    with pytest.raises(InvalidArgument) as err:
        check_request(req)
    assert [v.field for v in err.value.violations] == ["input.deep.list[1]"]
    assert "finite" in err.value.violations[0].description


def test_finite_extremes_in_a_struct_pass() -> None:
    big = A.ExecuteTaskRequest(input=struct({"max": 1.7976931348623157e308, "tiny": 5e-324}))
    assert violations(big) == []


def test_unknown_null_value_is_refused() -> None:
    req = A.ExecuteTaskRequest(input=struct({}))
    req.input.fields["n"].null_value = struct_pb2.NULL_VALUE
    assert violations(req) == []
    req.input.fields["n"].null_value = 1  # type: ignore[assignment]  # not a NullValue
    assert violations(req) == ["input.n"]


def test_a_value_message_is_checked_as_a_struct() -> None:
    assert violations(struct_pb2.Value(number_value=1)) == []
    assert violations(struct_pb2.Value(number_value=math.nan)) == [""]


# -- numbers and enums --------------------------------------------------------------------------


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_double_field_must_be_finite(number: float) -> None:
    msg = A.StreamTaskResponse(status_update=A.TaskStatus(progress=number))
    assert violations(msg) == ["status_update.progress"]


def test_double_field_finite_passes() -> None:
    assert violations(A.StreamTaskResponse(status_update=A.TaskStatus(progress=0.5))) == []


def test_unknown_enum_value_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidArgument) as err:
        check_request(registry_pb2.ListAgentsRequest(state=99))  # type: ignore[arg-type]
    (v,) = err.value.violations
    assert v.field == "state"
    assert v.description.startswith("unknown enum value 99; one of AGENT_STATE_UNSPECIFIED")


def test_known_enum_values_pass() -> None:
    for value in registry_pb2.AgentState.values():
        assert violations(registry_pb2.ListAgentsRequest(state=value)) == []
    nested_enum = A.StreamTaskResponse(status_update=A.TaskStatus(state=77))  # type: ignore[arg-type]
    assert violations(nested_enum) == ["status_update.state"]


# -- how many problems are reported -------------------------------------------------------------


def test_violations_stop_at_max_violations() -> None:
    many = A.AgentSkill(tags=["x" * 4097] * 60)
    with pytest.raises(InvalidArgument) as err:
        check_request(many)
    assert len(err.value.violations) == 50
    assert [v.field for v in err.value.violations[:2]] == ["tags[0]", "tags[1]"]
    assert err.value.message.endswith("(and 49 more)")


@pytest.mark.parametrize(("bad", "reported"), [(3, 3), (4, 3)])
def test_max_violations_at_and_past_its_limit(bad: int, reported: int) -> None:
    limits = InputLimits(max_violations=3)
    msg = A.ExecuteTaskRequest(metadata={f"k{i}": "v" * 4097 for i in range(bad)})
    assert len(violations(msg, limits)) == reported


def test_a_single_violation_has_no_more_suffix() -> None:
    with pytest.raises(InvalidArgument) as err:
        check_request(A.ExecuteTaskRequest(skill="x" * 4097))
    assert "more" not in err.value.message


def test_a_clean_request_passes() -> None:
    req = A.ExecuteTaskRequest(
        task_id="t1",
        skill="text.echo",
        input=struct({"text": "hi", "n": [1, 2, {"k": None}], "flag": True}),
        upstream_outputs={"t0": struct({"ok": 1})},
        metadata={"k": "v"},
    )
    check_request(req)  # does not raise


# -- message size over a real socket -------------------------------------------------------------


class Echo:
    async def GetAgentCard(self, request: Any) -> Any:
        return A.GetAgentCardResponse()

    async def ExecuteTask(self, request: Any) -> Any:
        return A.ExecuteTaskResponse(task=A.Task(task_id=request.task_id[:10]))

    async def StreamTask(self, request: Any) -> AsyncIterator[Any]:
        yield A.StreamTaskResponse()

    async def CancelTask(self, request: Any) -> Any:
        return A.CancelTaskResponse()


@pytest.fixture
async def server() -> AsyncIterator[MeshServer]:
    srv = MeshServer(pipeline=insecure_pipeline())
    srv.add(Echo(), SERVICE)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(0)


def _request_of_size(n: int) -> A.ExecuteTaskRequest:
    req = A.ExecuteTaskRequest(task_id="x" * (n - 5))  # 1 tag byte + a 4-byte length
    assert req.ByteSize() == n
    return req


async def test_server_takes_8_mib_and_refuses_one_byte_more(server: MeshServer) -> None:
    # A plain channel sends anything, so the server's own bound is what answers.
    async with grpc.aio.insecure_channel(server.address) as channel:
        client = RemoteServiceClient(channel, SERVICE)
        with pytest.raises(InvalidArgument) as got:  # received, then refused by the limits
            await client.call("ExecuteTask", _request_of_size(MAX_MESSAGE_BYTES))
        assert [v.field for v in got.value.violations] == ["task_id"]
        with pytest.raises(ResourceExhausted):
            await client.call("ExecuteTask", _request_of_size(MAX_MESSAGE_BYTES + 1))


async def test_pooled_channels_send_at_most_8_mib(server: MeshServer) -> None:
    pool = ChannelPool()
    try:
        client = pool.client(server.address, SERVICE)
        assert pool.get(server.address) is pool.get(server.address)  # one channel per target
        with pytest.raises(InvalidArgument):
            await client.call("ExecuteTask", _request_of_size(MAX_MESSAGE_BYTES))
        with pytest.raises(ResourceExhausted):
            await client.call("ExecuteTask", _request_of_size(MAX_MESSAGE_BYTES + 1))
        ok = await client.call("ExecuteTask", A.ExecuteTaskRequest(task_id="t1"))
        assert ok.task.task_id == "t1"
        await pool.discard(server.address)
        await pool.discard("nowhere:1")  # nothing to close
    finally:
        await pool.close()


# -- rate limits -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(rate: float = 10.0, burst: int = 5, **kw: Any) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    return RateLimiter(RateLimit(rate_per_s=rate, burst=burst), clock=clock, **kw), clock


def drain(rl: RateLimiter, key: str) -> int:
    """Calls of ``key`` that pass before the first refusal (at most 10000)."""
    for n in range(10_000):
        try:
            rl.take(key)
        except RateLimited:
            return n
    return 10_000


def test_exactly_burst_calls_pass_then_rate_limited() -> None:
    rl, _ = limiter(rate=10, burst=5)
    for _ in range(5):
        rl.take("client:a")
    with pytest.raises(RateLimited) as err:
        rl.take("client:a")
    assert err.value.retry_after_s == pytest.approx(0.1)
    assert err.value.reason == "RATE_LIMITED"
    assert grpc_code(err.value) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "retry in 0.100s" in err.value.message


def test_refused_calls_do_not_spend() -> None:
    rl, clock = limiter(rate=10, burst=5)
    assert drain(rl, "k") == 5
    for _ in range(100):  # hammering while empty earns no debt
        with pytest.raises(RateLimited):
            rl.take("k")
    clock.now += 0.1
    rl.take("k")


def test_refill_after_time_passes() -> None:
    # 8 calls/s and binary fractions of a second: the arithmetic is exact.
    rl, clock = limiter(rate=8, burst=5)
    assert drain(rl, "k") == 5
    clock.now += 0.0625  # half a call earned
    with pytest.raises(RateLimited) as err:
        rl.take("k")
    assert err.value.retry_after_s == 0.0625
    clock.now += 0.0625
    rl.take("k")  # one whole call earned
    with pytest.raises(RateLimited):
        rl.take("k")
    clock.now += 0.375
    assert drain(rl, "k") == 3


def test_refill_is_capped_at_burst() -> None:
    rl, clock = limiter(rate=10, burst=5)
    assert drain(rl, "k") == 5
    clock.now += 3600
    assert drain(rl, "k") == 5


def test_burst_of_one() -> None:
    rl, _ = limiter(rate=1, burst=1)
    assert drain(rl, "k") == 1


def test_rate_zero_disables() -> None:
    rl, _ = limiter(rate=0, burst=1)
    assert drain(rl, "k") == 10_000


def test_keys_are_independent() -> None:
    rl, _ = limiter(rate=10, burst=5)
    assert drain(rl, "client:a") == 5
    assert drain(rl, "client:b") == 5
    with pytest.raises(RateLimited):
        rl.take("client:a")


def test_max_keys_forgets_the_least_recently_seen() -> None:
    rl, _ = limiter(rate=10, burst=3, max_keys=2)
    assert drain(rl, "a") == 3
    assert drain(rl, "b") == 3
    with pytest.raises(RateLimited):
        rl.take("a")  # a is now the most recently seen, b the least
    assert drain(rl, "c") == 3  # a third key: b, the least recently seen, is forgotten
    assert drain(rl, "a") == 0  # a was kept (still empty); c is now the least recent
    assert drain(rl, "b") == 3  # b starts over with a full bucket, and c is forgotten
    assert drain(rl, "a") == 0
    assert drain(rl, "c") == 3


@pytest.mark.parametrize(
    ("rate", "burst", "ok"),
    [(0.0, 1, True), (-0.1, 1, False), (1.0, 0, False), (1.0, 1, True)],
)
def test_rate_limit_validation(rate: float, burst: int, ok: bool) -> None:
    if ok:
        RateLimiter(RateLimit(rate_per_s=rate, burst=burst))
    else:
        with pytest.raises(ValueError):
            RateLimiter(RateLimit(rate_per_s=rate, burst=burst))


def test_default_rate_limit_is_generous_and_uses_the_monotonic_clock() -> None:
    rl = RateLimiter(RateLimit())
    assert (rl.limit.rate_per_s, rl.limit.burst) == (500.0, 1000)
    # The real clock refills a little while the loop runs, but not at 10000 calls.
    assert 1000 <= drain(rl, "k") < 10_000


def test_struct_key_violations_stop_at_max_violations() -> None:
    keys = struct({f"{i:03d}" + "k" * 300: 1 for i in range(60)})
    assert len(violations(A.ExecuteTaskRequest(input=keys))) == 50


def test_map_key_and_value_violations_stop_at_max_violations() -> None:
    limits = InputLimits(max_violations=3)
    # Two entries whose key and value are both too long: four problems, three reported.
    bad = A.ExecuteTaskRequest(metadata={f"{i}" + "k" * 4097: "v" * 4097 for i in range(2)})
    assert len(violations(bad, limits)) == 3


def test_the_fast_path_skips_only_messages_with_nothing_to_check_by_value() -> None:
    from meshwright.economy.v1 import economy_pb2
    from meshwright.mesh.limits import _has_value_checks

    # Ids, amounts, memos: nothing to check but lengths, which the size bounds.
    assert not _has_value_checks(economy_pb2.CaptureEscrowRequest.DESCRIPTOR)
    # Structs (task inputs), enums (state filters): always walked.
    assert _has_value_checks(A.ExecuteTaskRequest.DESCRIPTOR)
    assert _has_value_checks(workflow_pb2.ListWorkflowsRequest.DESCRIPTOR)
    # A small message without value checks passes; one string past the smallest
    # bound (the 1024-character "reason") is still refused although the message is small.
    check_request(economy_pb2.CaptureEscrowRequest(escrow_id="e", memo="m" * 1024))
    with pytest.raises(InvalidArgument):
        check_request(workflow_pb2.CancelWorkflowRequest(workflow_id="w", reason="r" * 1025))
