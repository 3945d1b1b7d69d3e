"""The LLM agent against the Ollama double over real sockets, with a real registry.

Normal answers stream as progress; a server that goes down, hangs, fails or lacks
the model gets deterministic degraded answers within the deadline, a DEGRADED
health detail in the registry and the metrics; the breaker stops calls and the
agent recovers by itself when the server is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshwright.agent.llm import Degraded, LlmConfig
from meshwright.agent.llm.fallback import extractive_summary, keyword_classify
from meshwright.mesh.breaker import BreakerState
from meshwright.registry.v1 import registry_pb2
from tests.agent.conftest import Mesh
from tests.agent.llm_support import (
    REJECTED,
    TEXT,
    Running,
    check_chat_streams_progress,
    check_missing_model_degrades,
    check_summarize_and_classify,
    check_unreachable_degrades_in_time,
    free_url,
    llm_running,
)
from tests.conftest import eventually
from tests.ollama_double import OllamaDouble, tokens_of

pytestmark = pytest.mark.timeout(60)

ACTIVE = registry_pb2.AGENT_STATE_ACTIVE
LONG_REPLY = " ".join(f"word{i}" for i in range(40))


@pytest.fixture
async def double() -> AsyncIterator[OllamaDouble]:
    server = OllamaDouble(reply=LONG_REPLY)
    await server.start()
    try:
        yield server
    finally:
        server.release()
        await server.stop()


def quick(double: OllamaDouble | None = None, **fields: Any) -> LlmConfig:
    """A config that fails over and recovers in test time."""
    fields.setdefault("host", double.url if double is not None else free_url())
    base: dict[str, Any] = {
        "breaker_failures": 2,
        "breaker_open_s": 0.5,
        "probe_interval_s": 0.05,
        "first_token_timeout_s": 2.0,
        "timeout_s": 5.0,
    }
    return LlmConfig(**(base | fields))


async def detail(mesh: Mesh, running: Running) -> str:
    agent = await mesh.agent(running.runtime.agent_id)
    assert agent.state == ACTIVE  # degraded or not, it is offered work
    return agent.health_detail


# -- normal answers ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["ollama", "openai"])
async def test_answers_stream_as_batched_progress(
    mesh: Mesh, double: OllamaDouble, backend: str
) -> None:
    double.token_delay_s = 0.002
    config = quick(double, backend=backend, progress_every_tokens=8, progress_interval_s=30)
    async with llm_running(mesh.address, config) as running:
        await check_chat_streams_progress(running)
        updates, task = await running.stream("llm.chat", {"prompt": "go"})
        texts = [u.message for u in updates if u.message]
        # 40 tokens every 8: at most 5 reports (coalescing may merge some), not 40.
        assert 1 <= len(texts) <= 5 and texts[-1] == LONG_REPLY
        path = "/api/chat" if backend == "ollama" else "/v1/chat/completions"
        sent = [s for s in double.requests if s.path == path]
        assert sent and all(s.stream is True and s.model == "llama3.2" for s in sent)
        assert await detail(mesh, running) == ""
        assert running.metric("meshwright_llm_requests_total", outcome="ok") == 2
        assert running.metric("meshwright_llm_degraded") == 0


async def test_a_slow_stream_is_reported_by_time_not_by_token(
    mesh: Mesh, double: OllamaDouble
) -> None:
    double.reply = " ".join(f"w{i}" for i in range(20))
    double.token_delay_s = 0.02  # 20 tokens over about 0.4 s
    config = quick(double, progress_every_tokens=1000, progress_interval_s=0.1)
    async with llm_running(None, config) as running:
        updates, task = await running.stream("llm.chat", {"prompt": "go"})
        texts = [u.message for u in updates if u.message]
        # About one report a 0.1 s plus the last; never one a token.
        assert 2 <= len(texts) <= 10 and texts[-1] == double.reply


async def test_a_flaky_server_degrades_some_answers_and_keeps_the_rest(
    mesh: Mesh, double: OllamaDouble
) -> None:
    config = quick(double, breaker_failures=100, probe_interval_s=60.0)  # no probe draws
    async with llm_running(None, config) as running:
        await eventually(lambda: double.calls("/api/tags") >= 1)
        double.error_rate = 0.5  # seeded: the same requests fail on every run
        outs = [await running.run("llm.chat", {"prompt": f"q{i}"}) for i in range(10)]
        reasons = {o.get("degraded_reason", "ok") for o in outs}
        assert reasons == {"ok", "server_error"}
        double.error_rate = 0.0
        assert (await running.run("llm.chat", {"prompt": "q"}))["degraded"] is False
        assert not running.guard.degraded


async def test_summarize_and_classify_use_the_model(mesh: Mesh, double: OllamaDouble) -> None:
    async with llm_running(mesh.address, quick(double)) as running:
        await check_summarize_and_classify(running)
        double.reply = "Sports."
        got = await running.run("llm.classify", {"text": TEXT, "labels": ["history", "sports"]})
        assert got["label"] == "sports" and got["degraded"] is False
        assert got["scores"] == {"history": 0.0, "sports": 1.0}
        double.reply = "A short summary."
        got = await running.run("llm.summarize", {"text": TEXT})
        assert got["summary"] == "A short summary." and got["degraded"] is False


async def test_an_unusable_label_answer_falls_back_without_blaming_the_server(
    mesh: Mesh, double: OllamaDouble
) -> None:
    double.reply = "I cannot decide."
    async with llm_running(mesh.address, quick(double)) as running:
        labels = ["history", "cooking"]
        got = await running.run("llm.classify", {"text": TEXT, "labels": labels})
        assert got["degraded"] is True and got["degraded_reason"] == "unclear_answer"
        assert (got["label"], got["scores"]) == (
            keyword_classify(TEXT, labels)[0],
            keyword_classify(TEXT, labels)[1],
        )
        assert not running.guard.degraded and await detail(mesh, running) == ""


# -- degradation ---------------------------------------------------------------------


async def test_server_down_degrades_reports_and_recovers_by_itself(
    mesh: Mesh, double: OllamaDouble
) -> None:
    async with llm_running(mesh.address, quick(double)) as running:
        assert (await running.run("llm.chat", {"prompt": "hi"}))["degraded"] is False
        await double.down()

        started = time.monotonic()
        out = await running.run("llm.summarize", {"text": TEXT, "max_sentences": 2}, timeout=3)
        assert time.monotonic() - started < 3
        assert out["degraded"] is True and out["degraded_reason"] == "unreachable"
        assert out["summary"] == extractive_summary(TEXT, 2)
        assert running.metric("meshwright_llm_degraded") == 1
        assert (
            running.metric(
                "meshwright_llm_fallback_total", skill="llm.summarize", reason="unreachable"
            )
            == 1
        )

        async def reported() -> bool:
            return (await detail(mesh, running)).startswith("DEGRADED: model server unreachable")

        await eventually(reported)
        # Classification and chat degrade too, each its own way.
        got = await running.run("llm.classify", {"text": TEXT, "labels": ["cooking", "trade"]})
        assert got["degraded"] is True and got["label"] == "trade"
        chat = await running.run("llm.chat", {"prompt": "Where is my order?"})
        assert chat["degraded"] is True and "Where is my order?" in chat["text"]

        await double.up()

        async def cleared() -> bool:
            return await detail(mesh, running) == ""

        await eventually(cleared)  # the probe found the server; no task had to
        assert running.metric("meshwright_llm_degraded") == 0
        assert (await running.run("llm.chat", {"prompt": "hi"}))["degraded"] is False


async def test_breaker_opens_stops_calling_then_a_probe_closes_it(
    mesh: Mesh, double: OllamaDouble
) -> None:
    config = quick(double, breaker_open_s=2.0)
    async with llm_running(mesh.address, config) as running:
        breaker = running.guard.breaker
        double.error_rate = 1.0  # every request answers 500, listings included
        out = await running.run("llm.chat", {"prompt": "hi"})
        assert out["degraded"] is True and out["degraded_reason"] == "server_error"
        await eventually(lambda: breaker.state is BreakerState.OPEN)  # a task or the probe
        assert running.metric("meshwright_llm_breaker_state") == 2

        seen = double.calls()
        started = time.monotonic()
        for _ in range(3):
            out = await running.run("llm.chat", {"prompt": "hi"})
            assert out["degraded"] is True and out["degraded_reason"] == "breaker_open"
        assert time.monotonic() - started < 1.0  # answered at once, without the server
        assert double.calls() == seen  # and the server saw none of it
        assert (
            running.metric("meshwright_llm_fallback_total", skill="llm.chat", reason="breaker_open")
            == 3
        )

        double.error_rate = 0.0
        await eventually(lambda: breaker.state is BreakerState.CLOSED, timeout=10)
        assert breaker.times_opened >= 1
        assert double.calls("/api/tags") >= 1  # closed by a half-open probe
        assert (await running.run("llm.chat", {"prompt": "hi"}))["degraded"] is False
        assert running.metric("meshwright_llm_breaker_state") == 0

        async def cleared() -> bool:
            return await detail(mesh, running) == ""

        await eventually(cleared)


async def test_slower_than_the_task_deadline_answers_degraded_in_time(
    mesh: Mesh, double: OllamaDouble
) -> None:
    double.first_token_delay_s = 10.0
    config = quick(double, first_token_timeout_s=20.0, timeout_s=30.0)
    async with llm_running(mesh.address, config) as running:
        started = time.monotonic()
        out = await running.run("llm.summarize", {"text": TEXT}, timeout=1.5)
        assert time.monotonic() - started < 1.5
        assert out["degraded"] is True and out["degraded_reason"] == "timeout"
        assert out["summary"] == extractive_summary(TEXT, 3)
        # Only the caller's short deadline ran out: not held against the server.
        assert running.guard.breaker.consecutive_failures == 0
        assert not running.guard.degraded

        # No time at all for the model: not even tried.
        calls = running.guard.calls
        with pytest.raises(Degraded) as caught:
            await running.guard.call(lambda backend: asyncio.sleep(0), budget_s=0.01)
        assert caught.value.reason == "deadline" and running.guard.calls == calls


async def test_a_hanging_server_past_the_first_token_timeout_counts(
    mesh: Mesh, double: OllamaDouble
) -> None:
    async with llm_running(mesh.address, quick(double, first_token_timeout_s=0.3)) as running:
        await eventually(lambda: double.calls("/api/tags") >= 1)  # the first probe passed
        await eventually(lambda: not running.guard.degraded)
        double.hang()
        out = await running.run("llm.chat", {"prompt": "hi"}, timeout=5)
        assert out["degraded"] is True and out["degraded_reason"] == "timeout"
        assert running.guard.degraded_reason in ("timeout", "breaker_open", "")
        assert running.guard.breaker.consecutive_failures >= 1 or (
            running.guard.breaker.state is not BreakerState.CLOSED
        )

        async def reported() -> bool:
            return (await detail(mesh, running)).startswith("DEGRADED: model server too slow")

        await eventually(reported)
        double.release()

        async def cleared() -> bool:
            return await detail(mesh, running) == ""

        await eventually(cleared, timeout=10)


async def test_a_missing_model_degrades_and_recovers_once_pulled(
    mesh: Mesh, double: OllamaDouble
) -> None:
    double.models = {"qwen2.5:0.5b"}
    async with llm_running(mesh.address, quick(double)) as running:

        async def reported() -> bool:
            # The first probe finds it before any task does.
            return (await detail(mesh, running)).startswith("DEGRADED: model missing")

        await eventually(reported)
        await check_missing_model_degrades(running)
        double.models.add("llama3.2:latest")  # ollama pull llama3.2

        async def cleared() -> bool:
            return await detail(mesh, running) == ""

        await eventually(cleared, timeout=10)
        assert (await running.run("llm.chat", {"prompt": "hi"}))["degraded"] is False


async def test_a_missing_model_answers_404_as_ollama_does(double: OllamaDouble) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=double.url) as client:
        r = await client.post("/api/chat", json={"model": "x", "messages": []})
        assert r.status_code == 404
        assert r.json() == {"error": 'model "x" not found, try pulling it first'}
        r = await client.post("/api/generate", json={"model": "llama3.2", "prompt": "a b"})
        lines = [line for line in r.text.splitlines() if line]
        assert r.headers["content-type"].startswith("application/x-ndjson")
        assert '"done":true' in lines[-1] and '"response"' in lines[0]
        r = await client.post(
            "/api/chat",
            json={
                "model": "llama3.2",
                "messages": [{"role": "user", "content": "x"}],
                "stream": False,
            },
        )
        body = r.json()
        assert body["done"] is True and body["message"]["content"] == LONG_REPLY
        assert body["eval_count"] == len(tokens_of(LONG_REPLY))


async def test_openai_backend_degrades_and_recovers(mesh: Mesh, double: OllamaDouble) -> None:
    async with llm_running(mesh.address, quick(double, backend="openai")) as running:
        assert (await running.run("llm.chat", {"prompt": "hi"}))["degraded"] is False
        await double.down()
        out = await running.run("llm.chat", {"prompt": "hi"})
        assert out["degraded"] is True and out["degraded_reason"] == "unreachable"
        await double.up()
        await eventually(lambda: not running.guard.degraded)
        assert (await running.run("llm.chat", {"prompt": "hi"}))["degraded"] is False
    async with llm_running(None, quick(double, backend="openai", model="gpt-x")) as running:
        await check_missing_model_degrades(running)


async def test_an_api_key_is_sent_as_a_bearer_token(mesh: Mesh, double: OllamaDouble) -> None:
    double.api_key = "s3cret"
    for backend in ("ollama", "openai"):
        async with llm_running(None, quick(double, backend=backend)) as running:
            out = await running.run("llm.chat", {"prompt": "hi"})
            assert out["degraded"] is True  # 401 without the key
        config = quick(double, backend=backend, api_key="s3cret")
        assert "s3cret" not in repr(config)
        async with llm_running(None, config) as running:
            assert (await running.run("llm.chat", {"prompt": "hi"}))["degraded"] is False


async def test_nothing_listening_degrades_in_time(mesh: Mesh) -> None:
    async with llm_running(mesh.address, quick(None)) as running:
        await check_unreachable_degrades_in_time(running)


# -- input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("skill", "input", "says"),
    [
        ("llm.chat", {}, "either messages"),
        ("llm.chat", {"prompt": "a", "messages": []}, "either messages"),
        ("llm.chat", {"prompt": "  "}, "non-empty"),
        ("llm.chat", {"messages": [{"role": "robot", "content": "x"}]}, "messages[0]"),
        ("llm.chat", {"prompt": "x" * 101}, "at most 100"),
        ("llm.summarize", {"text": ""}, "input.text"),
        ("llm.summarize", {"text": "x" * 101}, "at most 100"),
        ("llm.summarize", {"text": "x", "max_sentences": 21}, "max_sentences"),
        ("llm.classify", {"text": "x", "labels": ["one"]}, "input.labels"),
        ("llm.classify", {"text": "x", "labels": ["a", "A"]}, "repeat"),
        ("llm.classify", {"text": "x", "labels": ["a", "b"], "keywords": {"c": []}}, "keywords"),
    ],
)
async def test_bad_input_is_rejected_without_calling_the_server(
    double: OllamaDouble, skill: str, input: dict[str, Any], says: str
) -> None:
    async with llm_running(None, quick(double, max_input_chars=100)) as running:
        await eventually(lambda: double.calls("/api/tags") >= 1)
        calls = double.calls()
        task = await running.execute(skill, input)
        assert task.status.state == REJECTED and says in task.status.message
        assert double.calls() == calls


async def test_input_at_the_limit_is_accepted(double: OllamaDouble) -> None:
    async with llm_running(None, quick(double, max_input_chars=100)) as running:
        assert (await running.run("llm.chat", {"prompt": "x" * 100}))["degraded"] is False
        out = await running.run("llm.summarize", {"text": "x" * 100, "max_sentences": 20})
        assert out["degraded"] is False


# -- lifecycle -----------------------------------------------------------------------


async def test_stopping_closes_the_probe_and_the_client(double: OllamaDouble) -> None:
    async with llm_running(None, quick(double)) as running:
        guard = running.guard
        assert (await running.run("llm.chat", {"prompt": "hi"}))["degraded"] is False
        tasks = list(guard._tasks)
    assert all(t.done() for t in tasks) and guard._backend is None
