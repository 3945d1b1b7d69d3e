"""The A2A catalog's data: a cached snapshot of the live agents, searched and paged.

The snapshot is the registry's ACTIVE agents, read a few pages at a time and
kept for ``cache_s``: however many anonymous requests arrive, the registry sees
at most one listing per ``cache_s`` (concurrent requests share one read).
Searching and paging happen on the snapshot, so a filter costs the registry
nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from meshwright.agent.a2a.card import a2a_card
from meshwright.agent.v1 import agent_pb2
from meshwright.mesh.client import ServiceClient
from meshwright.mesh.errors import FieldViolation, InvalidArgument, NotFound
from meshwright.registry.v1 import registry_pb2

log = logging.getLogger(__name__)

A2A_URL_KEY = "a2a_url"
"""Card metadata key under which an agent that serves A2A itself names its A2A endpoint."""

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
"""Most entries one ``GET /a2a/agents`` returns; a larger ``page_size`` is a 400, not a
silent clamp, so a client never mistakes a short page for the end of the list."""

_REGISTRY_PAGE = 1000  # the registry's own maximum page size


class AgentNotListed(NotFound):
    """The catalog lists no live agent of that id (unknown, or not ACTIVE: the two are
    not told apart, so anonymous callers learn nothing about agents that are not live)."""

    reason = "A2A_AGENT_NOT_LISTED"


@dataclass(frozen=True, slots=True)
class ListedAgent:
    """One live agent as the catalog searches it."""

    agent_id: str
    card: agent_pb2.AgentCard
    """The registry's card (the A2A card is built from it per request: its URL depends on
    the request's base URL)."""
    own_a2a_url: str
    """The agent's own A2A endpoint (``card.metadata["a2a_url"]``, http(s) only), or ""
    when it is reached through the mesh endpoint."""
    health_detail: str
    """Non-empty while the agent works at reduced quality (e.g. "DEGRADED: ...")."""
    skills: frozenset[str]
    tags: frozenset[str]
    """Registration tags and the skill tags its A2A card shows."""
    text: str
    """Case-folded name, description, skill names, descriptions and tags, for ``q``."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The live agents at one moment, ordered by agent id."""

    agents: tuple[ListedAgent, ...]
    by_id: Mapping[str, ListedAgent]
    taken_at: float
    truncated: bool = False
    """More agents were live than the catalog keeps (``max_agents``)."""


def own_a2a_url(card: agent_pb2.AgentCard) -> str:
    """The agent's own A2A URL from its card metadata, or "" if absent or not http(s)
    (a registration may carry any string there; only a web URL is worth sending to
    clients)."""
    raw = card.metadata.get(A2A_URL_KEY, "").strip()
    if not raw:
        return ""
    try:
        parts = urlsplit(raw)
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return raw  # as the agent gave it: a JSON-RPC endpoint's path is the agent's to choose


def _listed(agent: registry_pb2.Agent) -> ListedAgent:
    # Search what the client will see: the A2A card fills skill descriptions and tags
    # the registry card leaves empty, and a tag shown in a card must find that card.
    shown = a2a_card(agent.card, url="", auth=False, agent_id=agent.agent_id)
    tags = {*agent.tags}
    words = [shown.name, shown.description]
    for skill in shown.skills:
        tags.update(skill.tags)
        words.extend((skill.name, skill.description, *skill.tags))
    return ListedAgent(
        agent_id=agent.agent_id,
        card=agent.card,
        own_a2a_url=own_a2a_url(agent.card),
        health_detail=agent.health_detail,
        skills=frozenset(s.id for s in agent.card.skills),
        tags=frozenset(tags),
        text="\n".join(words).casefold(),
    )


