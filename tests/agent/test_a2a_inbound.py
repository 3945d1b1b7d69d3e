"""The A2A inbound bridge without a mesh: the card mapping rule by rule, then the calls
against the a2a-sdk reference agent running as its own process.

Each mapping test changes one input that only its rule reads. The call tests drive a
``RemoteAgent`` (what a bridged skill runs) with a real ``TaskContext``, so progress,
artifacts, failures, rejections, cancel, timeouts, the token and the trace context are
seen as the agent runtime sees them; tests/e2e/test_a2a_bridge.py runs the same through
a mesh node and a bridge process.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentExtension,
    AgentInterface,
    AgentSkill,
    Artifact,
    Message,
    Part,
    Task,
    TaskState,
    TaskStatus,
)
from google.protobuf import struct_pb2

from meshwright.agent.a2a import _bridge_map as M
from meshwright.agent.a2a.card import PRICING_EXTENSION
from meshwright.agent.a2a.inbound import (
    BridgeOptions,
    CardError,
    RemoteAgent,
    bridge_agent,
    card_location,
    check_card,
    fetch_card,
)
from meshwright.agent.context import TaskContext
from meshwright.agent.errors import TaskFailed, TaskRejected
from meshwright.mesh.auth import Principal, Role
from meshwright.mesh.context import CallContext, serving
from tests.agent._a2a_reference_agent import ReferenceAgent, running
from tests.conftest import eventually

pytestmark = pytest.mark.timeout(60)
on_module_loop = pytest.mark.asyncio(loop_scope="module")
"""The call tests share one reference agent process and one event loop."""

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def a2a_card(
    *skill_ids: str,
    streaming: bool = True,
    bindings: tuple[str, ...] = ("JSONRPC",),
    prices: Mapping[str, int] | None = None,
    name: str = "remote",
) -> AgentCard:
    card = AgentCard(
        name=name,
        description="a remote agent",
        version="2.1.0",
        capabilities=AgentCapabilities(streaming=streaming),
        supported_interfaces=[
            AgentInterface(url=f"http://127.0.0.1:9/{b}", protocol_binding=b) for b in bindings
        ],
    )
    for skill_id in skill_ids:
        card.skills.append(
            AgentSkill(id=skill_id, name=skill_id.title(), description=f"does {skill_id}")
        )
    if prices is not None:
        params = struct_pb2.Struct()
        params.update(dict(prices))
        card.capabilities.extensions.append(AgentExtension(uri=PRICING_EXTENSION, params=params))
    return card


# -- skill ids ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a2a_id", "ours"),
    [
        ("text.upper", "text.upper"),  # already valid: kept
        ("Text.Reverse", "text.reverse"),  # upper case: lowered
        ("summarize text", "summarize-text"),  # spaces: dashes
        ("tools/search:web", "tools-search-web"),  # other characters: dashes, runs collapsed
        ("_private.-x", "private.x"),  # segment starts: no _ or -
        ("a..b.", "a.b"),  # empty segments dropped
        ("résumé", "r-sum"),  # non-ASCII: dashes, a trailing one dropped
        ("???", "skill"),  # nothing left
    ],
)
def test_a2a_skill_ids_map_to_valid_dotted_lower_case_ids(a2a_id: str, ours: str) -> None:
    assert M.skill_id_for(a2a_id) == ours


def test_ids_that_map_alike_keep_their_own_id_or_get_a_hash_of_the_original() -> None:
    ids = M.skill_ids_for(["a-b", "A B", "a b"])
    assert ids["a-b"] == "a-b"  # its own id: kept
    assert ids["A B"].startswith("a-b-") and ids["a b"].startswith("a-b-")
    assert len(set(ids.values())) == 3
    # Deterministic whatever the card's order.
    assert M.skill_ids_for(["a b", "A B", "a-b"]) == ids


def test_a_prefix_goes_before_every_id_and_must_make_valid_ids() -> None:
    assert M.skill_ids_for(["echo", "Text.Reverse"], prefix="ext.") == {
        "echo": "ext.echo",
        "Text.Reverse": "ext.text.reverse",
    }
    with pytest.raises(ValueError, match="skill-prefix"):
        M.skill_ids_for(["echo"], prefix="Ext.")


def test_a_card_listing_a_skill_id_twice_is_refused() -> None:
    with pytest.raises(CardError, match="more than once: echo"):
        check_card(a2a_card("echo", "echo"))


# -- prices -----------------------------------------------------------------------------


def test_price_by_a2a_id_flag_beats_everything() -> None:
    rules = M.PriceRules(flags={"Up": 7, "up": 6}, card={"Up": 5}, default=4)
    assert rules.price("Up", "up") == 7


def test_price_by_our_id_flag_beats_the_card() -> None:
    rules = M.PriceRules(flags={"up": 6}, card={"Up": 5}, default=4)
    assert rules.price("Up", "up") == 6


def test_the_cards_price_beats_the_default() -> None:
    rules = M.PriceRules(flags={}, card={"Up": 5}, default=4)
    assert rules.price("Up", "up") == 5


def test_the_default_price_fills_what_nothing_else_prices() -> None:
    assert M.PriceRules(flags={}, card={"Other": 5}, default=4).price("Up", "up") == 4


def test_a_skill_nothing_prices_is_free() -> None:
    assert M.PriceRules(flags={}, card={}, default=None).price("Up", "up") == 0


# -- the card ---------------------------------------------------------------------------


def test_the_bridge_card_says_what_the_a2a_card_says() -> None:
    card = a2a_card("Text.Reverse", "echo", prices={"echo": 3})
    card.skills[0].tags.extend(["text", "fun"])
    card.skills[0].examples.append('{"text": "abc"}')
    agent = bridge_agent(
        card,
        card_url="http://remote/.well-known/agent-card.json",
        options=BridgeOptions(prices={"text.reverse": 2}),
    )
    ours = agent.card()
    assert (ours.name, ours.description, ours.version) == ("remote", "a remote agent", "2.1.0")
    skills = {s.id: s for s in ours.skills}
    assert set(skills) == {"text.reverse", "echo"}
    rev = skills["text.reverse"]
    assert (rev.name, rev.description, rev.price) == ("Text.Reverse", "does Text.Reverse", 2)
    assert list(rev.tags) == ["text", "fun"] and list(rev.examples) == ['{"text": "abc"}']
    assert skills["echo"].price == 3
    assert ours.metadata["bridge"] == "a2a"
    assert ours.metadata["a2a_card_url"] == "http://remote/.well-known/agent-card.json"
    assert ours.metadata["a2a_url"] == "http://127.0.0.1:9/JSONRPC"
    assert json.loads(ours.metadata["a2a_skills"]) == {
        "text.reverse": "Text.Reverse",
        "echo": "echo",
    }
    assert ours.capabilities.streaming and ours.capabilities.cancellation


def test_streaming_follows_the_card() -> None:
    agent = bridge_agent(a2a_card("echo", streaming=False), card_url="u", options=BridgeOptions())
    assert not agent.card().capabilities.streaming


def test_the_name_option_overrides_the_cards_name() -> None:
    agent = bridge_agent(a2a_card("echo"), card_url="u", options=BridgeOptions(name="bridged"))
    assert agent.name == "bridged"


def test_a_price_for_a_skill_the_card_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match="--price names skills the card does not have: nope"):
        bridge_agent(a2a_card("echo"), card_url="u", options=BridgeOptions(prices={"nope": 1}))


def test_a_card_without_skills_is_refused() -> None:
    with pytest.raises(CardError, match="lists no skills") as caught:
        check_card(a2a_card())
    assert caught.value.exit_code == 2


def test_a_card_with_no_transport_a2a_sdk_speaks_is_refused() -> None:
    with pytest.raises(CardError, match="no transport the bridge speaks: the card offers SMTP"):
        check_card(a2a_card("echo", bindings=("SMTP",)))


def test_json_rpc_is_preferred_when_the_card_offers_several() -> None:
    card = a2a_card("echo", bindings=("HTTP+JSON", "JSONRPC"))
    agent = bridge_agent(card, card_url="u", options=BridgeOptions())
    assert agent.card().metadata["a2a_transport"] == "JSONRPC"


def test_a_pricing_extension_that_is_not_numbers_is_refused() -> None:
    card = a2a_card("echo")
    params = struct_pb2.Struct()
    params.update({"echo": "cheap"})
    card.capabilities.extensions.append(AgentExtension(uri=PRICING_EXTENSION, params=params))
    with pytest.raises(CardError, match="pricing extension"):
        check_card(card)


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("http://h:1", ("http://h:1", "/.well-known/agent-card.json")),
        ("http://h:1/agents/x/", ("http://h:1/agents/x", "/.well-known/agent-card.json")),
        ("http://h:1/card.json", ("http://h:1/card.json", "")),
        ("https://h/.well-known/agent.json", ("https://h/.well-known/agent.json", "")),
    ],
)
def test_a_card_url_or_a_base_url(url: str, location: tuple[str, str]) -> None:
    assert card_location(url) == location


def test_a_url_that_is_not_http_is_bad_input() -> None:
    with pytest.raises(CardError, match="not an http") as caught:
        card_location("h:1")
    assert caught.value.exit_code == 2


# -- messages and outputs ---------------------------------------------------------------


def test_the_message_carries_the_skill_the_data_and_the_text() -> None:
    message = M.input_message(
        {"text": "hi", "n": 2},
        a2a_skill="Up",
        message_id=M.message_id_for("wf.t.1"),
        context_id="wf",
        upstream={"a": {"x": 1}},
    )
    assert message.message_id == "meshwright-wf.t.1" and message.context_id == "wf"
    assert M.parts_data(message.parts[:1]) == {"text": "hi", "n": 2}
    assert message.parts[1].text == "hi"
    assert message.metadata["skill"] == "Up"
    assert dict(message.metadata["upstream"]) == {"a": {"x": 1}}


def test_a_prompt_is_sent_as_text_too_but_no_empty_text_part() -> None:
    assert (
        M.input_message({"prompt": "p"}, a2a_skill="s", message_id="m", context_id="").parts[1].text
        == "p"
    )
    assert (
        len(M.input_message({"text": ""}, a2a_skill="s", message_id="m", context_id="").parts) == 1
    )


def _data_part(data: dict[str, Any]) -> Part:
    value = struct_pb2.Value()
    value.struct_value.update(data)
    return Part(data=value)


def test_the_output_is_the_data_of_the_artifact_named_output() -> None:
    task = Task(
        artifacts=[
            Artifact(artifact_id="1", name="log", parts=[Part(text="working")]),
            Artifact(artifact_id="2", name="output", parts=[_data_part({"sum": 6})]),
        ]
    )
    assert M.task_output(task) == {"sum": 6}  # a whole number stays an int


def test_without_an_output_artifact_the_output_is_text_and_artifacts() -> None:
    task = Task(
        artifacts=[
            Artifact(artifact_id="1", name="a", parts=[Part(text="one")]),
            Artifact(artifact_id="2", parts=[Part(text="two"), _data_part({"k": 1})]),
        ]
    )
    assert M.task_output(task) == {
        "text": "one\ntwo",
        "artifacts": [
            {"name": "a", "data": {"text": "one"}},
            {"name": "2", "data": {"k": 1}},
        ],
    }


def test_without_artifacts_the_output_is_the_final_messages_text() -> None:
    task = Task(
        status=TaskStatus(
            state=TaskState.TASK_STATE_COMPLETED, message=Message(parts=[Part(text="done")])
        )
    )
    assert M.task_output(task) == {"text": "done", "artifacts": []}


# -- calls to the reference agent ---------------------------------------------------------


class Sink:
    """Where a task's reports go (the TaskRunner's role)."""

    def __init__(self) -> None:
        self.progress: list[str] = []
        self.artifacts: list[tuple[str, dict[str, Any]]] = []

    def on_progress(self, message: str, fraction: float | None) -> None:
        self.progress.append(message)

    def on_artifact(self, name: str, data: Mapping[str, Any]) -> None:
        self.artifacts.append((name, dict(data)))


_tasks = iter(range(1, 1_000_000))


def context(sink: Sink | None = None, context_id: str = "wf-test") -> TaskContext:
    return TaskContext(
        task_id=f"{context_id}.t.{next(_tasks)}", skill="s", context_id=context_id, sink=sink
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("a2a") / "token"
    path.write_text("s3cret-a2a-token\n")
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ref(token_file: Path) -> AsyncIterator[ReferenceAgent]:
    async with running("--token-file", str(token_file), "--price", "upper=3") as agent:
        yield agent


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def remote(ref: ReferenceAgent) -> AsyncIterator[RemoteAgent]:
    card, _ = await fetch_card(ref.url, token="s3cret-a2a-token")
    r = RemoteAgent(card, timeout_s=10, token="s3cret-a2a-token")
    try:
        yield r
    finally:
        await r.close()


@on_module_loop
async def test_the_card_is_fetched_from_the_base_url_or_the_card_url(ref: ReferenceAgent) -> None:
    by_base, url = await fetch_card(ref.url)
    assert url == ref.card_url
    by_card, url = await fetch_card(ref.card_url)
    assert url == ref.card_url
    assert by_base == by_card and by_base.name == "a2a-reference"
    agent = bridge_agent(by_base, card_url=url, options=BridgeOptions())
    assert {s.id: s.price for s in agent.skills.values()}["upper"] == 3  # the card's extension


@on_module_loop
async def test_an_unreachable_card_url_is_exit_code_1(unused_tcp_port: int) -> None:
    with pytest.raises(CardError, match="cannot reach") as caught:
        await fetch_card(f"http://127.0.0.1:{unused_tcp_port}")
    assert caught.value.exit_code == 1


@on_module_loop
async def test_a_url_without_a_card_is_exit_code_2(ref: ReferenceAgent) -> None:
    with pytest.raises(CardError, match="HTTP 404: no A2A agent card there") as caught:
        await fetch_card(ref.url + "/_test/none.json")
    assert caught.value.exit_code == 2


@on_module_loop
async def test_a_card_url_that_is_not_json_is_exit_code_2(ref: ReferenceAgent) -> None:
    with pytest.raises(CardError, match="is not JSON") as caught:
        await fetch_card(ref.url + "/_test/not-json.json")
    assert caught.value.exit_code == 2


@on_module_loop
async def test_a_served_card_without_skills_is_refused() -> None:
    async with running("--no-skills") as empty:
        with pytest.raises(CardError, match="lists no skills"):
            await fetch_card(empty.url)


@on_module_loop
async def test_a_text_skill_streams_to_its_output(remote: RemoteAgent, ref: ReferenceAgent) -> None:
    ctx = context()
    assert await remote.run("upper", {"text": "hello"}, ctx) == {"text": "HELLO"}
    call = next(c for c in await ref.calls() if c["message_id"] == f"meshwright-{ctx.task_id}")
    assert call["skill"] == "upper" and call["context_id"] == "wf-test"
    assert call["input"] == {"text": "hello"}
    assert call["authorization"] == "Bearer s3cret-a2a-token"


@on_module_loop
async def test_a_data_skill_answers_with_its_output_artifact(remote: RemoteAgent) -> None:
    assert await remote.run("sum", {"numbers": [1, 2, 3]}, context()) == {"sum": 6}


@on_module_loop
async def test_status_messages_become_progress_and_artifacts_ours(remote: RemoteAgent) -> None:
    sink = Sink()
    out = await remote.run("steps", {"count": 3}, context(sink))
    assert out == {"steps": 3}
    assert sink.progress == ["step 1/3", "step 2/3", "step 3/3"]
    assert sink.artifacts == [(f"step-{i}", {"step": i}) for i in (1, 2, 3)]


@on_module_loop
async def test_a_failed_task_is_a_retryable_failure(remote: RemoteAgent) -> None:
    with pytest.raises(TaskFailed, match="first attempt") as caught:
        await remote.run("flaky", {"key": "unit-flaky"}, context())
    assert caught.value.retryable and caught.value.reason == "A2A_TASK_FAILED"
    assert await remote.run("flaky", {"key": "unit-flaky"}, context()) == {
        "key": "unit-flaky",
        "ok": True,
    }


@on_module_loop
async def test_a_rejected_task_is_a_rejection(remote: RemoteAgent) -> None:
    with pytest.raises(TaskRejected) as caught:
        await remote.run("reject", {}, context())
    assert not caught.value.retryable and caught.value.reason == "A2A_TASK_REJECTED"


@on_module_loop
async def test_input_required_is_a_rejection_and_the_remote_task_is_canceled(
    remote: RemoteAgent, ref: ReferenceAgent
) -> None:
    ctx = context()
    with pytest.raises(TaskRejected, match="tell me more") as caught:
        await remote.run("need-input", {}, ctx)
    assert caught.value.reason == "A2A_INPUT_REQUIRED"
    call = next(c for c in await ref.calls() if c["message_id"] == f"meshwright-{ctx.task_id}")
    assert call["task_id"] in await ref.cancels()


@on_module_loop
async def test_an_http_500_is_a_retryable_failure(remote: RemoteAgent, ref: ReferenceAgent) -> None:
    await ref.fail_http(1)
    with pytest.raises(TaskFailed, match="HTTP 500") as caught:
        await remote.run("upper", {"text": "x"}, context())
    assert caught.value.retryable and caught.value.reason == "A2A_UNAVAILABLE"
    assert await remote.run("upper", {"text": "x"}, context()) == {"text": "X"}


@on_module_loop
async def test_a_refused_token_is_not_retryable(ref: ReferenceAgent) -> None:
    card, _ = await fetch_card(ref.url)
    wrong = RemoteAgent(card, timeout_s=10, token="wrong")
    try:
        with pytest.raises(TaskFailed, match="HTTP 401") as caught:
            await wrong.run("upper", {"text": "x"}, context())
        assert not caught.value.retryable and caught.value.reason == "A2A_HTTP_REFUSED"
    finally:
        await wrong.close()


@on_module_loop
async def test_an_unreachable_agent_is_a_retryable_failure(ref: ReferenceAgent) -> None:
    card, _ = await fetch_card(ref.url)
    card.supported_interfaces[0].url = "http://127.0.0.1:1/"
    gone = RemoteAgent(card, timeout_s=5)
    try:
        with pytest.raises(TaskFailed) as caught:
            await gone.run("upper", {"text": "x"}, context())
        assert caught.value.retryable and caught.value.reason == "A2A_UNREACHABLE"
    finally:
        await gone.close()


@on_module_loop
async def test_a_task_past_the_timeout_fails_retryably_and_is_canceled_remotely(
    ref: ReferenceAgent,
) -> None:
    card, _ = await fetch_card(ref.url)
    hasty = RemoteAgent(card, timeout_s=0.5, token="s3cret-a2a-token")
    ctx = context()
    try:
        started = time.monotonic()
        with pytest.raises(TaskFailed, match="within 0.5s") as caught:
            await hasty.run("slow", {"seconds": 20}, ctx)
        assert time.monotonic() - started < 5
        assert caught.value.retryable and caught.value.reason == "A2A_TIMEOUT"
    finally:
        await hasty.close()
    call = next(c for c in await ref.calls() if c["message_id"] == f"meshwright-{ctx.task_id}")
    assert call["task_id"] in await ref.cancels()


@on_module_loop
async def test_canceling_our_task_cancels_the_remote_one(
    remote: RemoteAgent, ref: ReferenceAgent
) -> None:
    sink = Sink()
    ctx = context(sink)
    run = asyncio.create_task(remote.run("slow", {"seconds": 20}, ctx))
    await eventually(lambda: sink.progress, timeout=10)  # it runs remotely
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    call = next(c for c in await ref.calls() if c["message_id"] == f"meshwright-{ctx.task_id}")
    assert call["task_id"] in await ref.cancels()


@on_module_loop
async def test_the_trace_context_the_task_came_with_reaches_the_agent(
    remote: RemoteAgent, ref: ReferenceAgent
) -> None:
    """With tracing off here, the context passes through unchanged (the e2e test sees
    the bridge's own span parent the remote's work)."""
    ctx = context()
    call = CallContext(
        method="/meshwright.agent.v1.AgentService/ExecuteTask",
        principal=Principal(role=Role.SERVICE, subject="engine"),
        deadline=None,
        metadata=(("traceparent", TRACEPARENT), ("authorization", "Bearer mesh-token")),
    )
    with serving(call):
        await remote.run("echo", {"text": "t"}, ctx)
    seen = next(c for c in await ref.calls() if c["message_id"] == f"meshwright-{ctx.task_id}")
    assert seen["traceparent"] == TRACEPARENT
    # The mesh's own credentials never travel to the A2A agent: only its token does.
    assert seen["authorization"] == "Bearer s3cret-a2a-token"


@on_module_loop
async def test_a_non_streaming_agent_is_called_with_send_message() -> None:
    async with running("--no-streaming") as plain:
        card, _ = await fetch_card(plain.url)
        assert not card.capabilities.streaming
        r = RemoteAgent(card, timeout_s=10)
        sink = Sink()
        try:
            assert await r.run("steps", {"count": 2}, context(sink)) == {"steps": 2}
        finally:
            await r.close()
        assert sink.progress == []  # no stream: no progress on the way


async def _bridge_cli(*args: str, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """``python -m meshwright.agent a2a ARGS`` to its end: (exit code, its output)."""
    import os
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meshwright.agent",
        "a2a",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("MESHWRIGHT_")},
            **(env or {}),
        },
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:  # timed out: leave no bridge behind
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode()


@pytest.mark.parametrize(
    ("flags", "env", "error"),
    [
        (("--price", "upper"), {}, "--price 'upper': expected SKILL=N"),
        (("--price", "upper=-1"), {}, "expected SKILL=N with N a whole number >= 0"),
        (("--price", "ghost=1"), {}, "--price names skills the card does not have: ghost"),
        (("--default-price", "-2"), {}, "--default-price must not be negative"),
        (("--a2a-timeout", "0"), {}, "--a2a-timeout must be positive"),
        ((), {"MESHWRIGHT_A2A_TOKEN_FILE": "/nonexistent/token"}, "No such file"),
        (("--skill-prefix", "Bad."), {}, "--skill-prefix 'Bad.' makes"),
    ],
)
@on_module_loop
async def test_bad_bridge_flags_are_exit_code_2(
    ref: ReferenceAgent, flags: tuple[str, ...], env: dict[str, str], error: str
) -> None:
    code, out = await _bridge_cli(
        ref.url, "--registry", "127.0.0.1:1", "--insecure-no-auth", *flags, env=env
    )
    assert code == 2, out
    assert error in out and "READY" not in out


@on_module_loop
async def test_the_a2a_token_never_shows_in_the_bridges_output(
    ref: ReferenceAgent, token_file: Path
) -> None:
    """Even at DEBUG (httpx's and a2a-sdk's logs on): the card is read with the token,
    the bridge tries to register (the registry is not there), and is stopped."""
    import os
    import signal
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meshwright.agent",
        "a2a",
        ref.url,
        "--registry",
        "127.0.0.1:1",
        "--insecure-no-auth",
        "--log-level",
        "DEBUG",
        "--grace",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("MESHWRIGHT_")},
            "MESHWRIGHT_A2A_TOKEN_FILE": str(token_file),
        },
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(30):
            while line := (await proc.stdout.readline()).decode():
                lines.append(line)
                if "serving meshwright.agent.v1.AgentService" in line:
                    break
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rest, _ = await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    out = "".join(lines) + rest.decode()
    assert "bridging A2A agent 'a2a-reference'" in out
    assert "agent-card.json" in out  # the DEBUG logs of the card fetch are there
    assert "s3cret-a2a-token" not in out


def test_a_skill_whose_input_modes_take_no_json_gets_text_only() -> None:
    assert M.takes_json([]) and M.takes_json(["application/json"]) and M.takes_json(["*/*"])
    assert not M.takes_json(["text/plain"])
    text = M.input_message(
        {"text": "hi", "n": 1}, a2a_skill="s", message_id="m", context_id="", data_part=False
    )
    assert [p.WhichOneof("content") for p in text.parts] == ["text"] and text.parts[0].text == "hi"
    data = M.input_message({"n": 1}, a2a_skill="s", message_id="m", context_id="", data_part=False)
    assert data.parts[0].text == '{"n": 1}'


@on_module_loop
async def test_a_text_only_card_is_sent_text_only(ref: ReferenceAgent) -> None:
    card, _ = await fetch_card(ref.url)
    del card.default_input_modes[:]
    card.default_input_modes.append("text/plain")
    r = RemoteAgent(card, timeout_s=10, token="s3cret-a2a-token")
    ctx = context()
    try:
        assert await r.run("echo", {"numbers": [1, 2]}, ctx) == {"text": '{"numbers": [1, 2]}'}
    finally:
        await r.close()


@on_module_loop
async def test_the_http_json_binding_works_as_json_rpc_does() -> None:
    async with running("--rest") as rest:
        card, url = await fetch_card(rest.url)
        agent = bridge_agent(card, card_url=url, options=BridgeOptions())
        assert agent.card().metadata["a2a_transport"] == "HTTP+JSON"
        r = RemoteAgent(card, timeout_s=10)
        sink = Sink()
        try:
            assert await r.run("upper", {"text": "rest"}, context()) == {"text": "REST"}
            assert await r.run("steps", {"count": 2}, context(sink)) == {"steps": 2}
            with pytest.raises(TaskRejected):
                await r.run("reject", {}, context())
        finally:
            await r.close()
        assert sink.progress == ["step 1/2", "step 2/2"]


def test_a_card_in_the_a2a_0_3_format_is_bridged() -> None:
    from a2a.client.card_resolver import parse_agent_card

    card = parse_agent_card(
        {
            "name": "legacy",
            "description": "an A2A 0.3 agent",
            "version": "0.1.0",
            "protocolVersion": "0.3.0",
            "url": "http://legacy:8000/a2a",
            "preferredTransport": "JSONRPC",
            "capabilities": {"streaming": False},
            "defaultInputModes": ["text/plain"],
            "defaultOutputModes": ["text/plain"],
            "skills": [{"id": "Translate", "name": "Translate", "description": "d", "tags": []}],
        }
    )
    agent = bridge_agent(card, card_url="http://legacy:8000/card.json", options=BridgeOptions())
    meta = agent.card().metadata
    assert (meta["a2a_url"], meta["a2a_transport"]) == ("http://legacy:8000/a2a", "JSONRPC")
    assert list(agent.skills) == ["translate"]
    assert not agent.card().capabilities.streaming


@pytest.mark.parametrize(
    ("error", "reason", "retryable"),
    [
        ("InternalError", "A2A_INTERNAL", True),
        ("InvalidAgentResponseError", "A2A_INVALID_AGENT_RESPONSE", True),
        ("InvalidParamsError", "A2A_INVALID_PARAMS", False),
        ("ContentTypeNotSupportedError", "A2A_CONTENT_TYPE_NOT_SUPPORTED", False),
        ("UnsupportedOperationError", "A2A_UNSUPPORTED_OPERATION", False),
    ],
)
def test_a2a_error_answers_fail_the_task_retryably_only_for_the_agents_own_errors(
    error: str, reason: str, retryable: bool
) -> None:
    from a2a.utils import errors

    from meshwright.agent.a2a._bridge_remote import _protocol_failure

    failure = _protocol_failure(getattr(errors, error)("what the agent said"))
    assert (failure.reason, failure.retryable) == (reason, retryable)
    assert "what the agent said" in failure.message


@on_module_loop
async def test_concurrent_tasks_share_one_client(remote: RemoteAgent) -> None:
    texts = [f"task {i}" for i in range(24)]
    outs = await asyncio.gather(*(remote.run("upper", {"text": t}, context()) for t in texts))
    assert outs == [{"text": t.upper()} for t in texts]


@on_module_loop
async def test_the_grpc_binding_works_as_json_rpc_does() -> None:
    async with running("--grpc") as over_grpc:
        card, url = await fetch_card(over_grpc.url)
        agent = bridge_agent(card, card_url=url, options=BridgeOptions())
        assert agent.card().metadata["a2a_transport"] == "GRPC"
        r = RemoteAgent(card, timeout_s=10)
        sink = Sink()
        try:
            assert await r.run("upper", {"text": "grpc"}, context()) == {"text": "GRPC"}
            assert await r.run("steps", {"count": 2}, context(sink)) == {"steps": 2}
            with pytest.raises(TaskFailed) as caught:
                await r.run("flaky", {"key": "grpc-flaky"}, context())
            assert caught.value.retryable
        finally:
            await r.close()
        assert sink.progress == ["step 1/2", "step 2/2"]
