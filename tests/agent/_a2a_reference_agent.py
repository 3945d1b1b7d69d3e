"""A reference A2A agent built only on a2a-sdk (no meshwright), run as its own process.

::

    python tests/agent/_a2a_reference_agent.py --port 0

prints one line once it listens, ``A2A_AGENT url=http://127.0.0.1:PORT card=<card url>``,
and serves until SIGTERM/SIGINT. It is the external agent of the A2A inbound bridge's
tests and the a2a-sdk baseline of the A2A benchmark, so its ``upper`` skill does the same
trivial work as meshwright's sample ``text.upper``.

Skills (the skill is named by the message's ``metadata["skill"]``, the convention of
both directions of meshwright's A2A bridge; the input is the message's first DataPart,
with its TextParts joined as ``text`` when the data has none):

- ``echo``: the text back; ``upper``: the text in upper case (``{"text": ...}``, as
  ``text.upper``).
- ``sum``: ``{"numbers": [...]}`` -> an artifact named ``output`` with ``{"sum": n}``.
- ``flaky``: FAILED on the first attempt of each key (``input["key"]``, else the
  context id), COMPLETED after: the engine's retries are seen working.
- ``slow``: ``input["seconds"]`` (default 30) of WORKING status updates, 10 a second;
  cancellation is recorded.
- ``steps``: ``input["count"]`` (default 3) WORKING updates ``step i/n`` and artifacts
  ``step-i``, ``input["interval"]`` seconds apart (default 0.02), then the output.
- ``reject``: REJECTED; ``need-input``: INPUT_REQUIRED.
- ``Text.Reverse``: the text reversed; its id is not a meshwright skill id on purpose.

Test hooks (plain HTTP beside the A2A endpoints):

- ``GET /_test/calls``: every message received, with the ``traceparent`` and
  ``authorization`` headers it came with; ``GET /_test/cancels``: task ids canceled.
- ``POST /_test/fail-http`` ``{"count": n}``: the next n JSON-RPC calls answer HTTP 500.
- ``GET /_test/not-json.json``: 200 with a body that is not JSON (a bad card URL).

Flags: ``--no-streaming`` (the card says it does not stream), ``--no-skills`` (a card
with none), ``--rest`` (the HTTP+JSON binding under ``/rest`` instead of JSON-RPC),
``--grpc`` (gRPC on a port of its own instead of JSON-RPC; the card stays on HTTP),
``--token-file F`` (JSON-RPC calls need ``Authorization: Bearer <F's text>``),
``--price SKILL=N`` (a meshwright pricing extension on the card).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn
from a2a.helpers import (
    get_data_parts,
    get_text_parts,
    new_data_artifact,
    new_data_part,
    new_task,
    new_text_message,
    new_text_part,
)
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import (
    create_agent_card_routes,
    create_jsonrpc_routes,
    create_rest_routes,
)
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentExtension,
    AgentInterface,
    AgentSkill,
    Message,
    TaskState,
)
from google.protobuf import struct_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

PRICING_EXTENSION = "https://meshwright.dev/a2a/ext/pricing"
"""The card extension whose params map skill ids to prices (meshwright's convention)."""

RPC_PATH = "/"
REST_PREFIX = "/rest"

SKILLS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("echo", "Echo", "input.text back, unchanged.", ("text",)),
    ("upper", "Upper case", "input.text in upper case, as meshwright's text.upper.", ("text",)),
    ("sum", "Sum", "input.numbers added up; the output artifact holds {sum}.", ("data",)),
    ("flaky", "Flaky", "Fails the first attempt of each input.key.", ("test",)),
    ("slow", "Slow", "Reports progress for input.seconds; cancelable.", ("test",)),
    ("steps", "Steps", "input.count progress updates and artifacts.", ("test", "stream")),
    ("reject", "Reject", "Always rejects the task.", ("test",)),
    ("need-input", "Needs input", "Asks for more input.", ("test",)),
    ("Text.Reverse", "Reverse", "input.text reversed.", ("text",)),
)


