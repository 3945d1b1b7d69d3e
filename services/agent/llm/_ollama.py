"""Ollama through the official ``ollama`` client (``AsyncClient``), streamed.

Imported only when an Ollama backend is made, so importing the agent SDK (or
this package) does not load ``ollama`` and ``httpx``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, Sequence
from typing import cast

import httpx
import ollama
import pydantic

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


def model_key(name: str) -> str:
    """A model name as Ollama lists it: ``llama3.2`` is ``llama3.2:latest``."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _failure(err: BaseException) -> ModelFailure:
    """The ``ModelFailure`` for whatever the client raised."""
    if isinstance(err, ollama.ResponseError):
        if err.status_code == 404:
            return ModelFailure(MODEL_MISSING, str(err.error))
        return ModelFailure(SERVER_ERROR, str(err))
    # The client turns a refused connection into the builtin ConnectionError; a server
    # that dies mid-answer surfaces as httpx's transport errors.
    if isinstance(err, (ConnectionError, httpx.TransportError)):
        return ModelFailure(UNREACHABLE, f"{type(err).__name__}: {err}")
    return ModelFailure(BAD_REPLY, f"{type(err).__name__}: {err}")


_CLIENT_ERRORS = (
    ollama.ResponseError,
    ConnectionError,
    httpx.HTTPError,
    json.JSONDecodeError,
    pydantic.ValidationError,
)


class OllamaBackend:
    """``/api/chat`` with ``stream=True``; ``/api/tags`` as the probe."""

    kind = "ollama"

    def __init__(self, config: LlmConfig) -> None:
        headers = {"authorization": f"Bearer {config.api_key}"} if config.api_key else None
        # No client timeout: the caller bounds every call with its own deadline.
        self._client = ollama.AsyncClient(host=config.host, headers=headers, timeout=None)
        self._model = config.model

    async def stream(
        self, messages: Sequence[Message], *, max_tokens: int
    ) -> AsyncGenerator[Piece, None]:
        try:
            answer = await self._client.chat(
                model=self._model,
                messages=list(messages),
                stream=True,
                options={"num_predict": max_tokens},
            )
            # Closed with this generator (a timeout, a cancel), so the response's
            # connection goes back at once instead of when the garbage collector finds it.
            # The client types it an AsyncIterator; it is an async generator.
            parts = cast(AsyncGenerator[ollama.ChatResponse, None], answer)
            async with contextlib.aclosing(parts):
                async for part in parts:
                    text = part.message.content or ""
                    if part.done:
                        yield Piece(
                            text, done_reason=part.done_reason or "stop", tokens=part.eval_count
                        )
                        return
                    yield Piece(text)
        except _CLIENT_ERRORS as err:
            raise _failure(err) from None
        raise ModelFailure(BAD_REPLY, "the answer ended without a final (done) message")

    async def probe(self) -> None:
        try:
            listed = await self._client.list()
        except _CLIENT_ERRORS as err:
            raise _failure(err) from None
        names = {model_key(m.model) for m in listed.models if m.model}
        if model_key(self._model) not in names:
            raise ModelFailure(
                MODEL_MISSING, f"model {self._model!r} is not on the server (ollama pull it)"
            )

    async def close(self) -> None:
        await self._client.close()


__all__ = ["OllamaBackend", "model_key"]
