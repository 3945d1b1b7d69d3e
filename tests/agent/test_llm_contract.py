"""The Ollama contract: the same checks against the double and, when ``OLLAMA_HOST`` is
set, against a real Ollama server (the only skip of the LLM suites).

Two layers: the wire (what ``/api/chat``, ``/api/generate``, ``/api/tags`` and the
OpenAI-compatible ``/v1`` routes answer: the double must answer like the real thing,
or the agent's tests prove nothing) and the agent's behaviour on top (streamed
answers, summaries and labels, a missing model degrading).

Against a real server: ``OLLAMA_HOST=http://127.0.0.1:11434`` and optionally
``OLLAMA_MODEL`` (else the first model the server lists; pull a small one first,
e.g. ``ollama pull qwen2.5:0.5b``).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from meshwright.agent.llm import LlmConfig
from tests.agent.llm_support import (
    check_chat_streams_progress,
    check_missing_model_degrades,
    check_summarize_and_classify,
    llm_running,
)
from tests.ollama_double import OllamaDouble

pytestmark = pytest.mark.timeout(300)  # a real server may load the model first

MISSING = "meshwright-contract-missing-model"
MESSAGES = [{"role": "user", "content": "Say hello in three words."}]


@dataclass
class Server:
    url: str
    model: str
    real: bool


def _real_host() -> str:
    host = os.environ.get("OLLAMA_HOST", "")
    return host if "://" in host else f"http://{host}"


@pytest.fixture(
    params=[
        "double",
        pytest.param(
            "ollama",
            marks=pytest.mark.skipif(
                not os.environ.get("OLLAMA_HOST"),
                reason="a real Ollama runs the contract only when OLLAMA_HOST is set",
            ),
        ),
    ]
)
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    if request.param == "double":
        async with OllamaDouble() as double:
            yield Server(double.url, "llama3.2", real=False)
        return
    url = _real_host()
    model = os.environ.get("OLLAMA_MODEL", "")
    if not model:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            listed = (await client.get("/api/tags")).json()["models"]
        assert listed, f"{url} has no model: ollama pull one (e.g. qwen2.5:0.5b)"
        model = listed[0]["model"]
    yield Server(url, model, real=True)


def config(server: Server, **fields: Any) -> LlmConfig:
    base: dict[str, Any] = {
        "host": server.url,
        "model": server.model,
        "max_tokens": 48,
        "timeout_s": 240.0,
        "first_token_timeout_s": 180.0,
        "progress_every_tokens": 4,
    }
    return LlmConfig(**(base | fields))


def _lines(body: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


# -- the wire --------------------------------------------------------------------------


async def test_chat_streams_ndjson(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=240) as client:
        body = {"model": server.model, "messages": MESSAGES, "options": {"num_predict": 8}}
        r = await client.post("/api/chat", json=body)  # stream is the default
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    parts = _lines(r.text)
    *tokens, final = parts
    for part in tokens:
        assert part["done"] is False and isinstance(part["created_at"], str)
        message = part["message"]
        assert isinstance(message, dict) and message["role"] == "assistant"
        assert isinstance(message["content"], str)
    assert final["done"] is True and final["done_reason"] in ("stop", "length")
    for field in ("total_duration", "load_duration", "prompt_eval_count", "eval_count"):
        assert isinstance(final[field], int), field
    assert final["model"] == server.model


async def test_chat_and_generate_without_streaming(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=240) as client:
        chat = await client.post(
            "/api/chat",
            json={"model": server.model, "messages": MESSAGES, "stream": False},
        )
        generate = await client.post(
            "/api/generate",
            json={"model": server.model, "prompt": "Say hi.", "options": {"num_predict": 8}},
        )
    one = chat.json()
    assert one["done"] is True and one["message"]["content"] and one["eval_count"] >= 1
    *tokens, final = _lines(generate.text)
    assert all(isinstance(p["response"], str) and p["done"] is False for p in tokens)
    assert final["done"] is True and isinstance(final["context"], list)


async def test_tags_list_the_model_and_a_missing_one_is_404(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        tags = (await client.get("/api/tags")).json()
        missing = await client.post("/api/chat", json={"model": MISSING, "messages": MESSAGES})
    names = {m["model"] for m in tags["models"]} | {m["name"] for m in tags["models"]}
    assert server.model in names or f"{server.model}:latest" in names
    for m in tags["models"]:
        assert isinstance(m["size"], int) and isinstance(m["details"], dict)
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert f'model "{MISSING}" not found' in error


async def test_the_openai_compatible_api_streams_sse(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=240) as client:
        models = (await client.get("/v1/models")).json()
        r = await client.post(
            "/v1/chat/completions",
            json={"model": server.model, "messages": MESSAGES, "stream": True, "max_tokens": 8},
        )
        missing = await client.post(
            "/v1/chat/completions", json={"model": MISSING, "messages": MESSAGES}
        )
    assert models["object"] == "list" and all(m["object"] == "model" for m in models["data"])
    assert r.headers["content-type"].startswith("text/event-stream")
    data = [line[len("data: ") :] for line in r.text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert missing.status_code == 404 and "message" in missing.json()["error"]


# -- the agent on top ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["ollama", "openai"])
async def test_the_agent_streams_answers(server: Server, backend: str) -> None:
    async with llm_running(None, config(server, backend=backend)) as running:
        await check_chat_streams_progress(running)


async def test_the_agent_summarizes_and_classifies(server: Server) -> None:
    async with llm_running(None, config(server)) as running:
        await check_summarize_and_classify(running)


async def test_the_agent_degrades_for_a_missing_model(server: Server) -> None:
    async with llm_running(None, config(server, model=MISSING)) as running:
        await check_missing_model_degrades(running)
