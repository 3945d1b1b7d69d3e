"""External A2A agents in the mesh: a bridge agent per A2A agent (A2A "In").

``meshwright agent a2a CARD_URL --registry ...`` serves a normal meshwright agent (an
``Agent`` on ``AgentRuntime``) whose skills are the A2A agent's, each one calling the
A2A agent with a2a-sdk's client. To the engine it is a native agent, so placement,
retries, payment (this bridge agent's account is paid per finished task) and cancel work
unchanged. ``fetch_card`` resolves and checks the card; ``bridge_agent`` builds the agent.

The card, A2A → ``meshwright.agent.v1.AgentCard``:

- name, description, version: copied (``--name`` overrides the name).
- each skill: id through ``skill_id_for`` (dotted lower case; a valid id is kept), name,
  description, tags, examples copied; the table of our id → A2A id is card metadata
  ``a2a_skills`` (JSON), and every call sends the A2A id.
- price: ``--price SKILL=N`` (either id), else the card's pricing extension
  (``https://meshwright.dev/a2a/ext/pricing``, params ``{skill_id: price}``), else
  ``--default-price``, else 0.
- capabilities: streaming as the card says; cancellation on (A2A ``tasks/cancel``).
- metadata: ``bridge: a2a``, ``a2a_card_url``, ``a2a_url`` (the endpoint called),
  ``a2a_transport``, ``a2a_skills``.

A task, ours → A2A (the convention the Out side serves): one message, metadata
``skill`` = the A2A skill id (and ``upstream`` = upstream outputs, when there are any),
parts = a DataPart with the input object plus a TextPart with ``input["text"]`` (or
``"prompt"``); context id = our task's (the workflow id); message id =
``meshwright-<our task id>``, so a re-dispatch of one attempt sends the same message.
With a streaming card the call streams: status messages become ``ctx.progress``,
artifacts ``ctx.artifact``. The end, A2A → ours:

- COMPLETED: the output is the DataPart object of the artifact named ``output``; without
  one, ``{"text": the artifacts' text parts joined, "artifacts": [{name, data}...]}``.
- FAILED, or CANCELED by the remote: ``TaskFailed``, retryable (``A2A_TASK_FAILED``,
  ``A2A_TASK_CANCELED``).
- REJECTED, INPUT_REQUIRED, AUTH_REQUIRED: ``TaskRejected``, not retried (the bridge
  cannot hold a conversation; the remote task is canceled first).
- HTTP 5xx, 408, 429, network errors, timeouts, A2A internal errors: ``TaskFailed``,
  retryable, so the engine tries again; other HTTP 4xx and A2A request errors: not
  retryable.
- Our task canceled (``CancelTask``, the workflow canceled, the caller gone): the skill
  sees ``asyncio.CancelledError`` and sends A2A ``tasks/cancel`` for the remote task
  (best effort, bounded), then ends CANCELED as any skill.

Each call is a CLIENT span ``lf.a2a.v1.A2AService/<Method>`` (with tracing on) and
carries the W3C trace context in its HTTP headers (with tracing off, the context the
task arrived with passes through), so the remote's work joins the workflow's trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx
from a2a.client import (
    A2ACardResolver,
    A2AClientError,
    A2AClientTimeoutError,
    AgentCardResolutionError,
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
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, TransportProtocol
from opentelemetry.trace import SpanKind

from meshwright.agent.a2a import card as a2a_card
from meshwright.agent.a2a._bridge_map import (
    INTERRUPTED,
    OUTPUT_ARTIFACT,
    TERMINAL,
    PriceRules,
    artifact_data,
    input_message,
    merge_artifact,
    message_id_for,
    parts_data,
    skill_ids_for,
    status_text,
    task_output,
)
from meshwright.agent.agent import Agent
from meshwright.agent.context import TaskContext
from meshwright.agent.errors import TaskFailed, TaskRejected
from meshwright.agent.skill import Skill
from meshwright.agent.v1 import agent_pb2
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


class CardError(ValueError):
    """The card URL gives no card the bridge can serve; ``exit_code`` says why:
    2 for bad input (not a card, no skills, no transport we speak), 1 when unreachable."""

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeOptions:
    """How a bridge agent is built and calls its A2A agent."""

    prices: Mapping[str, int] = field(default_factory=dict)
    """``--price``: price by A2A or our skill id; beats the card's."""
    default_price: int | None = None
    """``--default-price``: for skills neither ``prices`` nor the card price."""
    timeout_s: float = 300.0
    """Longest one A2A task may take, end to end (and each HTTP request)."""
    token: str = field(default="", repr=False)
    """Bearer token for the A2A agent ("" sends none); never logged."""
    skill_prefix: str = ""
    """Put before every mapped skill id (``"ext."``), to keep external skills apart."""
    name: str = ""
    """Agent name; the card's when empty."""
    capacity: int = 16
    """Tasks the bridge runs at once (0 unlimited)."""


