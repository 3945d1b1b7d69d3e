"""The calling half of the A2A inbound bridge: one A2A task per task of ours.

``RemoteAgent.run`` sends the message, follows the stream (or polls a task the send
left unfinished), reports progress and artifacts to the ``TaskContext``, and ends as
``inbound``'s docstring says: an output, ``TaskFailed`` (retryable or not) or
``TaskRejected``; a cancel of ours becomes the remote's ``tasks/cancel``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urlparse

import httpx
from a2a.client import (
    A2AClientError,
    A2AClientTimeoutError,
    Client,
    ClientCallContext,
    ClientConfig,
    ClientFactory,
)
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils import errors as a2a_errors
from a2a.utils.constants import TransportProtocol
from opentelemetry.trace import SpanKind

from meshwright.agent.a2a._bridge_map import (
    INTERRUPTED,
    OUTPUT_ARTIFACT,
    TERMINAL,
    artifact_data,
    input_message,
    merge_artifact,
    message_id_for,
    parts_data,
    status_text,
    takes_json,
    task_output,
)
from meshwright.agent.context import TaskContext
from meshwright.agent.errors import TaskFailed, TaskRejected
from meshwright.mesh import telemetry
from meshwright.mesh.context import current_call

log = logging.getLogger(__name__)

A2A_SERVICE = "lf.a2a.v1.A2AService"
"""The A2A service, for span names (``package.Service/Method``)."""

SUPPORTED_BINDINGS = (
    TransportProtocol.JSONRPC.value,
    TransportProtocol.HTTP_JSON.value,
    TransportProtocol.GRPC.value,
)
"""What a2a-sdk's client speaks, in the bridge's order of preference."""

CANCEL_WAIT_S = 3.0
"""How long a remote ``tasks/cancel`` may take when our task is canceled."""

_POLL_MAX_S = 1.0


def interface_of(card: AgentCard) -> tuple[str, str]:
    """(binding, url) the bridge calls: the first supported binding the card offers."""
    for binding in SUPPORTED_BINDINGS:
        for interface in card.supported_interfaces:
            if interface.protocol_binding == binding:
                return binding, interface.url
    raise ValueError("the card offers no interface the bridge speaks")


_RETRYABLE_A2A_ERRORS: tuple[type[Exception], ...] = (
    a2a_errors.InternalError,
    a2a_errors.InvalidAgentResponseError,
)
"""A2A errors another attempt may not meet; every other A2A error is about the request."""


class RemoteAgent:
    """The A2A agent behind a bridge: one a2a-sdk client (and HTTP pool), made in the
    serving event loop on first use, closed by ``close``."""

    def __init__(self, card: AgentCard, *, timeout_s: float, token: str = "") -> None:
        self.card = card
        self.timeout_s = timeout_s
        self._token = token
        self.binding, self.url = interface_of(card)
        self._text_only = frozenset(
            s.id for s in card.skills if not takes_json(s.input_modes or card.default_input_modes)
        )
        """Skills whose input modes take no JSON: their messages carry text only."""
        self._http: httpx.AsyncClient | None = None
        self._client: Client | None = None

    def client(self) -> Client:
        """The a2a-sdk client (made on first use: no await, so no race between tasks)."""
        if self._client is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s)),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
            )
            config = ClientConfig(
                streaming=True,  # used only when the card says the agent streams
                httpx_client=self._http,
                supported_protocol_bindings=[self.binding],
                use_client_preference=True,
                grpc_channel_factory=_grpc_channel,
            )
            self._client = ClientFactory(config).create(self.card)
        return self._client

    async def close(self) -> None:
        client, http = self._client, self._http
        self._client = self._http = None
        if client is not None:
            with contextlib.suppress(Exception):  # a closed transport must not stop a stop
                await client.close()
        if http is not None:
            await http.aclose()

    def _call_context(self) -> ClientCallContext:
        """Per call: the bearer token and the trace context, as HTTP headers (gRPC
        metadata), and the per-request timeout (shorter when our call's deadline is)."""
        call = current_call()
        headers = dict(telemetry.inject(list(call.propagated()) if call is not None else []))
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        timeout = self.timeout_s
        remaining = call.time_remaining() if call is not None else None
        if remaining is not None:
            timeout = max(0.001, min(timeout, remaining))
        return ClientCallContext(service_parameters=headers, timeout=timeout)

    async def run(self, a2a_skill: str, input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        """Run ``a2a_skill`` on ``input`` as task ``ctx``; the output, or TaskFailed /
        TaskRejected (see the module docstring)."""
        streaming = bool(self.card.capabilities.streaming)
        method = "SendStreamingMessage" if streaming else "SendMessage"
        attributes = {
            "rpc.system": self.binding.lower(),
            "rpc.service": A2A_SERVICE,
            "rpc.method": method,
            "server.address": self.url,
            "meshwright.a2a.skill": a2a_skill,
        }
        exchange = _Exchange(ctx)
        message = input_message(
            input,
            a2a_skill=a2a_skill,
            message_id=message_id_for(ctx.task_id),
            context_id=ctx.context_id,
            upstream=ctx.upstream,
            data_part=a2a_skill not in self._text_only,
        )
        with telemetry.span(
            f"{A2A_SERVICE}/{method}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self._follow(SendMessageRequest(message=message), exchange)
                    if not exchange.ended and exchange.task.id:
                        await self._poll(exchange)
            except asyncio.CancelledError:
                await self._cancel_remote(exchange.task.id, "our task was canceled")
                raise
            except TimeoutError:
                await self._cancel_remote(exchange.task.id, "it ran past --a2a-timeout")
                raise TaskFailed(
                    f"the A2A agent did not finish within {self.timeout_s:g}s",
                    reason="A2A_TIMEOUT",
                ) from None
            except a2a_errors.A2AError as err:  # A2AClientError is one too
                # A task the remote started is orphaned: another attempt sends a new message.
                if not exchange.ended:
                    await self._cancel_remote(exchange.task.id, "the exchange broke off")
                if isinstance(err, A2AClientError):
                    raise _client_failure(err) from None
                raise _protocol_failure(err) from None
            finally:
                if span is not None and exchange.task.id:
                    span.set_attribute("meshwright.a2a.task_id", exchange.task.id)
        return await self._end(exchange)

    async def _follow(self, request: SendMessageRequest, exchange: _Exchange) -> None:
        """Send ``request`` and take its events until the task ends or the stream does."""
        events = self.client().send_message(request, context=self._call_context())
        try:
            async for event in events:
                if await exchange.take(event):
                    break
        finally:
            # Closed now, not by the garbage collector: that frees the HTTP stream at once.
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _poll(self, exchange: _Exchange) -> None:
        """Follow a task the send left unfinished (a non-streaming agent answering before
        the end) with GetTask until it ends; ``run``'s timeout bounds it."""
        wait = 0.05
        while not exchange.ended:
            await asyncio.sleep(wait)
            wait = min(wait * 2, _POLL_MAX_S)
            task = await self.client().get_task(
                GetTaskRequest(id=exchange.task.id), context=self._call_context()
            )
            await exchange.take(StreamResponse(task=task))

    async def _end(self, exchange: _Exchange) -> dict[str, Any]:
        task = exchange.task
        state = task.status.state
        text = status_text(task)
        if state == TaskState.TASK_STATE_COMPLETED:
            return exchange.output if exchange.output is not None else task_output(task)
        if state in INTERRUPTED:
            await self._cancel_remote(task.id, "the bridge cannot answer it")
            name = (
                "A2A_INPUT_REQUIRED"
                if state == TaskState.TASK_STATE_INPUT_REQUIRED
                else ("A2A_AUTH_REQUIRED")
            )
            raise TaskRejected(
                f"the A2A agent asks for {'input' if 'INPUT' in name else 'authentication'} "
                f"the bridge cannot give{': ' + text if text else ''}",
                reason=name,
            )
        if state == TaskState.TASK_STATE_REJECTED:
            raise TaskRejected(
                text or "the A2A agent rejected the task", reason="A2A_TASK_REJECTED"
            )
        if state == TaskState.TASK_STATE_CANCELED:
            raise TaskFailed(text or "the A2A agent canceled the task", reason="A2A_TASK_CANCELED")
        if state == TaskState.TASK_STATE_FAILED:
            raise TaskFailed(text or "the A2A task failed", reason="A2A_TASK_FAILED")
        raise TaskFailed(
            f"the A2A agent ended the exchange in {TaskState.Name(state)}", reason="A2A_NO_END"
        )

    async def _cancel_remote(self, task_id: str, why: str) -> None:
        """A2A ``tasks/cancel`` for ``task_id``, best effort and bounded: the remote may
        have ended it already, or not know it (a task canceled before it was created)."""
        if not task_id:
            return
        try:
            async with asyncio.timeout(CANCEL_WAIT_S):
                with telemetry.span(
                    f"{A2A_SERVICE}/CancelTask",
                    kind=SpanKind.CLIENT,
                    attributes={"rpc.service": A2A_SERVICE, "rpc.method": "CancelTask"},
                ):
                    await self.client().cancel_task(
                        CancelTaskRequest(id=task_id), context=self._call_context()
                    )
            log.info("canceled A2A task %s (%s)", task_id, why)
        except (Exception, TimeoutError) as err:
            log.info("A2A task %s not canceled (%s): %s", task_id, why, type(err).__name__)


class _Exchange:
    """What one send has told so far: the remote task (merged from its events), its end."""

    __slots__ = ("ctx", "task", "ended", "output")

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self.task = Task()
        self.ended = False
        self.output: dict[str, Any] | None = None
        """Set when the agent answered with a Message instead of a task."""

    async def take(self, event: StreamResponse) -> bool:
        """Record one event (reporting progress and artifacts); whether the task ended."""
        kind = event.WhichOneof("payload")
        if kind == "task":
            self.task.CopyFrom(event.task)
        elif kind == "status_update":
            status = event.status_update
            self.task.id = self.task.id or status.task_id
            self.task.status.CopyFrom(status.status)
            text = status_text(self.task)
            if text and status.status.state not in TERMINAL:
                await self.ctx.progress(text)
        elif kind == "artifact_update":
            update = event.artifact_update
            self.task.id = self.task.id or update.task_id
            merge_artifact(self.task, update.artifact, append=update.append)
            artifact = update.artifact
            if artifact.name != OUTPUT_ARTIFACT:  # that one is the output
                await self.ctx.artifact(
                    artifact.name or artifact.artifact_id, artifact_data(artifact)
                )
        elif kind == "message":
            # A direct reply: the agent did the work without a task.
            self.output = parts_data(event.message.parts)
            self.task.status.state = TaskState.TASK_STATE_COMPLETED
        state = self.task.status.state
        self.ended = state in TERMINAL or state in INTERRUPTED
        return self.ended


def _client_failure(err: A2AClientError) -> TaskFailed:
    """A transport failure as a task failure: retryable unless the remote said the
    request itself is wrong (HTTP 4xx but 408 and 429)."""
    if isinstance(err, A2AClientTimeoutError):
        return TaskFailed(f"the A2A agent did not answer in time: {err}", reason="A2A_TIMEOUT")
    cause = err.__cause__
    if isinstance(cause, httpx.HTTPStatusError):
        status = cause.response.status_code
        if 400 <= status < 500 and status not in (408, 429):
            return TaskFailed(
                f"the A2A agent refused the call: HTTP {status}",
                reason="A2A_HTTP_REFUSED",
                retryable=False,
            )
        return TaskFailed(f"the A2A agent answered HTTP {status}", reason="A2A_UNAVAILABLE")
    if isinstance(cause, httpx.RequestError):
        return TaskFailed(
            f"cannot reach the A2A agent: {type(cause).__name__}: {cause}", reason="A2A_UNREACHABLE"
        )
    return TaskFailed(f"A2A call failed: {err}", reason="A2A_CLIENT_ERROR")


def _protocol_failure(err: a2a_errors.A2AError) -> TaskFailed:
    """An A2A error answer as a task failure (retryable for the agent's own errors)."""
    name = type(err).__name__.removesuffix("Error")
    reason = "A2A_" + "".join(f"_{c}" if c.isupper() else c.upper() for c in name).lstrip("_")
    retryable = isinstance(err, _RETRYABLE_A2A_ERRORS)
    return TaskFailed(
        f"the A2A agent answered {type(err).__name__}: {err.message}",
        reason=reason[:64],
        retryable=retryable,
    )


def _grpc_channel(url: str) -> Any:
    """A gRPC channel for an A2A gRPC interface (``host:port``; TLS for ``https://``)."""
    import grpc

    parsed = urlparse(url if "://" in url else f"grpc://{url}")
    target = parsed.netloc or url
    if parsed.scheme == "https":
        return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials())
    return grpc.aio.insecure_channel(target)


__all__ = ["A2A_SERVICE", "CANCEL_WAIT_S", "SUPPORTED_BINDINGS", "RemoteAgent", "interface_of"]
