"""Any OpenAI-compatible server: ``POST /v1/chat/completions`` streamed as server-sent
events (``data: {chunk}`` lines, ending ``data: [DONE]``), ``GET /v1/models`` as the probe.

Plain httpx, no SDK: the wire format is small and this keeps the dependency list
short. Imported only when such a backend is made.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import httpx

from meshwright.agent.llm._model import (
    BAD_REPLY,
    MODEL_MISSING,
    SERVER_ERROR,
    UNREACHABLE,
    Message,
    ModelFailure,
    Piece,
)
from meshwright.agent.llm.config import LlmConfig


def base_url(host: str) -> str:
    """The server root: ``host`` without a trailing ``/`` or ``/v1``."""
    root = host.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _same_model(a: str, b: str) -> bool:
    # Ollama's OpenAI API lists "llama3.2:latest" for "llama3.2".
    return a.removesuffix(":latest") == b.removesuffix(":latest")


def _error_text(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:300]
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return str(err or doc)[:300]


def _status_failure(status: int, body: bytes) -> ModelFailure:
    text = _error_text(body)
    if status == 404:
        return ModelFailure(MODEL_MISSING, text)
    return ModelFailure(SERVER_ERROR, f"HTTP {status}: {text}")


class OpenAIBackend:
    """An OpenAI-compatible chat completions endpoint."""

    kind = "openai"

    def __init__(self, config: LlmConfig) -> None:
        headers = {"authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        # No client timeout: the caller bounds every call with its own deadline.
        self._client = httpx.AsyncClient(
            base_url=base_url(config.host), headers=headers, timeout=None
        )
        self._model = config.model

    async def stream(
        self, messages: Sequence[Message], *, max_tokens: int
    ) -> AsyncGenerator[Piece, None]:
        body = {
            "model": self._model,
            "messages": list(messages),
            "stream": True,
            "max_tokens": max_tokens,
        }
        try:
            async with self._client.stream("POST", "/v1/chat/completions", json=body) as r:
                if r.status_code != 200:
                    raise _status_failure(r.status_code, await r.aread())
                async for line in r.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments (": keep-alive"), event names
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        return
                    piece = _piece(data)
                    if piece is not None:
                        yield piece
        except httpx.TransportError as err:
            raise ModelFailure(UNREACHABLE, f"{type(err).__name__}: {err}") from None
        raise ModelFailure(BAD_REPLY, "the stream ended without data: [DONE]")

    async def probe(self) -> None:
        try:
            r = await self._client.get("/v1/models")
        except httpx.TransportError as err:
            raise ModelFailure(UNREACHABLE, f"{type(err).__name__}: {err}") from None
        if r.status_code != 200:
            failure = _status_failure(r.status_code, r.content)
            # A 404 here is a server without the listing, not a missing model.
            raise ModelFailure(SERVER_ERROR, failure.message) if r.status_code == 404 else failure
        try:
            ids = [str(m.get("id", "")) for m in r.json().get("data") or []]
        except (ValueError, AttributeError) as err:
            raise ModelFailure(BAD_REPLY, f"/v1/models: {err}") from None
        if not any(_same_model(i, self._model) for i in ids):
            raise ModelFailure(MODEL_MISSING, f"model {self._model!r} is not on the server")

    async def close(self) -> None:
        await self._client.aclose()


def _piece(data: str) -> Piece | None:
    try:
        chunk: Any = json.loads(data)
    except ValueError:
        raise ModelFailure(BAD_REPLY, f"not JSON in the stream: {data[:100]!r}") from None
    if not isinstance(chunk, dict):
        raise ModelFailure(BAD_REPLY, f"not a chunk: {data[:100]!r}")
    if "error" in chunk:
        raise ModelFailure(SERVER_ERROR, _error_text(data.encode()))
    choices = chunk.get("choices") or []
    if not choices:
        return None  # e.g. a usage-only chunk
    choice = choices[0] if isinstance(choices[0], dict) else {}
    delta = choice.get("delta") or {}
    text = str(delta.get("content") or "")
    finish = choice.get("finish_reason")
    usage = chunk.get("usage") or {}
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return Piece(
        text,
        done_reason=str(finish) if finish else None,
        tokens=int(tokens) if isinstance(tokens, int) else None,
    )


__all__ = ["OpenAIBackend", "base_url"]
