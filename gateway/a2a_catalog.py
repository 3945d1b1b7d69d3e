"""A curated registry for A2A clients: every live agent's A2A card, searchable, at one URL.

Routes (mounted by the gateway before its derived routes):

- ``GET /a2a/agents`` — the A2A cards of the live agents (registry state ACTIVE), ordered
  by agent id, filtered by ``skill=`` (exact skill id), ``tag=`` (repeatable: every tag
  must be a registration tag or a skill tag of the agent) and ``q=`` (case-insensitive;
  every word must occur in the name, description or a skill's name, description or
  tags), paged with ``page_size`` (default 50, at most 100: more is a 400) and
  ``page_token``. DRAINING, STARTING, INACTIVE, ERROR and STOPPED agents are not listed:
  they take no new work, so a card would send clients to a refusal. An ACTIVE agent with
  a health detail (``DEGRADED: ...``) is listed, still taking work, with the detail shown
  beside its card.
- ``GET /a2a/agents/{agent_id}/.well-known/agent-card.json`` — one agent's card, the URL an
  A2A client's card resolver fetches from the base URL ``/a2a/agents/{agent_id}``;
  ``GET /a2a/agents/{agent_id}`` answers the same card (no redirect: clients need not
  follow one). 404 with reason ``A2A_AGENT_NOT_LISTED`` for an unknown or not-live agent
  (the two are not told apart).
- ``GET /.well-known/api-catalog`` — an RFC 9727 API catalog: an RFC 9264 linkset
  (``application/linkset+json``) whose one context, the catalog's own URL, has an
  ``item`` link to every listed agent's card and to the mesh's card. ``HEAD`` answers
  with the ``Link: <...>; rel="api-catalog"`` header and no body.

Each card's URL (its ``supportedInterfaces[0].url``, where a client sends A2A calls) is the
agent's own ``card.metadata["a2a_url"]`` when it serves A2A itself (an http(s) URL;
anything else is ignored), else the mesh endpoint ``{base}/a2a/mesh``, which routes each
call by skill to a live agent offering it.

Base URL: ``MESHWRIGHT_A2A_CATALOG_PUBLIC_URL`` when set (the right choice behind a proxy
or load balancer); else the request's scheme and ``Host`` header. ``X-Forwarded-Host`` and
``X-Forwarded-Proto`` are honoured only with ``MESHWRIGHT_A2A_CATALOG_TRUST_PROXY=1``
(anyone can send them). uvicorn itself already applies ``X-Forwarded-Proto`` from the
peers in its ``FORWARDED_ALLOW_IPS`` (default 127.0.0.1).

Access: readable without credentials by default. Cards carry names, skills and prices,
no secrets, and A2A clients fetch cards before they hold any token; the calls a card
leads to are authorized as usual (cards say so with a bearer security scheme when the
mesh checks tokens). The registry is read as the gateway itself, at most once per
``cache_s`` whatever the traffic. ``MESHWRIGHT_A2A_CATALOG_AUTH=1`` requires a bearer
token on every catalog route: the caller's token is forwarded to a one-agent
``ListAgents`` call, so the registry's own policy authenticates, authorizes and
rate-limits the caller (401/403/429 as for any RPC); the answer then comes from the same
shared snapshot (every role allowed to list agents sees the same cards).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from meshwright.agent.a2a.card import AGENT_CARD_PATH, a2a_card, card_json
from meshwright.agent.v1 import agent_pb2
from meshwright.gateway._a2a_index import (
    AgentNotListed,
    ListedAgent,
    SnapshotCache,
    parse_query,
    select,
)
from meshwright.gateway._metadata import forwarded_metadata
from meshwright.gateway.errors import MethodNotAllowed
from meshwright.gateway.status import NO_STORE, error_response
from meshwright.mesh.client import ServiceClient
from meshwright.mesh.config import ENV_PREFIX
from meshwright.mesh.errors import FieldViolation, Internal, InvalidArgument, MeshError
from meshwright.mesh.logs import access_line
from meshwright.registry.v1 import registry_pb2

log = logging.getLogger(__name__)

API_CATALOG_PATH = "/.well-known/api-catalog"
AGENTS_PATH = "/a2a/agents"
MESH_A2A_PATH = "/a2a/mesh"
"""Where the mesh's own A2A endpoint (the skill router) is served."""
LINKSET_TYPE = "application/linkset+json"
API_CATALOG_PROFILE = "https://www.rfc-editor.org/info/rfc9727"
API_CATALOG_TYPE = f'{LINKSET_TYPE}; profile="{API_CATALOG_PROFILE}"'
"""RFC 9727 §4.2: a linkset, with the api-catalog profile named in the media type."""

