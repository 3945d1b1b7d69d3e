"""An A2A server (protocol v1.0, JSON-RPC binding, a2a-sdk) in front of any AgentService.

One adapter for both users of it: an agent process (its own ``AgentServicer`` through its
pipeline) and the mesh (the skill router), because it only holds a ``ServiceClient`` of
``meshwright.agent.v1.AgentService`` and calls it with each caller's token.

The convention (the same in both directions; ``meshwright.agent.a2a.inbound`` follows it
when the mesh calls an external A2A agent):

- Skill: the message's ``metadata["skill"]``; without one, the card's only skill; else
  invalid params (-32602) naming the skills. A skill the agent does not offer is invalid
  params too (SKILL_NOT_FOUND / SKILL_NOT_OFFERED in the error's metadata).
- Input: the first data part's object; with no data part, the text parts joined by
  newlines as ``{"text": ...}``. Other message metadata goes to the task's metadata
  (non-string values as JSON).
- Ids: our task id is the A2A task id (a2a-sdk makes one per new task); the context id
  passes through.
- ``SendMessage`` (``message/send``), blocking (the default): ExecuteTask, answered with
  the finished task. With ``returnImmediately``, and for ``SendStreamingMessage``
  (``message/stream``): StreamTask, each update as an A2A event: our status (message,
  progress) → a TaskStatusUpdateEvent whose status message holds the text and, in its
  metadata, ``progress``; our artifacts → TaskArtifactUpdateEvents (one data part each);
  a completed task's output → an artifact ``output`` (one data part); then the final
  status.
- States: SUBMITTED, WORKING, COMPLETED, FAILED, CANCELED, REJECTED → their A2A
  namesakes; a FAILED or REJECTED task's ``reason`` and ``non_retryable`` go in its
  status message's metadata.
- ``GetTask`` (``tasks/get``): the task as last seen, from a bounded store of recent
  tasks (``max_tasks``), scoped to the token that created it. ``CancelTask``
  (``tasks/cancel``): our CancelTask, with the caller's token.
- Auth: the request's ``Authorization: Bearer`` is the caller's token for the RPC, so
  the RPC's own policy applies (an agent process: admins and services; the mesh: every
  role, free skills only for agents and clients). No token (auth on) → HTTP 401 before
  any RPC; the RPC's UNAUTHENTICATED → 401, PERMISSION_DENIED → 403; RESOURCE_EXHAUSTED,
  UNAVAILABLE, DEADLINE_EXCEEDED → 429, 503, 504; other errors → the A2A JSON-RPC error
  closest to them (``_errors``), never a 500. The card is served without auth.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from a2a.auth.user import User
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import Event, EventQueue
from a2a.server.request_handlers import DefaultRequestHandler, build_error_response
from a2a.server.routes import DefaultServerCallContextBuilder
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.types import AgentCard, Message, SendMessageRequest, Task
from a2a.utils.errors import InvalidRequestError
from google.protobuf import struct_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from meshwright.agent.a2a import _serve_map as mapping
from meshwright.agent.a2a._errors import SKILL_REASONS, A2AHttpError, a2a_error, cancel_error
from meshwright.agent.a2a._store import DEFAULT_MAX_TASKS, BoundedTaskStore, Caller
from meshwright.agent.a2a.card import AGENT_CARD_PATH, a2a_card, card_json
from meshwright.agent.v1 import agent_pb2
from meshwright.mesh.auth import TokenMissing
from meshwright.mesh.client import ServiceClient
from meshwright.mesh.context import PROPAGATED_KEYS
from meshwright.mesh.errors import MeshError

log = logging.getLogger(__name__)

CardSource = Callable[[], Awaitable[agent_pb2.AgentCard]]
"""Returns the card to serve now (a constant for an agent, the live skills for the mesh)."""

_FORWARDED = PROPAGATED_KEYS | {"authorization"}
_STREAMING = "meshwright.streaming"
_METADATA = "meshwright.metadata"
_PREPARED = "meshwright.prepared"


def _bearer(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (None for any other)."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class _CallContextBuilder(DefaultServerCallContextBuilder):
    """a2a-sdk's context (headers, extensions) with the caller (a digest of its token,
    for task ownership) and the metadata the RPC carries: its credentials and trace
    context. With ``auth``, no bearer token is 401."""

    def __init__(self, *, auth: bool) -> None:
        self._auth = auth

    def build(self, request: Request) -> ServerCallContext:
        token = _bearer(request.headers.get("authorization", ""))
        if self._auth and token is None:
            raise A2AHttpError(
                401,
                TokenMissing("this A2A call needs a bearer token (Authorization: Bearer <jwt>)"),
            )
        context = super().build(request)  # its user: build_user below
        context.state[_METADATA] = [(k, v) for k, v in request.headers.items() if k in _FORWARDED]
        return context

    def build_user(self, request: Request) -> User:
        return Caller(_bearer(request.headers.get("authorization", "")))


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What a message asks for, read from it before its task starts."""

    skill: str
    input: struct_pb2.Struct
    metadata: dict[str, str]
    skills: Sequence[str]