class Journal:
    """What the agent saw, for tests to read through ``/_test``."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.cancels: list[str] = []
        self.flaky_seen: set[str] = set()
        self.fail_http = 0


def _input_of(context: RequestContext) -> dict[str, Any]:
    message = context.message
    if message is None:
        return {}
    data: dict[str, Any] = {}
    for value in get_data_parts(message.parts):
        if isinstance(value, dict):
            data = value
            break
    texts = get_text_parts(message.parts)
    if texts and "text" not in data:
        data = {**data, "text": "\n".join(texts)}
    return data


def _skill_of(context: RequestContext) -> str:
    message = context.message
    if message is None or not message.HasField("metadata"):
        return "echo"
    skill = message.metadata.fields.get("skill")
    return skill.string_value if skill is not None and skill.string_value else "echo"


class ReferenceExecutor(AgentExecutor):
    """The skills above, on a2a-sdk's executor interface."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id = context.task_id or ""
        context_id = context.context_id or ""
        skill = _skill_of(context)
        data = _input_of(context)
        headers = context.call_context.state.get("headers", {})
        message = context.message
        self.journal.calls.append(
            {
                "skill": skill,
                "input": data,
                "task_id": task_id,
                "context_id": context_id,
                "message_id": message.message_id if message is not None else "",
                "traceparent": headers.get("traceparent", ""),
                "authorization": headers.get("authorization", ""),
            }
        )
        if context.current_task is None:
            await event_queue.enqueue_event(
                new_task(task_id, context_id, TaskState.TASK_STATE_SUBMITTED)
            )
        updater = TaskUpdater(event_queue, task_id, context_id)
        await updater.start_work()
        run = _RUNNERS.get(skill)
        if run is None:
            await updater.reject(_says(f"unknown skill {skill!r}", updater))
            return
        await run(self, data, updater)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id = context.task_id or ""
        self.journal.cancels.append(task_id)
        updater = TaskUpdater(event_queue, task_id, context.context_id or "")
        await updater.cancel()

    # -- the skills -----------------------------------------------------------

    async def echo(self, data: dict[str, Any], updater: TaskUpdater) -> None:
        await _complete_with(updater, {"text": str(data.get("text", ""))})

    async def upper(self, data: dict[str, Any], updater: TaskUpdater) -> None:
        await _complete_with(updater, {"text": str(data.get("text", "")).upper()})

    async def reverse(self, data: dict[str, Any], updater: TaskUpdater) -> None:
        await _complete_with(updater, {"text": str(data.get("text", ""))[::-1]})

    async def sum(self, data: dict[str, Any], updater: TaskUpdater) -> None:
        numbers = data.get("numbers", [])
        if not isinstance(numbers, list) or not all(isinstance(n, int | float) for n in numbers):
            await updater.reject(_says("numbers must be a list of numbers", updater))
            return
        total = sum(numbers)
        await _complete_with(updater, {"sum": int(total) if float(total).is_integer() else total})

    async def flaky(self, data: dict[str, Any], updater: TaskUpdater) -> None:
        key = str(data.get("key") or updater.context_id)
        if key not in self.journal.flaky_seen:
            self.journal.flaky_seen.add(key)
            await updater.failed(_says(f"flaky: first attempt of {key!r} fails", updater))
            return
        await _complete_with(updater, {"key": key, "ok": True})

    async def slow(self, data: dict[str, Any], updater: TaskUpdater) -> None:
        seconds = float(data.get("seconds", 30))
        ticks = max(1, int(seconds * 10))
        for i in range(ticks):
            await updater.update_status(
                TaskState.TASK_STATE_WORKING, _says(f"slow {i + 1}/{ticks}", updater)
            )
            await asyncio.sleep(0.1)
        await _complete_with(updater, {"slept_s": seconds})

    async def steps(self, data: dict[str, Any], updater: TaskUpdater) -> None:
        count = int(data.get("count", 3))
        interval = float(data.get("interval", 0.02))
        for i in range(1, count + 1):
            await updater.update_status(
                TaskState.TASK_STATE_WORKING, _says(f"step {i}/{count}", updater)
            )
            await updater.add_artifact(
                [new_data_part({"step": i})], name=f"step-{i}", artifact_id=f"step-{i}"
            )
            await asyncio.sleep(interval)
        await _complete_with(updater, {"steps": count})

    async def reject(self, data: dict[str, Any], updater: TaskUpdater) -> None:
        await updater.reject(_says("this agent rejects every reject task", updater))

    async def need_input(self, data: dict[str, Any], updater: TaskUpdater) -> None:
        await updater.requires_input(_says("tell me more", updater))


_Runner = Callable[[ReferenceExecutor, dict[str, Any], TaskUpdater], Awaitable[None]]
_RUNNERS: dict[str, _Runner] = {
    "echo": ReferenceExecutor.echo,
    "upper": ReferenceExecutor.upper,
    "sum": ReferenceExecutor.sum,
    "flaky": ReferenceExecutor.flaky,
    "slow": ReferenceExecutor.slow,
    "steps": ReferenceExecutor.steps,
    "reject": ReferenceExecutor.reject,
    "need-input": ReferenceExecutor.need_input,
    "Text.Reverse": ReferenceExecutor.reverse,
}