# -- the card -----------------------------------------------------------------------


def card_location(url: str) -> tuple[str, str]:
    """(base URL, card path) for ``url``: the card URL itself when its path ends in
    ``.json`` or lies under ``/.well-known/``, else a base URL whose card is at A2A's
    well-known path. CardError for a URL that is not http(s)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise CardError(f"{url!r} is not an http(s) URL of an A2A agent or its card")
    if parsed.path.endswith(".json") or "/.well-known/" in parsed.path:
        return url, ""
    return url.rstrip("/"), AGENT_CARD_WELL_KNOWN_PATH


async def fetch_card(
    url: str, *, token: str = "", timeout_s: float = 10.0
) -> tuple[AgentCard, str]:
    """The A2A card at ``url`` (a card URL or the agent's base URL), checked by
    ``check_card``, and the URL it came from. CardError says what is wrong."""
    base, path = card_location(url)
    card_url = base + path
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=timeout_s, headers=headers) as http:
        resolver = A2ACardResolver(http, base, agent_card_path=path)
        try:
            card = await resolver.get_agent_card()
        except AgentCardResolutionError as err:
            raise _card_error(card_url, err) from None
    check_card(card, card_url)
    return card, card_url


def _card_error(card_url: str, err: AgentCardResolutionError) -> CardError:
    cause = err.__cause__
    if isinstance(cause, httpx.RequestError):
        return CardError(f"cannot reach {card_url}: {cause or type(cause).__name__}", exit_code=1)
    if err.status_code is not None:
        unreachable = err.status_code >= 500 or err.status_code in (408, 429)
        return CardError(
            f"{card_url} answered HTTP {err.status_code}"
            + ("" if unreachable else ": no A2A agent card there"),
            exit_code=1 if unreachable else 2,
        )
    if isinstance(cause, json.JSONDecodeError):
        return CardError(f"{card_url} is not JSON, so not an A2A agent card")
    return CardError(f"{card_url} is not a valid A2A agent card: {cause or err}")


def check_card(card: AgentCard, card_url: str = "the card") -> None:
    """CardError unless the bridge can serve ``card``: it has skills, distinct skill ids,
    and an interface in a binding a2a-sdk's client speaks (``SUPPORTED_BINDINGS``)."""
    if not card.skills:
        raise CardError(f"{card_url}: the agent card lists no skills, so there is nothing to offer")
    try:
        skill_ids_for([s.id for s in card.skills])
    except ValueError as err:
        raise CardError(f"{card_url}: {err}") from None
    offered = [i.protocol_binding for i in card.supported_interfaces]
    if not any(b in SUPPORTED_BINDINGS for b in offered):
        raise CardError(
            f"{card_url}: no transport the bridge speaks: the card offers "
            f"{', '.join(offered) or 'no interface'}; supported: {', '.join(SUPPORTED_BINDINGS)}"
        )
    try:
        a2a_card.prices(card)
    except (TypeError, ValueError):
        raise CardError(
            f"{card_url}: the pricing extension ({a2a_card.PRICING_EXTENSION}) must map skill "
            "ids to whole numbers"
        ) from None


def _interface(card: AgentCard) -> tuple[str, str]:
    """(binding, url) the bridge calls: the first supported binding the card offers."""
    for binding in SUPPORTED_BINDINGS:
        for interface in card.supported_interfaces:
            if interface.protocol_binding == binding:
                return binding, interface.url
    raise CardError("no supported interface")  # check_card ran first


# -- the agent ----------------------------------------------------------------------


class BridgeAgent(Agent):
    """An ``Agent`` whose card says what the A2A card says about streaming."""

    def __init__(self, name: str, *, streaming: bool, remote: RemoteAgent, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.streaming = streaming
        self.remote = remote
        """The A2A side, closed when a runtime stops."""

    def card(self) -> agent_pb2.AgentCard:
        card = super().card()
        card.capabilities.streaming = self.streaming
        return card


def bridge_agent(card: AgentCard, *, card_url: str, options: BridgeOptions) -> BridgeAgent:
    """The meshwright agent that offers ``card``'s skills by calling its agent over A2A
    (the mapping is in the module docstring). ValueError for a card ``check_card`` refuses
    or options that make bad skills."""
    check_card(card, card_url)
    binding, url = _interface(card)
    ids = skill_ids_for([s.id for s in card.skills], prefix=options.skill_prefix)
    rules = PriceRules(
        flags=dict(options.prices), card=a2a_card.prices(card), default=options.default_price
    )
    known = set(ids) | set(ids.values())
    unknown = sorted(set(options.prices) - known)
    if unknown:
        raise ValueError(
            f"--price names skills the card does not have: {', '.join(unknown)} "
            f"(skills: {', '.join(sorted(ids.values()))})"
        )
    remote = RemoteAgent(card, timeout_s=options.timeout_s, token=options.token)
    agent = BridgeAgent(
        options.name or card.name or "a2a-agent",
        streaming=bool(card.capabilities.streaming),
        remote=remote,
        description=card.description,
        version=card.version or "0.0.0",
        capacity=options.capacity,
        tags=["a2a"],
        metadata={
            "bridge": "a2a",
            "a2a_card_url": card_url,
            "a2a_url": url,
            "a2a_transport": binding,
            "a2a_skills": json.dumps({ours: a2a for a2a, ours in ids.items()}, sort_keys=True),
        },
    )
    for skill in card.skills:
        ours = ids[skill.id]
        agent.add_skill(
            Skill(
                id=ours,
                fn=RemoteSkill(remote, skill.id),
                name=skill.name,
                description=skill.description,
                price=rules.price(skill.id, ours),
                tags=tuple(skill.tags),
                examples=tuple(skill.examples),
            )
        )

    @agent.on_stop
    async def close_remote(_: object) -> None:
        await remote.close()

    return agent


class RemoteSkill:
    """One A2A skill as a skill function: ``await RemoteSkill(remote, id)(input, ctx)``."""

    def __init__(self, remote: RemoteAgent, a2a_skill: str) -> None:
        self.remote = remote
        self.a2a_skill = a2a_skill

    async def __call__(self, input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return await self.remote.run(self.a2a_skill, input, ctx)

    def __repr__(self) -> str:
        return f"RemoteSkill({self.a2a_skill!r})"


# -- the calls ----------------------------------------------------------------------

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
        self.binding, self.url = _interface(card)
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
        )
        with telemetry.span(
            f"{A2A_SERVICE}/{method}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                async with asyncio.timeout(self.timeout_s):
                    async for event in self._send(SendMessageRequest(message=message)):
                        if await exchange.take(event):
                            break
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
            except A2AClientError as err:
                raise _client_failure(err) from None
            except a2a_errors.A2AError as err:
                raise _protocol_failure(err) from None
            if span is not None and exchange.task.id:
                span.set_attribute("meshwright.a2a.task_id", exchange.task.id)
        return await self._end(exchange)

    async def _send(self, request: SendMessageRequest) -> AsyncIterator[StreamResponse]:
        async for event in self.client().send_message(request, context=self._call_context()):
            yield event

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


__all__ = [
    "SUPPORTED_BINDINGS",
    "BridgeAgent",
    "BridgeOptions",
    "CardError",
    "RemoteAgent",
    "RemoteSkill",
    "bridge_agent",
    "card_location",
    "check_card",
    "fetch_card",
]