class SnapshotCache:
    """The registry's ACTIVE agents, read at most once per ``cache_s``.

    ``registry`` is called as the gateway itself (its own token): what anonymous callers
    see does not depend on who asks, so one read serves everyone.
    """

    def __init__(
        self,
        registry: ServiceClient,
        *,
        cache_s: float,
        max_agents: int,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._cache_s = cache_s
        self._max_agents = max_agents
        self._timeout_s = timeout_s
        self._clock = clock
        self._snapshot: Snapshot | None = None
        self._loading: asyncio.Task[Snapshot] | None = None
        self._memo: dict[bytes, ListedAgent] = {}
        self.reads = 0
        """Registry listings made (each one or more ListAgents pages)."""

    async def get(self) -> Snapshot:
        """The current snapshot, read again when older than ``cache_s``."""
        snap = self._snapshot
        if snap is not None and self._clock() - snap.taken_at < self._cache_s:
            return snap
        if self._loading is None:
            self._loading = asyncio.create_task(self._load(), name="a2a catalog snapshot")
            self._loading.add_done_callback(self._loaded)
        # shield: one caller going away must not cancel the read the others wait on.
        return await asyncio.shield(self._loading)

    def _loaded(self, task: asyncio.Task[Snapshot]) -> None:
        self._loading = None
        if not task.cancelled() and task.exception() is None:
            self._snapshot = task.result()

    async def _load(self) -> Snapshot:
        self.reads += 1
        found: list[registry_pb2.Agent] = []
        token = ""
        truncated = False
        while True:
            reply = await self._registry.call(
                "ListAgents",
                registry_pb2.ListAgentsRequest(
                    state=registry_pb2.AGENT_STATE_ACTIVE,
                    page_size=_REGISTRY_PAGE,
                    page_token=token,
                ),
                timeout=self._timeout_s,
            )
            found.extend(reply.agents)
            token = reply.next_page_token
            if len(found) >= self._max_agents:
                truncated = bool(token) or len(found) > self._max_agents
                del found[self._max_agents :]
                break
            if not token:
                break
        if truncated:
            log.warning(
                "the A2A catalog lists the first %d live agents only (more are registered)",
                self._max_agents,
            )
        memo: dict[bytes, ListedAgent] = {}
        listed: list[ListedAgent] = []
        for agent in found:
            if agent.state != registry_pb2.AGENT_STATE_ACTIVE:
                continue  # the filter is the registry's; checked again, it is what we promise
            # Building an A2A card per agent per read would dominate a big mesh's reads;
            # an agent whose registration did not change keeps its entry.
            key = _memo_key(agent)
            entry = self._memo.get(key) or _listed(agent)
            memo[key] = entry
            listed.append(entry)
        self._memo = memo
        listed.sort(key=lambda a: a.agent_id)
        return Snapshot(
            agents=tuple(listed),
            by_id={a.agent_id: a for a in listed},
            taken_at=self._clock(),
            truncated=truncated,
        )


def _memo_key(agent: registry_pb2.Agent) -> bytes:
    part = registry_pb2.Agent(
        agent_id=agent.agent_id,
        card=agent.card,
        tags=agent.tags,
        health_detail=agent.health_detail,
    )
    return part.SerializeToString(deterministic=True)


@dataclass(frozen=True, slots=True)
class CatalogQuery:
    """The filters and page of one ``GET /a2a/agents``."""

    skill: str = ""
    """Exact skill id."""
    tags: tuple[str, ...] = ()
    """Every one must be a registration tag or a skill tag of the agent."""
    terms: tuple[str, ...] = ()
    """Case-folded words of ``q``; every one must occur in the agent's text."""
    page_size: int = DEFAULT_PAGE_SIZE
    after: str = ""
    """The last agent id of the previous page ("" for the first page)."""

    def matches(self, agent: ListedAgent) -> bool:
        if self.skill and self.skill not in agent.skills:
            return False
        if any(t not in agent.tags for t in self.tags):
            return False
        return all(term in agent.text for term in self.terms)

    def fingerprint(self) -> str:
        """Names the filters, so a page token is refused with other filters (AIP-158)."""
        blob = json.dumps([self.skill, sorted(self.tags), list(self.terms)])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_PARAMS = {
    "skill": "skill",
    "tag": "tag",
    "q": "q",
    "page_size": "page_size",
    "pageSize": "page_size",
    "page_token": "page_token",
    "pageToken": "page_token",
}


def parse_query(items: Iterable[tuple[str, str]]) -> CatalogQuery:
    """A query from the request's query parameters; InvalidArgument naming each bad one.

    Unknown parameters are refused, not ignored: a misspelt filter (``skills=``) would
    otherwise silently list everything.
    """
    values: dict[str, list[str]] = {}
    violations: list[FieldViolation] = []
    for name, value in items:
        field = _PARAMS.get(name)
        if field is None:
            violations.append(
                FieldViolation(name, "is not a parameter (skill, tag, q, page_size, page_token)")
            )
            continue
        values.setdefault(field, []).append(value)
    for field, given in values.items():
        if field != "tag" and len(given) > 1:
            violations.append(FieldViolation(field, "is given more than once"))
    single = {k: v[0] for k, v in values.items() if k != "tag"}
    tags = tuple(t for t in values.get("tag", []) if t)
    terms = tuple(single.get("q", "").casefold().split())
    page_size = DEFAULT_PAGE_SIZE
    raw_size = single.get("page_size", "").strip()
    if raw_size:
        try:
            page_size = int(raw_size)
        except ValueError:
            violations.append(FieldViolation("page_size", "is not an integer"))
        else:
            if page_size < 0:
                violations.append(FieldViolation("page_size", "must not be negative"))
            elif page_size > MAX_PAGE_SIZE:
                violations.append(FieldViolation("page_size", f"must be at most {MAX_PAGE_SIZE}"))
            elif page_size == 0:
                page_size = DEFAULT_PAGE_SIZE
    query = CatalogQuery(skill=single.get("skill", ""), tags=tags, terms=terms, page_size=page_size)
    raw_token = single.get("page_token", "")
    if raw_token and not violations:
        after = _read_token(raw_token, query.fingerprint())
        if isinstance(after, FieldViolation):
            violations.append(after)
        else:
            query = CatalogQuery(
                skill=query.skill,
                tags=query.tags,
                terms=query.terms,
                page_size=query.page_size,
                after=after,
            )
    if violations:
        raise InvalidArgument(
            "; ".join(f"{v.field}: {v.description}" for v in violations), violations=violations
        )
    return query


def page_token(query: CatalogQuery, last_agent_id: str) -> str:
    """The token of the page after ``last_agent_id`` with ``query``'s filters."""
    blob = json.dumps({"after": last_agent_id, "f": query.fingerprint()}, separators=(",", ":"))
    return base64.urlsafe_b64encode(blob.encode()).decode().rstrip("=")


def _read_token(token: str, fingerprint: str) -> str | FieldViolation:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        after, made_for = data["after"], data["f"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        return FieldViolation("page_token", "is not a token this catalog issued")
    if not isinstance(after, str) or not isinstance(made_for, str):
        return FieldViolation("page_token", "is not a token this catalog issued")
    if made_for != fingerprint:
        return FieldViolation(
            "page_token", "was issued for other filters (skill, tag, q); start again without it"
        )
    return after


def select(snapshot: Snapshot, query: CatalogQuery) -> tuple[list[ListedAgent], str]:
    """One page of ``snapshot``'s agents matching ``query``, and the next page's token.

    Keyset paging on the agent id: agents registering or leaving between pages shift
    nothing, so no agent is skipped or repeated that stays live throughout.
    """
    page: list[ListedAgent] = []
    more = False
    for agent in _after(snapshot.agents, query.after):
        if not query.matches(agent):
            continue
        if len(page) == query.page_size:
            more = True
            break
        page.append(agent)
    token = page_token(query, page[-1].agent_id) if more and page else ""
    return page, token


def _after(agents: Sequence[ListedAgent], agent_id: str) -> Sequence[ListedAgent]:
    if not agent_id:
        return agents
    return agents[bisect.bisect_right(agents, agent_id, key=lambda a: a.agent_id) :]


__all__ = [
    "A2A_URL_KEY",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "AgentNotListed",
    "CatalogQuery",
    "ListedAgent",
    "Snapshot",
    "SnapshotCache",
    "own_a2a_url",
    "page_token",
    "parse_query",
    "select",
]