def _says(text: str, updater: TaskUpdater) -> Message:
    return new_text_message(text, context_id=updater.context_id, task_id=updater.task_id)


async def _complete_with(updater: TaskUpdater, output: dict[str, Any]) -> None:
    """The output as an artifact named ``output`` (a DataPart, plus its text if any)."""
    artifact = new_data_artifact("output", output, artifact_id="output")
    if isinstance(output.get("text"), str):
        artifact.parts.append(new_text_part(output["text"]))
    await updater.add_artifact(
        list(artifact.parts), artifact_id=artifact.artifact_id, name=artifact.name
    )
    await updater.complete()


def build_card(
    url: str,
    *,
    streaming: bool,
    with_skills: bool,
    prices: dict[str, int],
    binding: str = "JSONRPC",
) -> AgentCard:
    card = AgentCard(
        name="a2a-reference",
        description="An a2a-sdk reference agent (meshwright's A2A tests and benchmark).",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding=binding, protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=streaming),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
    )
    if with_skills:
        for skill_id, name, description, tags in SKILLS:
            card.skills.append(
                AgentSkill(
                    id=skill_id,
                    name=name,
                    description=description,
                    tags=list(tags),
                    examples=['{"text": "hello"}'] if "text" in tags else [],
                )
            )
    if prices:
        params = struct_pb2.Struct()
        params.update(prices)
        card.capabilities.extensions.append(
            AgentExtension(uri=PRICING_EXTENSION, description="prices", params=params)
        )
    return card


