"""What a model backend is, how its failures are named, and one streamed call with timeouts.

A backend (``_ollama``, ``_openai``) turns a chat into a stream of ``Piece``s and
every way the server can fail into a ``ModelFailure`` with a short reason. The
reasons are the fallback's ``degraded_reason`` and a metric label, so they are a
closed set.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

UNREACHABLE = "unreachable"
"""The server refused or dropped the connection."""
TIMEOUT = "timeout"
"""No first token, or no whole answer, within the time allowed."""
MODEL_MISSING = "model_missing"
"""The server runs but does not have the model (Ollama: 404 "model ... not found")."""
SERVER_ERROR = "server_error"
"""The server answered with an error (5xx, a refused request, an error in the stream)."""
BAD_REPLY = "bad_reply"
"""The server answered something that is not the protocol."""
BREAKER_OPEN = "breaker_open"
"""Not called: the circuit breaker is open after repeated failures."""
NO_TIME = "deadline"
"""Not called: the task's deadline leaves no time for the model."""
UNCLEAR = "unclear_answer"
"""The model answered, but not in a form the skill can use (e.g. no known label)."""

FAILURE_REASONS = (UNREACHABLE, TIMEOUT, MODEL_MISSING, SERVER_ERROR, BAD_REPLY)
"""Reasons a model call fails with."""
FALLBACK_REASONS = (*FAILURE_REASONS, BREAKER_OPEN, NO_TIME, UNCLEAR)
"""Reasons an answer comes from the fallback."""

DESCRIPTIONS = {
    UNREACHABLE: "model server unreachable",
    TIMEOUT: "model server too slow",
    MODEL_MISSING: "model missing on the server",
    SERVER_ERROR: "model server failing",
    BAD_REPLY: "model server answers garbage",
    BREAKER_OPEN: "model server failing repeatedly (circuit open)",
    NO_TIME: "no time left for the model",
    UNCLEAR: "model answer unusable",
}
"""Each reason in words (health details, messages)."""

Message = dict[str, str]
"""A chat message: ``{"role": "user", "content": "..."}``."""


class ModelFailure(Exception):
    """A model call (or probe) failed; ``reason`` is one of ``FAILURE_REASONS``."""

    def __init__(self, reason: str, message: str, *, counts: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.counts = counts
        """Whether it says something about the server (False: only the task's own short
        deadline ran out), so the circuit breaker counts it."""


@dataclass(frozen=True, slots=True)
class Piece:
    """One streamed chunk: some text, and on the last one why it ended."""

    text: str
    done_reason: str | None = None
    """Set on the last piece (``stop``, ``length``)."""
    tokens: int | None = None
    """Tokens generated in all, where the server says (Ollama's ``eval_count``)."""


class ModelBackend(Protocol):
    """A model server behind one API."""

    kind: str
    """``ollama`` or ``openai``."""

    def stream(
        self, messages: Sequence[Message], *, max_tokens: int
    ) -> AsyncGenerator[Piece, None]:
        """The answer to ``messages`` as it is generated; raises ``ModelFailure``."""
        ...

    async def probe(self) -> None:
        """Return if the server is up and has the model; raise ``ModelFailure`` otherwise."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole model answer."""

    text: str
    tokens: int
    done_reason: str
    first_token_s: float
    """Seconds until the first piece arrived."""


async def complete(
    backend: ModelBackend,
    messages: Sequence[Message],
    *,
    max_tokens: int,
    first_token_timeout_s: float,
    timeout_s: float,
    budget_s: float,
    on_text: Callable[[str, int], Awaitable[None]],
    every_tokens: int,
    every_s: float,
) -> Answer:
    """Stream one answer, reporting the text so far through ``on_text(text, tokens)`` at
    most every ``every_tokens`` pieces or ``every_s`` seconds (whichever first), plus
    once at the end. Raises ``ModelFailure(TIMEOUT)`` past ``first_token_timeout_s`` for
    the first piece or ``timeout_s`` for all, both cut to ``budget_s`` (what the task's
    deadline leaves; such a timeout does not count against the server), and whatever the
    backend raises."""
    limit = min(timeout_s, budget_s)
    first_limit = min(first_token_timeout_s, limit)
    started = time.monotonic()
    first_token_s = 0.0
    parts: list[str] = []
    pieces = 0
    reported = 0
    last_report = started
    done_reason = ""
    tokens: int | None = None
    stream = backend.stream(messages, max_tokens=max_tokens)
    try:
        async with asyncio.timeout(limit) as whole:
            try:
                async with asyncio.timeout(first_limit):
                    piece = await anext(stream, None)
            except TimeoutError:
                if whole.expired():
                    raise
                raise ModelFailure(
                    TIMEOUT,
                    f"no first token within {first_limit:.3g}s",
                    counts=first_limit >= first_token_timeout_s,
                ) from None
            first_token_s = time.monotonic() - started
            while piece is not None:
                if piece.text:
                    parts.append(piece.text)
                    pieces += 1
                if piece.done_reason is not None:
                    done_reason = piece.done_reason
                    tokens = piece.tokens
                now = time.monotonic()
                if pieces - reported >= every_tokens or (
                    pieces > reported and now - last_report >= every_s
                ):
                    reported, last_report = pieces, now
                    await on_text("".join(parts), pieces)
                piece = await anext(stream, None)
    except TimeoutError:
        raise ModelFailure(
            TIMEOUT, f"no whole answer within {limit:.3g}s", counts=limit >= timeout_s
        ) from None
    finally:
        with contextlib.suppress(Exception):
            await stream.aclose()
    text = "".join(parts)
    if pieces > reported:
        await on_text(text, pieces)
    return Answer(
        text=text,
        tokens=tokens if tokens is not None else pieces,
        done_reason=done_reason or "stop",
        first_token_s=first_token_s,
    )


__all__ = [
    "BAD_REPLY",
    "BREAKER_OPEN",
    "DESCRIPTIONS",
    "FAILURE_REASONS",
    "FALLBACK_REASONS",
    "MODEL_MISSING",
    "NO_TIME",
    "SERVER_ERROR",
    "TIMEOUT",
    "UNCLEAR",
    "UNREACHABLE",
    "Answer",
    "Message",
    "ModelBackend",
    "ModelFailure",
    "Piece",
    "complete",
]