DEFAULT_CACHE_S = 2.0
DEFAULT_MAX_AGENTS = 10_000

_METHODS = ("GET", "HEAD")
_ANY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_REGISTRY_SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
_AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name
_HOST = re.compile(r"([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogSettings:
    """How the A2A catalog answers (each from a ``MESHWRIGHT_A2A_CATALOG_*`` variable)."""

    auth: bool = False
    """Require a bearer token on every catalog route (``..._AUTH``); anonymous when off."""
    cache_s: float = DEFAULT_CACHE_S
    """How long one registry listing serves every request, in seconds (``..._CACHE_S``);
    0 reads the registry per request (concurrent requests still share one read)."""
    public_url: str = ""
    """Base URL clients reach the gateway at, e.g. ``https://mesh.example.com``
    (``..._PUBLIC_URL``); taken from each request when empty."""
    trust_proxy: bool = False
    """Build the base URL from ``X-Forwarded-Host``/``-Proto`` (``..._TRUST_PROXY``): only
    behind a proxy that sets them, as any client can send them."""
    max_agents: int = DEFAULT_MAX_AGENTS
    """Most live agents the catalog keeps (``..._MAX_AGENTS``); more are logged and left
    out, so one listing stays bounded in time and memory."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.cache_s) or self.cache_s < 0:
            raise ValueError(
                f"A2A catalog cache_s (MESHWRIGHT_A2A_CATALOG_CACHE_S) must be 0 or more, "
                f"not {self.cache_s}"
            )
        if self.max_agents < 1:
            raise ValueError(
                f"A2A catalog max_agents (MESHWRIGHT_A2A_CATALOG_MAX_AGENTS) must be at least 1, "
                f"not {self.max_agents}"
            )
        if self.public_url:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
                raise ValueError(
                    f"A2A catalog public_url (MESHWRIGHT_A2A_CATALOG_PUBLIC_URL) "
                    f"{self.public_url!r} is not http(s)://host[:port][/path]"
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CatalogSettings:
        """Defaults overridden by ``MESHWRIGHT_A2A_CATALOG_*``; ValueError naming a bad one."""
        env = os.environ if environ is None else environ
        prefix = f"{ENV_PREFIX}A2A_CATALOG_"

        def raw(name: str) -> str:
            return env.get(prefix + name, "").strip()

        def flag(name: str) -> bool:
            value = raw(name).lower()
            if value in ("", "0", "false", "no", "off"):
                return False
            if value in ("1", "true", "yes", "on"):
                return True
            raise ValueError(f"{prefix}{name}={value!r} is not a boolean (1/0, true/false)")

        def number(name: str, kind: Callable[[str], Any], default: Any) -> Any:
            value = raw(name)
            if not value:
                return default
            try:
                return kind(value)
            except ValueError:
                raise ValueError(f"{prefix}{name}={value!r} is not a number") from None

        return cls(
            auth=flag("AUTH"),
            cache_s=number("CACHE_S", float, DEFAULT_CACHE_S),
            public_url=raw("PUBLIC_URL").rstrip("/"),
            trust_proxy=flag("TRUST_PROXY"),
            max_agents=number("MAX_AGENTS", int, DEFAULT_MAX_AGENTS),
        )


Handler = Callable[[Request], Awaitable[Response]]


class A2aCatalog:
    """The catalog's routes over one registry client; see the module docstring."""

    def __init__(
        self,
        registry: ServiceClient,
        *,
        caller_registry: ServiceClient | None = None,
        settings: CatalogSettings | None = None,
        calls_need_token: bool = True,
        mesh_served: bool = True,
    ) -> None:
        """``registry`` calls as the gateway itself (its own token); ``caller_registry``
        forwards each caller's token (required with ``settings.auth``).
        ``calls_need_token``: the mesh checks tokens, so cards declare a bearer scheme.
        ``mesh_served``: this gateway serves ``/a2a/mesh``; without it, agents that do not
        serve A2A themselves cannot be reached over A2A and are not listed."""
        self.settings = settings or CatalogSettings()
        if self.settings.auth and caller_registry is None:
            raise ValueError("the A2A catalog's auth mode needs a registry client that forwards")
        self._caller_registry = caller_registry
        self._calls_need_token = calls_need_token
        self._mesh_served = mesh_served
        self.snapshots = SnapshotCache(
            registry, cache_s=self.settings.cache_s, max_agents=self.settings.max_agents
        )

    def routes(self) -> list[BaseRoute]:
        """The Starlette routes (every method reaches the handler, so a wrong one gets a
        ``google.rpc.Status`` 405 instead of Starlette's plain-text one)."""
        card = self._endpoint(self._agent_card)
        every = list(_ANY_METHOD)
        return [
            Route(API_CATALOG_PATH, self._endpoint(self._api_catalog), methods=every),
            Route(AGENTS_PATH, self._endpoint(self._list_agents), methods=every),
            Route(AGENTS_PATH + "/{agent_id}" + AGENT_CARD_PATH, card, methods=every),
            Route(AGENTS_PATH + "/{agent_id}", card, methods=every),
        ]

    # -- the routes

    async def _list_agents(self, request: Request) -> Response:
        await self._authorize(request)  # first: a caller without a token learns nothing
        query = parse_query(request.query_params.multi_items())
        snapshot = await self.snapshots.get()
        page, token = select(snapshot, query)
        base = self._base_url(request)
        return self._json({"agents": [self._entry(a, base) for a in page], "nextPageToken": token})

    async def _agent_card(self, request: Request) -> Response:
        agent_id = str(request.path_params["agent_id"])
        await self._authorize(request)
        agent = (await self.snapshots.get()).by_id.get(agent_id)
        if agent is None or not self._reachable(agent):
            raise AgentNotListed(
                f"the A2A catalog lists no live agent {agent_id!r}", metadata={"agent_id": agent_id}
            )
        return self._json(self._card(agent, self._base_url(request)))

    async def _api_catalog(self, request: Request) -> Response:
        await self._authorize(request)
        base = self._base_url(request)
        anchor = base + API_CATALOG_PATH
        headers = {"Link": f'<{anchor}>; rel="api-catalog"; type="{LINKSET_TYPE}"'}
        if request.method == "HEAD":
            # RFC 9727 §2: HEAD on the well-known URI answers with the Link header.
            return Response(status_code=200, headers=headers, media_type=API_CATALOG_TYPE)
        items: list[dict[str, str]] = []
        if self._mesh_served:
            items.append(
                {
                    "href": base + MESH_A2A_PATH + AGENT_CARD_PATH,
                    "type": "application/json",
                    "title": "meshwright mesh: every live skill, routed to an agent offering it",
                }
            )
        snapshot = await self.snapshots.get()
        for agent in snapshot.agents:
            if self._reachable(agent):
                items.append(
                    {
                        "href": _card_url(base, agent.agent_id),
                        "type": "application/json",
                        "title": agent.card.name or agent.agent_id,
                    }
                )
        body = {"linkset": [{"anchor": anchor, "item": items}]}
        return self._json(body, media_type=API_CATALOG_TYPE, headers=headers)

    # -- helpers

    def _reachable(self, agent: ListedAgent) -> bool:
        return bool(agent.own_a2a_url) or self._mesh_served

    def _card(self, agent: ListedAgent, base: str) -> dict[str, Any]:
        url = agent.own_a2a_url or base + MESH_A2A_PATH
        return card_json(
            a2a_card(agent.card, url=url, auth=self._calls_need_token, agent_id=agent.agent_id)
        )

    def _entry(self, agent: ListedAgent, base: str) -> dict[str, Any]:
        return {
            "agentId": agent.agent_id,
            "cardUrl": _card_url(base, agent.agent_id),
            "healthDetail": agent.health_detail,
            "card": self._card(agent, base),
        }

    async def _authorize(self, request: Request) -> None:
        """In auth mode, the registry's own policy decides: the caller's token goes to a
        ListAgents call (401 without one, 403 for a role that may not list, 429 when
        the caller is over its rate)."""
        if not self.settings.auth:
            return
        assert self._caller_registry is not None
        await self._caller_registry.call(
            "ListAgents",
            registry_pb2.ListAgentsRequest(state=registry_pb2.AGENT_STATE_ACTIVE, page_size=1),
            metadata=forwarded_metadata(request.headers.items()),
            timeout=5.0,
        )

    def _base_url(self, request: Request) -> str:
        if self.settings.public_url:
            return self.settings.public_url
        scheme = str(request.scope.get("scheme", "http"))
        host = request.headers.get("host", "")
        if self.settings.trust_proxy:
            proto = _first(request.headers.get("x-forwarded-proto", "")).lower()
            if proto in ("http", "https"):
                scheme = proto
            host = _first(request.headers.get("x-forwarded-host", "")) or host
        if not host:
            server = request.scope.get("server")
            host = f"{server[0]}:{server[1]}" if server else ""
        if not _HOST.fullmatch(host):
            # The host ends up in every URL the catalog hands out: refuse what is not one.
            raise InvalidArgument(
                f"Host {host!r} is not host[:port]",
                violations=[FieldViolation("Host", "is not host[:port]")],
            )
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return f"{scheme}://{host}{root}"

    def _json(
        self,
        body: Any,
        *,
        media_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        return JSONResponse(body, media_type=media_type, headers=dict(headers or {}))

    def _finish(self, response: Response) -> None:
        if self.settings.auth:
            # What a token unlocked must not sit in a shared cache.
            response.headers["Cache-Control"] = NO_STORE
        else:
            if response.status_code < 400:
                # Public and short-lived: shared caches may absorb anonymous traffic too.
                max_age = int(self.settings.cache_s)
                response.headers["Cache-Control"] = f"public, max-age={max_age}"
            # Any page may read public cards (no credentials are involved).
            response.headers.setdefault("Access-Control-Allow-Origin", "*")
        if self.settings.trust_proxy and not self.settings.public_url:
            response.headers["Vary"] = "X-Forwarded-Host, X-Forwarded-Proto"

    def _endpoint(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            t0 = time.perf_counter()
            response: Response
            try:
                if request.method not in _METHODS:
                    raise MethodNotAllowed(
                        f"{request.method} is not allowed on {request.url.path}",
                        allowed=_METHODS,
                    )
                response = await handler(request)
            except MethodNotAllowed as err:
                response = error_response(
                    err, status_code=405, headers={"Allow": ", ".join(_METHODS)}
                )
            except MeshError as err:
                response = error_response(err)
            except Exception:
                log.exception("A2A catalog failed on %s %s", request.method, request.url.path)
                response = error_response(Internal("internal error"))
            self._finish(response)
            client = request.scope.get("client")
            access_line(
                f"{request.method} {request.url.path}",
                response.status_code,
                time.perf_counter() - t0,
                "-",
                f"{client[0]}:{client[1]}" if client else "-",
            )
            return response

        return endpoint


def _card_url(base: str, agent_id: str) -> str:
    return f"{base}{AGENTS_PATH}/{quote(agent_id, safe='')}{AGENT_CARD_PATH}"


def _first(value: str) -> str:
    """The first (client-most) entry of a comma-separated forwarded header."""
    return value.split(",", 1)[0].strip()


def a2a_catalog_routes(
    registry: ServiceClient | None,
    fronted: Sequence[ServiceClient] = (),
    *,
    settings: CatalogSettings | None = None,
    calls_need_token: bool = True,
) -> list[BaseRoute]:
    """The catalog's routes for a gateway, or none when it reaches no registry.

    ``registry`` calls as the gateway itself; ``fronted`` are the gateway's clients that
    forward each caller's token: the registry's among them checks callers in auth mode,
    and an AgentService among them (the skill router) means ``/a2a/mesh`` is served
    here. ``settings`` default to ``CatalogSettings.from_env()``.
    """
    if registry is None:
        return []
    by_service = {c.service.full_name: c for c in fronted}
    catalog = A2aCatalog(
        registry,
        caller_registry=by_service.get(_REGISTRY_SERVICE),
        settings=settings or CatalogSettings.from_env(),
        calls_need_token=calls_need_token,
        mesh_served=_AGENT_SERVICE in by_service,
    )
    return catalog.routes()


__all__ = [
    "AGENTS_PATH",
    "API_CATALOG_PATH",
    "API_CATALOG_PROFILE",
    "API_CATALOG_TYPE",
    "LINKSET_TYPE",
    "MESH_A2A_PATH",
    "A2aCatalog",
    "CatalogSettings",
    "a2a_catalog_routes",
]