class _TestHooks:
    """``/_test`` endpoints, the HTTP 500 switch and the bearer check, around the app."""

    def __init__(
        self, app: ASGIApp, journal: Journal, token: str, handler: DefaultRequestHandler
    ) -> None:
        self.app = app
        self.journal = journal
        self.token = token
        self.handler = handler
        """The A2A request handler, for a gRPC server beside the HTTP one."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path.startswith("/_test/"):
            await self._hook(Request(scope, receive))(scope, receive, send)
            return
        if path == RPC_PATH and method == "POST":
            if self.journal.fail_http > 0:
                self.journal.fail_http -= 1
                await Response("injected failure", status_code=500)(scope, receive, send)
                return
            if self.token:
                headers = dict(scope["headers"])
                if headers.get(b"authorization", b"").decode() != f"Bearer {self.token}":
                    await Response("bad token", status_code=401)(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _hook(self, request: Request) -> ASGIApp:
        path = request.url.path
        if path == "/_test/calls":
            return JSONResponse(self.journal.calls)
        if path == "/_test/cancels":
            return JSONResponse(self.journal.cancels)
        if path == "/_test/not-json.json":
            return Response("<html>not a card</html>", media_type="text/html")
        if path == "/_test/fail-http":
            journal = self.journal

            async def set_failures(scope: Scope, receive: Receive, send: Send) -> None:
                body = json.loads(await Request(scope, receive).body() or b"{}")
                journal.fail_http = int(body.get("count", 1))
                await JSONResponse({"count": journal.fail_http})(scope, receive, send)

            return set_failures
        return Response("no such hook", status_code=404)


def build_app(
    base_url: str,
    *,
    streaming: bool = True,
    with_skills: bool = True,
    prices: dict[str, int] | None = None,
    token: str = "",
    rest: bool = False,
    grpc_url: str = "",
    journal: Journal | None = None,
) -> _TestHooks:
    """The agent's ASGI app: its card, JSON-RPC at ``/`` (or, with ``rest``, only the
    HTTP+JSON binding under ``/rest``; with ``grpc_url``, only gRPC there, served by the
    caller with ``app.handler``), and the test hooks."""
    journal = journal or Journal()
    if grpc_url:
        url, binding = grpc_url, "GRPC"
    elif rest:
        url, binding = base_url + REST_PREFIX, "HTTP+JSON"
    else:
        url, binding = base_url + RPC_PATH, "JSONRPC"
    card = build_card(
        url, streaming=streaming, with_skills=with_skills, prices=prices or {}, binding=binding
    )
    handler = DefaultRequestHandler(
        agent_executor=ReferenceExecutor(journal), task_store=InMemoryTaskStore(), agent_card=card
    )
    routes: list[BaseRoute] = [*create_agent_card_routes(card)]
    if rest:
        routes += create_rest_routes(handler, path_prefix=REST_PREFIX)
    else:
        routes += create_jsonrpc_routes(handler, RPC_PATH)
    return _TestHooks(Starlette(routes=routes), journal, token, handler)


def _prices(values: list[str]) -> dict[str, int]:
    prices: dict[str, int] = {}
    for value in values:
        skill, sep, price = value.partition("=")
        if not sep:
            raise SystemExit(f"--price {value!r}: expected SKILL=N")
        prices[skill] = int(price)
    return prices


async def _serve(args: argparse.Namespace, token: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    # Listening before uvicorn starts: a client that connects at once waits in the backlog.
    sock.listen(128)
    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}"
    grpc_server = None
    grpc_url = ""
    if args.grpc:
        import grpc

        grpc_server = grpc.aio.server()
        grpc_url = f"{host}:{grpc_server.add_insecure_port(f'{host}:0')}"
    app = build_app(
        url,
        rest=args.rest,
        grpc_url=grpc_url,
        streaming=not args.no_streaming,
        with_skills=not args.no_skills,
        prices=_prices(args.price),
        token=token,
    )
    # uvicorn's own signal handling stops it on SIGTERM/SIGINT.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    if grpc_server is not None:
        from a2a.server.request_handlers import GrpcHandler
        from a2a.types import a2a_pb2_grpc

        a2a_pb2_grpc.add_A2AServiceServicer_to_server(GrpcHandler(app.handler), grpc_server)
        await grpc_server.start()
    print(f"A2A_AGENT url={url} card={url}/.well-known/agent-card.json", flush=True)
    try:
        await server.serve(sockets=[sock])
    finally:
        if grpc_server is not None:
            await grpc_server.stop(0)


class ReferenceAgent:
    """A reference agent process started by ``running`` (for tests and benches)."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str, card_url: str) -> None:
        self.proc = proc
        self.url = url
        """Base URL (the JSON-RPC endpoint is ``url + "/"``)."""
        self.card_url = card_url

    async def _get(self, path: str) -> Any:
        import httpx

        async with httpx.AsyncClient(timeout=10) as http:
            reply = await http.get(self.url + path)
            reply.raise_for_status()
            return reply.json()

    async def calls(self) -> list[dict[str, Any]]:
        """Every message received so far (``Journal.calls``)."""
        return list(await self._get("/_test/calls"))

    async def cancels(self) -> list[str]:
        """The task ids canceled so far."""
        return list(await self._get("/_test/cancels"))

    async def fail_http(self, count: int) -> None:
        """Answer the next ``count`` JSON-RPC calls with HTTP 500."""
        import httpx

        async with httpx.AsyncClient(timeout=10) as http:
            reply = await http.post(self.url + "/_test/fail-http", json={"count": count})
            reply.raise_for_status()


@contextlib.asynccontextmanager
async def running(*flags: str) -> AsyncIterator[ReferenceAgent]:
    """Run this file as its own process (with ``flags``) until the block ends."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--port",
        "0",
        *flags,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        fields = await asyncio.wait_for(_ready(proc.stdout), 30)
        drain = asyncio.create_task(_drain(proc.stdout))
        try:
            yield ReferenceAgent(proc, fields["url"], fields["card"])
        finally:
            drain.cancel()
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _ready(stream: asyncio.StreamReader) -> dict[str, str]:
    """The fields of the ``A2A_AGENT`` line (warnings may come first)."""
    seen: list[str] = []
    while line := (await stream.readline()).decode():
        if line.startswith("A2A_AGENT "):
            return dict(p.split("=", 1) for p in line.split()[1:] if "=" in p)
        seen.append(line)
    raise AssertionError("the reference agent exited before listening:\n" + "".join(seen))


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-streaming", action="store_true")
    parser.add_argument("--no-skills", action="store_true")
    parser.add_argument("--rest", action="store_true", help="HTTP+JSON instead of JSON-RPC")
    parser.add_argument("--grpc", action="store_true", help="gRPC instead of JSON-RPC")
    parser.add_argument("--token-file", default="")
    parser.add_argument("--price", action="append", default=[], metavar="SKILL=N")
    args = parser.parse_args(argv)
    token = ""
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as f:
            token = f.read().strip()
    asyncio.run(_serve(args, token))
    return 0


if __name__ == "__main__":
    sys.exit(main())