_REFUSAL = "_meshwright_refusal"


def _refused(error: Exception) -> Exception:
    """``error``, marked as the service's answer to the call (not a failure to log)."""
    setattr(error, _REFUSAL, True)
    return error


class _QuietRefusals(logging.Filter):
    """a2a-sdk logs every exception an executor raises, with its traceback, twice (its
    producer and its consumer). A call the service refused (no token, no permission, an
    unknown skill, a paid skill) is an answer the caller gets, not a server failure: those
    records are dropped, and one line at INFO says what was refused."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not getattr(error, _REFUSAL, False)


logging.getLogger("a2a.server.agent_execution.active_task").addFilter(_QuietRefusals())


def _metadata(context: RequestContext) -> list[tuple[str, str]]:
    return list(context.call_context.state.get(_METADATA, ()))


class AgentServiceExecutor(AgentExecutor):
    """Runs each A2A request as an AgentService call (see the module docstring)."""

    def __init__(
        self,
        client: ServiceClient,
        skills: Callable[[], Awaitable[Sequence[str]]],
        *,
        strict_skills: bool,
    ) -> None:
        """``skills``: the skill ids offered now. ``strict_skills``: refuse a named skill not
        among them here (else the service decides: the mesh's list may be newer)."""
        self._client = client
        self._skills = skills
        self._strict = strict_skills

    async def prepare(self, message: Message) -> _Prepared:
        """The skill, input and metadata ``message`` asks for (invalid params if none),
        with the skills offered now (for error messages)."""
        try:
            skills = await self._skills()
        except MeshError as err:  # the mesh could not list its skills
            raise a2a_error(err) from None
        skill = mapping.skill_of(message, skills, strict=self._strict)
        return _Prepared(skill, mapping.input_of(message), mapping.metadata_of(message), skills)

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        if message is None:  # a2a-sdk runs execute for messages only
            raise InvalidRequestError(message="no message to run")
        prepared = context.call_context.state.get(_PREPARED)
        if not isinstance(prepared, _Prepared):
            prepared = await self.prepare(message)
        skill, skills = prepared.skill, prepared.skills
        task_id = context.task_id or ""
        context_id = context.context_id or ""
        fields: dict[str, Any] = {
            "task_id": task_id,
            "skill": skill,
            "input": prepared.input,
            "context_id": context_id,
            "metadata": prepared.metadata,
        }
        metadata = _metadata(context)
        config = context.configuration
        streamed = context.call_context.state.get(_STREAMING, False) or bool(
            config is not None and config.return_immediately
        )
        if not streamed:
            try:
                reply = await self._client.call(
                    "ExecuteTask", agent_pb2.ExecuteTaskRequest(**fields), metadata=metadata
                )
            except MeshError as err:
                raise _refused(self._error(err, skill, skills)) from None
            await event_queue.enqueue_event(mapping.task_of(reply.task, task_id, context_id))
            return
        await self._stream(
            self._client.stream(
                "StreamTask", agent_pb2.StreamTaskRequest(**fields), metadata=metadata
            ),
            event_queue,
            task_id,
            context_id,
            skill,
            skills,
        )

    async def _stream(
        self,
        items: AsyncIterator[agent_pb2.StreamTaskResponse],
        queue: EventQueue,
        task_id: str,
        context_id: str,
        skill: str,
        skills: Sequence[str],
    ) -> None:
        # Nothing is sent before the first answer: a refused call (no permission, no
        # such skill) is then an error of the request itself (HTTP 401/403 or a JSON-RPC
        # error), not a task that failed.
        try:
            first = await anext(items)
        except StopAsyncIteration:
            raise InvalidRequestError(message="the agent ended the stream at once") from None
        except MeshError as err:
            raise _refused(self._error(err, skill, skills)) from None
        opening = agent_pb2.Task(task_id=task_id, context_id=context_id)
        opening.status.CopyFrom(first.task.status if first.final else first.status_update)
        await queue.enqueue_event(mapping.task_of(opening, task_id, context_id))
        item: agent_pb2.StreamTaskResponse | None = first
        try:
            while item is not None:
                if item.final:
                    await self._finish(item.task, queue, task_id, context_id)
                    return
                if item.WhichOneof("update") == "artifact_update":
                    artifact = mapping.artifact_of(item.artifact_update)
                    await queue.enqueue_event(mapping.artifact_event(artifact, task_id, context_id))
                elif item is not first:
                    await queue.enqueue_event(
                        mapping.status_event(item.status_update, task_id, context_id)
                    )
                item = await anext(items, None)
        except MeshError as err:
            # The task is under way: its failure is the task's end, as A2A tells it.
            failed = agent_pb2.TaskStatus(
                state=agent_pb2.TASK_STATE_FAILED, message=err.message, reason=err.reason
            )
            failed.update_time.GetCurrentTime()
            await queue.enqueue_event(mapping.status_event(failed, task_id, context_id))
            return
        failed = agent_pb2.TaskStatus(
            state=agent_pb2.TASK_STATE_FAILED,
            message="the agent ended the stream without a final task",
            reason="STREAM_ENDED",
        )
        await queue.enqueue_event(mapping.status_event(failed, task_id, context_id))

    @staticmethod
    async def _finish(
        task: agent_pb2.Task, queue: EventQueue, task_id: str, context_id: str
    ) -> None:
        output = mapping.output_artifact(task)
        if output is not None:
            await queue.enqueue_event(mapping.artifact_event(output, task_id, context_id))
        await queue.enqueue_event(mapping.status_event(task.status, task_id, context_id))

    @staticmethod
    def _error(err: MeshError, skill: str, skills: Sequence[str]) -> Exception:
        log.info("A2A call for skill %r refused: %s (%s)", skill, err.reason, err.message)
        if err.reason in SKILL_REASONS:
            error = mapping.unknown_skill(skill, skills)
            error.data = {**(error.data or {}), "reason": err.reason}
            return error
        return a2a_error(err)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id = context.task_id or ""
        try:
            reply = await self._client.call(
                "CancelTask",
                agent_pb2.CancelTaskRequest(task_id=task_id),
                metadata=_metadata(context),
            )
        except MeshError as err:
            raise _refused(cancel_error(err)) from None
        await event_queue.enqueue_event(
            mapping.status_event(reply.task.status, task_id, context.context_id or "")
        )


class _RequestHandler(DefaultRequestHandler):
    """a2a-sdk's handler, checking a message before a task exists for it (a bad one is
    an error of the request, not a failed task) and telling the executor which calls are
    streamed."""

    agent_executor: AgentServiceExecutor

    async def _prepare(self, params: SendMessageRequest, context: ServerCallContext) -> None:
        if params.HasField("message") and not params.message.task_id:
            context.state[_PREPARED] = await self.agent_executor.prepare(params.message)

    async def on_message_send(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> Message | Task:
        await self._prepare(params, context)
        return await super().on_message_send(params, context)

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event, None]:
        context.state[_STREAMING] = True
        await self._prepare(params, context)
        async for event in super().on_message_send_stream(params, context):
            yield event


class CachedCard:
    """A ``CardSource`` that asks ``source`` at most every ``ttl_s`` seconds."""

    def __init__(self, source: CardSource, *, ttl_s: float = 5.0) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._card: agent_pb2.AgentCard | None = None
        self._at = 0.0

    async def __call__(self) -> agent_pb2.AgentCard:
        now = time.monotonic()
        if self._card is None or now - self._at >= self._ttl_s:
            self._card, self._at = await self._source(), now
        return self._card


class A2AServer:
    """The A2A endpoint of one AgentService: its card route and its JSON-RPC route."""

    def __init__(
        self,
        client: ServiceClient,
        card: CardSource,
        *,
        url: str | Callable[[Request], str],
        auth: bool,
        agent_id: str = "",
        strict_skills: bool = True,
        max_tasks: int = DEFAULT_MAX_TASKS,
    ) -> None:
        """``client``: the AgentService to front (called with each caller's token).
        ``card``: our card now. ``url``: the A2A endpoint advertised in the card (or how
        to derive it from the request for the card). ``auth``: calls need a bearer token.
        ``agent_id``: the registry's id, put in the card. ``strict_skills``: refuse
        unknown skills here, from the card (False: the service's answer decides).
        ``max_tasks``: tasks remembered for ``tasks/get``."""
        self._card = card
        self._url = url
        self._auth = auth
        self._agent_id = agent_id
        self.store = BoundedTaskStore(max_tasks)

        async def skills() -> list[str]:
            return [s.id for s in (await card()).skills]

        self.executor = AgentServiceExecutor(client, skills, strict_skills=strict_skills)
        # The handler reads only capabilities from its card (streaming: always, as every
        # AgentService streams); the card clients fetch is built per request.
        self.handler = _RequestHandler(
            agent_executor=self.executor,
            task_store=self.store,
            agent_card=a2a_card(
                agent_pb2.AgentCard(
                    name="meshwright",
                    description="AgentService over A2A",
                    version="1",
                    skills=[agent_pb2.AgentSkill(id="any", name="any", description="any")],
                    capabilities=agent_pb2.AgentCapabilities(streaming=True),
                ),
                url="/",
                auth=auth,
            ),
        )
        self._dispatcher = JsonRpcDispatcher(
            request_handler=self.handler, context_builder=_CallContextBuilder(auth=auth)
        )

    async def card(self, request: Request) -> AgentCard:
        """The A2A card served to ``request``."""
        url = self._url if isinstance(self._url, str) else self._url(request)
        return a2a_card(await self._card(), url=url, auth=self._auth, agent_id=self._agent_id)

    async def _serve_card(self, request: Request) -> Response:
        try:
            card = await self.card(request)
        except MeshError as err:  # the mesh could not list its agents
            return JSONResponse({"error": err.message, "reason": err.reason}, status_code=503)
        return JSONResponse(card_json(card))

    async def _serve_rpc(self, request: Request) -> Response:
        try:
            return await self._dispatcher.handle_requests(request)
        except A2AHttpError as err:
            try:
                body = await request.json()  # already read (and cached) by the dispatcher
                request_id = body.get("id") if isinstance(body, dict) else None
            except ValueError:
                request_id = None
            reason = {"reason": err.error.reason}
            error = InvalidRequestError(message=err.error.message, data=reason)
            return JSONResponse(
                build_error_response(request_id, error),
                status_code=err.status_code,
                headers=err.headers,
            )

    def routes(self, path: str = "") -> list[BaseRoute]:
        """The card at ``path + AGENT_CARD_PATH``; JSON-RPC at ``path`` (and ``path/``)."""
        base = path.rstrip("/")
        rpc = [Route(p, self._serve_rpc, methods=["POST"]) for p in {base or "/", base + "/"}]
        return [Route(base + AGENT_CARD_PATH, self._serve_card, methods=["GET"]), *rpc]

    async def aclose(self) -> None:
        """Stop the tasks a2a-sdk still runs (at shutdown)."""
        await self.handler.aclose()


def static_card(card: agent_pb2.AgentCard) -> CardSource:
    """A ``CardSource`` that always returns ``card``."""

    async def source() -> agent_pb2.AgentCard:
        return card

    return source


__all__ = ["A2AServer", "AgentServiceExecutor", "CachedCard", "CardSource", "static_card"]
