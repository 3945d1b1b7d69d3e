"""An in-process double of an Ollama server's HTTP API (the endpoints the LLM agent uses).

No Ollama can be installed on the machines this project runs on, so the LLM agent is
tested against this: a real aiohttp server on 127.0.0.1 that answers the way Ollama
does, read from Ollama's API docs (docs/api.md, the OpenAPI spec at docs.ollama.com) and
what the official ``ollama`` Python client parses (``ollama/_client.py``,
``ollama/_types.py``). Everything crosses a socket.

Ollama's API:

* ``POST /api/chat`` (``model``, ``messages``, ``stream`` — true when absent —,
  ``options.num_predict``): streamed as NDJSON (``application/x-ndjson``), one object a
  line ``{model, created_at, message: {role: assistant, content: <token>}, done: false}``,
  then a final ``{..., message: {role, content: ""}, done: true, done_reason: stop|length,
  total_duration, load_duration, prompt_eval_count, prompt_eval_duration, eval_count,
  eval_duration}``; not streamed, one object with the whole message and the final fields.
* ``POST /api/generate`` (``prompt``): the same with ``response`` instead of ``message``
  (and ``context`` on the final object).
* ``GET /api/tags``: ``{models: [{name, model, modified_at, size, digest, details}]}``;
  ``GET /api/version``; ``GET /`` answers "Ollama is running".
* A model it does not have: 404 ``{"error": "model \\"x\\" not found, try pulling it
  first"}``; no model: 400 ``{"error": "model is required"}``.

And the OpenAI-compatible API Ollama also serves: ``POST /v1/chat/completions`` (SSE
``data: {chat.completion.chunk}`` lines, ``data: [DONE]`` at the end; or one
``chat.completion``), ``GET /v1/models``; errors as ``{"error": {message, type, param,
code}}``.

Controls (tests flip them between calls): ``reply`` (fixed answer text; default, a
deterministic echo of the last user message), ``token_delay_s`` and
``first_token_delay_s``, ``hang()``/``release()`` (requests accepted, never answered),
``down()`` (listener closed, open connections reset: new connections are refused) and
``up()`` (back on the same port), ``fail_next(n, status)`` and ``error_rate`` (seeded,
deterministic), ``models`` (what is installed), ``api_key`` (required bearer token).
``requests`` logs every request (path, model) so a test sees whether calls arrived.

Public surface: ``OllamaDouble`` (async context manager; ``start``/``stop``, ``url``),
``tokens_of``, ``echo_reply``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiohttp import web

DEFAULT_MODEL = "llama3.2:latest"
VERSION = "0.6.5"
_TOKEN = re.compile(r"\s*\S+")


def tokens_of(text: str) -> list[str]:
    """``text`` as the double streams it: one token per word, with its leading space."""
    return _TOKEN.findall(text)


def echo_reply(messages: Iterable[dict[str, Any]]) -> str:
    """The default answer: ``Echo: `` and the last user message (deterministic)."""
    last = ""
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "user":
            last = str(m.get("content", ""))
    return "Echo: " + " ".join(last.split())


def _key(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _now() -> str:
    # Ollama writes RFC 3339 with nanoseconds; microseconds parse the same way.
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Seen:
    """One request the double received."""

    method: str
    path: str
    model: str
    stream: bool | None


class OllamaDouble:
    """An Ollama HTTP server double on 127.0.0.1 (port 0 picks one, kept across down/up)."""

    def __init__(
        self,
        *,
        models: Iterable[str] = (DEFAULT_MODEL,),
        reply: str | None = None,
        token_delay_s: float = 0.0,
        first_token_delay_s: float = 0.0,
        api_key: str = "",
        seed: int = 0,
    ) -> None:
        self.models = {_key(m) for m in models}
        """Installed models (``name:tag``)."""
        self.reply = reply
        """The answer to every chat; None echoes the last user message."""
        self.token_delay_s = token_delay_s
        """Pause before each token after the first."""
        self.first_token_delay_s = first_token_delay_s
        """Pause before the first token (model load, prompt evaluation)."""
        self.api_key = api_key
        """Bearer token every request must carry (empty: none)."""
        self.error_rate = 0.0
        """Share of API requests answered 500 (drawn from a seeded RNG: deterministic)."""
        self.requests: list[Seen] = []
        self.port = 0
        self._rng = random.Random(seed)
        self._fail_next: list[int] = []
        self._hanging = asyncio.Event()
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._open: set[asyncio.Transport] = set()

    # -- lifecycle -----------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        """Listen (on the port it had before, once it has one)."""
        if self._runner is not None:
            return
        app = web.Application(middlewares=[_refusals])
        app.router.add_get("/", self._root)
        app.router.add_get("/api/version", self._version)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_post("/api/chat", self._chat)
        app.router.add_post("/api/generate", self._generate)
        app.router.add_get("/v1/models", self._v1_models)
        app.router.add_post("/v1/chat/completions", self._v1_chat)
        runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening and reset every open connection (a crashed server)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._released.set()  # hanging handlers end (their connections are reset anyway)
        for transport in list(self._open):
            transport.abort()
        self._open.clear()
        await runner.cleanup()
        self._released = asyncio.Event()

    async def down(self) -> None:
        """The server goes away: connections are refused until ``up``."""
        await self.stop()

    async def up(self) -> None:
        """The server comes back on the same port."""
        await self.start()

    async def __aenter__(self) -> OllamaDouble:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- controls ------------------------------------------------------------------

    def hang(self) -> None:
        """Accept requests and never answer them (until ``release`` or ``down``)."""
        self._hanging.set()
        self._released.clear()

    def release(self) -> None:
        """Answer again (hanging requests carry on)."""
        self._hanging.clear()
        self._released.set()

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` API requests (model calls and listings) with ``status``."""
        self._fail_next.extend([status] * n)

    def calls(self, path: str | None = None) -> int:
        """Requests received (to ``path`` only when given)."""
        return sum(1 for s in self.requests if path is None or s.path == path)

    # -- shared --------------------------------------------------------------------

    def _track(self, request: web.Request) -> None:
        transport = request.transport
        if isinstance(transport, asyncio.Transport):
            self._open = {t for t in self._open if not t.is_closing()}
            self._open.add(transport)

    async def _gate(self, request: web.Request, body: dict[str, Any] | None) -> None:
        """Log, authorize, hang, fail: what every request goes through."""
        self._track(request)
        model = str((body or {}).get("model", ""))
        stream = (body or {}).get("stream") if body is not None else None
        self.requests.append(Seen(request.method, request.path, model, stream))
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            raise _error(request, 401, "unauthorized")
        if self._hanging.is_set():
            await self._released.wait()
        # A failing server fails its listings too (the agent's probe must see it).
        if self._fail_next:
            raise _error(request, self._fail_next.pop(0), "the double failed on purpose")
        if self.error_rate and self._rng.random() < self.error_rate:
            raise _error(request, 500, "the double failed at random")

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise _error(request, 400, "invalid JSON body") from None
        if not isinstance(body, dict):
            raise _error(request, 400, "the body must be a JSON object")
        return body

    def _model(self, request: web.Request, body: dict[str, Any]) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _error(request, 400, "model is required")
        if _key(model) not in self.models:
            raise _error(request, 404, f'model "{model}" not found, try pulling it first')
        return model

    def _answer(self, messages: list[dict[str, Any]], limit: int | None) -> tuple[list[str], str]:
        text = self.reply if self.reply is not None else echo_reply(messages)
        tokens = tokens_of(text)
        if limit is not None and 0 < limit < len(tokens):
            return tokens[:limit], "length"
        return tokens, "stop"

    async def _tokens(self, tokens: list[str]) -> AsyncIterator[str]:
        # Delays between tokens are the point here (a model generating), not a test wait.
        for i, token in enumerate(tokens):
            await asyncio.sleep(self.first_token_delay_s if i == 0 else self.token_delay_s)
            yield token

    # -- Ollama API ----------------------------------------------------------------

    async def _root(self, request: web.Request) -> web.Response:
        self._track(request)
        return web.Response(text="Ollama is running")

    async def _version(self, request: web.Request) -> web.Response:
        await self._gate(request, None)
        return web.json_response({"version": VERSION})

    async def _tags(self, request: web.Request) -> web.Response:
        await self._gate(request, None)
        return web.json_response(
            {
                "models": [
                    {
                        "name": name,
                        "model": name,
                        "modified_at": "2026-11-30T10:00:00.000000000Z",
                        "size": 2019393189,
                        "digest": hashlib.sha256(name.encode()).hexdigest(),
                        "details": {
                            "parent_model": "",
                            "format": "gguf",
                            "family": "llama",
                            "families": ["llama"],
                            "parameter_size": "3.2B",
                            "quantization_level": "Q4_K_M",
                        },
                    }
                    for name in sorted(self.models)
                ]
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._ollama(request, chat=True)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        return await self._ollama(request, chat=False)

    async def _ollama(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        body = await self._body(request)
        await self._gate(request, body)
        model = self._model(request, body)
        if chat:
            messages = body.get("messages") or []
            if not isinstance(messages, list):
                raise _error(request, 400, "messages must be a list")
        else:
            messages = [{"role": "user", "content": str(body.get("prompt", ""))}]
        options = body.get("options") or {}
        limit = options.get("num_predict") if isinstance(options, dict) else None
        tokens, done_reason = self._answer(messages, limit if isinstance(limit, int) else None)
        started = time.monotonic_ns()
        prompt_tokens = sum(len(tokens_of(str(m.get("content", "")))) for m in messages)

        def part(content: str) -> dict[str, Any]:
            out: dict[str, Any] = {"model": model, "created_at": _now()}
            if chat:
                out["message"] = {"role": "assistant", "content": content}
            else:
                out["response"] = content
            return out

        def final(content: str) -> dict[str, Any]:
            took = time.monotonic_ns() - started
            out = part(content) | {
                "done": True,
                "done_reason": done_reason,
                "total_duration": took + 1000,
                "load_duration": 1000,
                "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": 1000,
                "eval_count": len(tokens),
                "eval_duration": took,
            }
            if not chat:
                out["context"] = list(range(1, len(tokens) + prompt_tokens + 1))
            return out

        if body.get("stream", True) is False:
            text = "".join([t async for t in self._tokens(tokens)])
            return web.json_response(final(text))
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        async for token in self._tokens(tokens):
            await response.write(_line(part(token) | {"done": False}))
        await response.write(_line(final("")))
        await response.write_eof()
        return response

    # -- OpenAI-compatible API -------------------------------------------------------

    async def _v1_models(self, request: web.Request) -> web.Response:
        await self._gate(request, None)
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": 1764496800, "owned_by": "library"}
                    for name in sorted(self.models)
                ],
            }
        )

    async def _v1_chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        await self._gate(request, body)
        model = self._model(request, body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _error(request, 400, "invalid message format")
        limit = body.get("max_tokens")
        tokens, finish = self._answer(messages, limit if isinstance(limit, int) else None)
        created = int(time.time())
        ident = f"chatcmpl-{len(self.requests)}"
        if not body.get("stream"):
            text = "".join([t async for t in self._tokens(tokens)])
            prompt_tokens = sum(len(tokens_of(str(m.get("content", "")))) for m in messages)
            return web.json_response(
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_ollama",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": finish,
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": len(tokens),
                        "total_tokens": prompt_tokens + len(tokens),
                    },
                }
            )

        def chunk(content: str, finish_reason: str | None) -> bytes:
            doc = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_ollama",
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": content},
                        "finish_reason": finish_reason,
                    }
                ],
            }
            return f"data: {json.dumps(doc, separators=(',', ':'))}\n\n".encode()

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async for token in self._tokens(tokens):
            await response.write(chunk(token, None))
        await response.write(chunk("", finish))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _line(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


class _Refusal(Exception):
    """Raised by a handler to answer with an error body (the middleware sends it)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


def _error(request: web.Request, status: int, message: str) -> _Refusal:
    """Ollama's error body on its own API, OpenAI's shape on ``/v1``."""
    if request.path.startswith("/v1/"):
        kind = "invalid_request_error" if status < 500 else "api_error"
        return _Refusal(
            status, {"error": {"message": message, "type": kind, "param": None, "code": None}}
        )
    return _Refusal(status, {"error": message})


@web.middleware
async def _refusals(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except _Refusal as refusal:
        return web.json_response(refusal.body, status=refusal.status)
    return response


__all__ = ["DEFAULT_MODEL", "OllamaDouble", "Seen", "echo_reply", "tokens_of"]
