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
- transport: the card's first interface in JSON-RPC, else HTTP+JSON, else gRPC (what
  a2a-sdk's client speaks; 0.3 cards included, through a2a-sdk's compatibility layer).
- metadata: ``bridge: a2a``, ``a2a_card_url``, ``a2a_url`` (the endpoint called),
  ``a2a_transport``, ``a2a_skills``.

A task, ours → A2A (the convention the Out side serves): one message, metadata
``skill`` = the A2A skill id (and ``upstream`` = upstream outputs, when there are any),
parts = a DataPart with the input object plus a TextPart with ``input["text"]`` (or
``"prompt"``) — only the TextPart (the object as JSON when it has no text) for a skill
whose input modes take no JSON; context id = our task's (the workflow id); message id =
``meshwright-<our task id>``, so a re-dispatch of one attempt sends the same message.
With a streaming card the call streams: status messages become ``ctx.progress``,
artifacts ``ctx.artifact``. The end, A2A → ours:

- COMPLETED: the output is the DataPart object of the artifact named ``output``; without
  one, ``{"text": the artifacts' text parts joined, "artifacts": [{name, data}...]}``
  (with no artifact at all, the final status message's text). An agent answering with a
  Message instead of a task: its first DataPart object, else ``{"text": its text}``.
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

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx
from a2a.client import A2ACardResolver, AgentCardResolutionError
from a2a.types import AgentCard
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH

from meshwright.agent.a2a import card as a2a_card
from meshwright.agent.a2a._bridge_map import PriceRules, skill_ids_for
from meshwright.agent.a2a._bridge_remote import SUPPORTED_BINDINGS, RemoteAgent, interface_of
from meshwright.agent.agent import Agent
from meshwright.agent.context import TaskContext
from meshwright.agent.skill import Skill
from meshwright.agent.v1 import agent_pb2


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
    binding, url = interface_of(card)
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
