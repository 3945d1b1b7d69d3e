"""The A2A catalog in front of a real auth-on node: agents registered through the registry's
REST routes, the catalog fetched over HTTP, one card read by a2a-sdk's own resolver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from a2a.client.card_resolver import A2ACardResolver, parse_agent_card

from meshwright.gateway._a2a_index import MAX_PAGE_SIZE
from meshwright.gateway.a2a_catalog import API_CATALOG_TYPE, CatalogSettings
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.pipeline import Pipeline
from meshwright.mesh.security import Security
from meshwright.node import Node, start_node
from tests.conftest import eventually, free_port
from tests.gateway.support import status_of
from tests.support_auth import test_keys

pytestmark = pytest.mark.asyncio(loop_scope="module")

OWN_A2A_URL = "http://127.0.0.1:7001/a2a"
"""alpha serves A2A itself here (nothing listens: the catalog only hands the URL out)."""
BULK = 105
"""Agents offering bulk.work: more than one page of the largest size."""
CARD = "/.well-known/agent-card.json"


def bearer(role: str, subject: str) -> dict[str, str]:
    return {"authorization": f"Bearer {test_keys().token(role, subject)}"}


ADMIN = bearer("admin", "root")


@dataclass
class Catalog:
    node: Node
    http: httpx.AsyncClient

    @property
    def base(self) -> str:
        assert self.node.http_url is not None
        return self.node.http_url

    def list_agent_reads(self) -> float:
        """ListAgents calls the registry served (the catalog's and everyone else's)."""
        total = 0.0
        for family in self.node.metrics.registry.collect():
            for sample in family.samples:
                if (
                    sample.name == "rpc_server_requests_total"
                    and sample.labels.get("rpc_method") == "ListAgents"
                ):
                    total += sample.value
        return total


async def _start(env: Mapping[str, str], **node_options: Any) -> Catalog:
    keys = test_keys()
    security = Security(
        Pipeline(verifier=keys.verifier()), keys.token("service", "mesh"), None, keys.issuer()
    )
    # Leases only (no health probes): the registered endpoints are not real agents.
    config = MeshConfig(grpc_port=0, http_port=0, grace_s=0, health_check_interval_s=0)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        node = await start_node(config, security=security, **node_options)
    assert node.http_url is not None
    return Catalog(node, httpx.AsyncClient(base_url=node.http_url, timeout=10))


async def register(
    http: httpx.AsyncClient,
    agent_id: str,
    card: dict[str, Any],
    *,
    tags: tuple[str, ...] = (),
) -> str:
    r = await http.post(
        "/v1/agents",
        json={
            "agentId": agent_id,
            "card": card,
            "endpoint": "127.0.0.1:1",
            "tags": list(tags),
            "leaseTtl": "3600s",  # outlives the module: nobody heartbeats these agents
        },
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    assert r.json()["agent"]["state"] == "AGENT_STATE_ACTIVE"
    return str(r.json()["agent"]["leaseId"])


async def heartbeat(http: httpx.AsyncClient, agent_id: str, lease: str, **fields: Any) -> None:
    r = await http.post(
        f"/v1/agents/{agent_id}:heartbeat", json={"leaseId": lease, **fields}, headers=ADMIN
    )
    assert r.status_code == 200, r.text


async def populate(http: httpx.AsyncClient) -> None:
    await register(
        http,
        "alpha",
        {
            "name": "Alpha Writer",
            "description": "Writes prose",
            "version": "1.0.0",
            "skills": [
                {"id": "text.summarize", "name": "Summarize", "tags": ["text", "nlp"]},
                {"id": "text.upper", "name": "Upper"},
            ],
            "metadata": {"a2a_url": OWN_A2A_URL},
        },
        tags=("blue",),
    )
    await register(
        http,
        "bravo",
        {
            "name": "Bravo",
            "description": "Adds numbers",
            "version": "1.0.0",
            "skills": [{"id": "math.add", "name": "Add", "tags": ["math"], "price": 7}],
        },
        tags=("blue", "gpu"),
    )
    await register(
        http,
        "charlie",
        {
            "name": "Charlie",
            "description": "A linguist",
            "version": "1.0.0",
            "skills": [
                {
                    "id": "lang.translate",
                    "name": "Translate",
                    "description": "Turns French into English",
                    "tags": ["nlp"],
                }
            ],
        },
        tags=("green",),
    )
    # geo.locate has no tags: its A2A card shows the id's first segment, "geo", and so
    # does the search. Its a2a_url is no web URL: it goes through the mesh.
    await register(
        http,
        "golf",
        {
            "name": "Golf",
            "description": "Finds places",
            "version": "1.0.0",
            "skills": [{"id": "geo.locate", "name": "Locate"}],
            "metadata": {"a2a_url": "ftp://files.example/agent"},
        },
    )
    foxtrot = await register(
        http,
        "foxtrot",
        {"name": "Foxtrot", "version": "1.0.0", "skills": [{"id": "llm.chat", "name": "Chat"}]},
    )
    await heartbeat(http, "foxtrot", foxtrot, healthDetail="DEGRADED: model server unreachable")
    # Not live: draining (takes no new work), and deregistered (kept STOPPED a while).
    delta = await register(
        http,
        "delta",
        {"name": "Delta", "version": "1.0.0", "skills": [{"id": "math.add", "name": "Add"}]},
    )
    await heartbeat(http, "delta", delta, draining=True)
    await register(
        http,
        "echo",
        {"name": "Echo", "version": "1.0.0", "skills": [{"id": "math.add", "name": "Add"}]},
    )
    r = await http.delete("/v1/agents/echo", headers=ADMIN)
    assert r.status_code == 200, r.text
    bulk_card = {"name": "Bulk", "version": "1.0.0", "skills": [{"id": "bulk.work"}]}
    for start in range(0, BULK, 15):
        await asyncio.gather(
            *(
                register(http, f"bulk-{i:03d}", bulk_card)
                for i in range(start, min(start + 15, BULK))
            )
        )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def catalog() -> AsyncIterator[Catalog]:
    c = await _start({})
    try:
        await populate(c.http)
        yield c
    finally:
        await c.http.aclose()
        await c.node.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def protected() -> AsyncIterator[Catalog]:
    c = await _start({"MESHWRIGHT_A2A_CATALOG_AUTH": "1"})
    try:
        await register(
            c.http,
            "alpha",
            {"name": "Alpha", "version": "1.0.0", "skills": [{"id": "text.upper"}]},
        )
        yield c
    finally:
        await c.http.aclose()
        await c.node.stop()


async def listed(c: Catalog, **params: Any) -> list[str]:
    r = await c.http.get("/a2a/agents", params={"page_size": MAX_PAGE_SIZE, **params})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["nextPageToken"] == "", "the filter should fit one page"
    return [a["agentId"] for a in body["agents"]]


def interface_url(card: dict[str, Any]) -> str:
    return str(card["supportedInterfaces"][0]["url"])


# -- GET /a2a/agents


async def test_lists_every_live_agent_in_id_order_without_a_token(catalog: Catalog) -> None:
    ids: list[str] = []
    token = ""
    while True:
        params: dict[str, Any] = {"page_size": MAX_PAGE_SIZE}
        if token:
            params["page_token"] = token
        r = await catalog.http.get("/a2a/agents", params=params)  # no Authorization
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["cache-control"].startswith("public, max-age=")
        ids += [a["agentId"] for a in r.json()["agents"]]
        token = r.json()["nextPageToken"]
        if not token:
            break
    named = ["alpha", "bravo", "charlie", "foxtrot", "golf"]
    assert ids == sorted(ids)
    assert sorted(ids) == sorted([*named, *(f"bulk-{i:03d}" for i in range(BULK))])
    # DRAINING delta and STOPPED echo are not live: not listed.
    assert "delta" not in ids and "echo" not in ids


async def test_entries_carry_card_url_and_health_detail(catalog: Catalog) -> None:
    r = await catalog.http.get("/a2a/agents", params={"skill": "llm.chat"})
    [entry] = r.json()["agents"]
    assert entry["agentId"] == "foxtrot"
    assert entry["healthDetail"] == "DEGRADED: model server unreachable"  # listed, flagged
    assert entry["cardUrl"] == f"{catalog.base}/a2a/agents/foxtrot{CARD}"
    assert entry["card"]["name"] == "Foxtrot"
    r = await catalog.http.get(entry["cardUrl"])
    assert r.json() == entry["card"]


async def test_each_filter_alone(catalog: Catalog) -> None:
    # skill: the exact skill id, nothing looser.
    assert await listed(catalog, skill="math.add") == ["bravo"]  # delta/echo: not live
    assert await listed(catalog, skill="math") == []
    # tag: a registration tag, a skill tag, or the tag an A2A card derives for a skill.
    assert await listed(catalog, tag="green") == ["charlie"]
    assert await listed(catalog, tag="math") == ["bravo"]
    assert await listed(catalog, tag="geo") == ["golf"]
    # q: case-insensitive text over names, descriptions and skill names/descriptions/tags.
    assert await listed(catalog, q="FRENCH") == ["charlie"]  # a skill's description
    assert await listed(catalog, q="prose") == ["alpha"]  # the agent's description
    assert await listed(catalog, q="locate") == ["golf"]  # a skill's name
    assert await listed(catalog, q="gpu") == []  # registration tags are for tag=, not q=


async def test_filters_combine(catalog: Catalog) -> None:
    assert await listed(catalog, tag="nlp") == ["alpha", "charlie"]
    assert await listed(catalog, tag=["nlp", "green"]) == ["charlie"]  # every tag must match
    assert await listed(catalog, tag=["blue", "gpu"]) == ["bravo"]
    assert await listed(catalog, skill="text.upper", tag="blue") == ["alpha"]
    assert await listed(catalog, skill="math.add", tag="green") == []
    assert await listed(catalog, q="alpha writer") == ["alpha"]  # every word must occur
    assert await listed(catalog, q="alpha french") == []
    assert await listed(catalog, tag="nlp", q="english") == ["charlie"]


async def test_pages_at_exactly_the_max_page_size(catalog: Catalog) -> None:
    r = await catalog.http.get("/a2a/agents", params={"skill": "bulk.work", "page_size": 100})
    assert r.status_code == 200, r.text
    first = r.json()
    assert [a["agentId"] for a in first["agents"]] == [f"bulk-{i:03d}" for i in range(100)]
    assert first["nextPageToken"]
    r = await catalog.http.get(
        "/a2a/agents",
        params={"skill": "bulk.work", "pageSize": "100", "pageToken": first["nextPageToken"]},
    )
    second = r.json()
    assert [a["agentId"] for a in second["agents"]] == [f"bulk-{i:03d}" for i in range(100, BULK)]
    assert second["nextPageToken"] == ""
    # No page_size: the default page of 50.
    r = await catalog.http.get("/a2a/agents", params={"skill": "bulk.work"})
    assert len(r.json()["agents"]) == 50


async def test_one_past_the_max_page_size_is_a_400(catalog: Catalog) -> None:
    r = await catalog.http.get("/a2a/agents", params={"page_size": MAX_PAGE_SIZE + 1})
    assert r.status_code == 400
    assert r.json()["code"] == 3
    [violation] = status_of(r.json())["BadRequest"]["fieldViolations"]
    assert violation["field"] == "page_size"
    assert str(MAX_PAGE_SIZE) in violation["description"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": "-1"}, "page_size"),
        ({"page_size": "many"}, "page_size"),
        ({"page_token": "not-a-token"}, "page_token"),
        ({"skills": "math.add"}, "skills"),  # a misspelt filter is refused, not ignored
        ({"skill": ["a", "b"]}, "skill"),
    ],
)
async def test_bad_parameters_are_400s(
    catalog: Catalog, params: dict[str, Any], field: str
) -> None:
    r = await catalog.http.get("/a2a/agents", params=params)
    assert r.status_code == 400, r.text
    fields = [v["field"] for v in status_of(r.json())["BadRequest"]["fieldViolations"]]
    assert fields == [field]


async def test_a_page_token_only_goes_with_its_filters(catalog: Catalog) -> None:
    r = await catalog.http.get("/a2a/agents", params={"skill": "bulk.work", "page_size": 10})
    token = r.json()["nextPageToken"]
    r = await catalog.http.get(
        "/a2a/agents", params={"skill": "math.add", "page_size": 10, "page_token": token}
    )
    assert r.status_code == 400
    [violation] = status_of(r.json())["BadRequest"]["fieldViolations"]
    assert violation["field"] == "page_token"
    assert "other filters" in violation["description"]


# -- one agent's card


async def test_one_card_by_well_known_path_and_by_agent_url(catalog: Catalog) -> None:
    r = await catalog.http.get(f"/a2a/agents/bravo{CARD}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["access-control-allow-origin"] == "*"
    card = r.json()
    assert card["name"] == "Bravo"
    assert [s["id"] for s in card["skills"]] == ["math.add"]
    # The mesh checks tokens, so the card declares the bearer scheme A2A calls need.
    assert "bearer" in card["securitySchemes"]
    r = await catalog.http.get("/a2a/agents/bravo")
    assert r.status_code == 200
    assert r.json() == card


@pytest.mark.parametrize("agent_id", ["nobody", "delta", "echo"])
async def test_unknown_and_not_live_agents_are_404(catalog: Catalog, agent_id: str) -> None:
    for path in (f"/a2a/agents/{agent_id}{CARD}", f"/a2a/agents/{agent_id}"):
        r = await catalog.http.get(path)
        assert r.status_code == 404, r.text
        assert r.json()["code"] == 5
        info = status_of(r.json())["ErrorInfo"]
        assert info["reason"] == "A2A_AGENT_NOT_LISTED"
        assert info["metadata"] == {"agent_id": agent_id}


async def test_card_url_is_the_agents_own_a2a_url_or_the_mesh(catalog: Catalog) -> None:
    own = (await catalog.http.get(f"/a2a/agents/alpha{CARD}")).json()
    assert interface_url(own) == OWN_A2A_URL
    mesh = f"{catalog.base}/a2a/mesh"
    for agent_id in ("bravo", "golf"):  # golf's a2a_url is not an http(s) URL
        card = (await catalog.http.get(f"/a2a/agents/{agent_id}{CARD}")).json()
        assert interface_url(card) == mesh, agent_id


async def test_a2a_sdk_resolves_and_parses_the_card(catalog: Catalog) -> None:
    # The base URL an A2A client is given; the resolver appends the well-known path.
    resolver = A2ACardResolver(catalog.http, f"{catalog.base}/a2a/agents/charlie")
    card = await resolver.get_agent_card()
    assert card.name == "Charlie"
    assert [s.id for s in card.skills] == ["lang.translate"]
    assert card.skills[0].description == "Turns French into English"
    assert card.supported_interfaces[0].url == f"{catalog.base}/a2a/mesh"
    assert "bearer" in card.security_schemes
    # Every card the list hands out parses too.
    r = await catalog.http.get("/a2a/agents", params={"tag": "blue"})
    parsed = [parse_agent_card(a["card"]) for a in r.json()["agents"]]
    assert [c.name for c in parsed] == ["Alpha Writer", "Bravo"]


# -- /.well-known/api-catalog


async def test_api_catalog_is_an_rfc9727_linkset(catalog: Catalog) -> None:
    r = await catalog.http.get("/.well-known/api-catalog")  # no Authorization
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == API_CATALOG_TYPE
    assert API_CATALOG_TYPE.startswith("application/linkset+json; profile=")
    body = r.json()
    assert list(body) == ["linkset"]
    [context] = body["linkset"]
    anchor = f"{catalog.base}/.well-known/api-catalog"
    assert context["anchor"] == anchor
    assert list(context) == ["anchor", "item"]
    items = context["item"]
    assert all(i["type"] == "application/json" and i["title"] for i in items)
    hrefs = [i["href"] for i in items]
    assert hrefs[0] == f"{catalog.base}/a2a/mesh{CARD}"  # the mesh, routing by skill
    agents = [f"{catalog.base}/a2a/agents/{a}{CARD}" for a in ("alpha", "bravo", "charlie")]
    assert set(agents) <= set(hrefs)
    assert len(hrefs) == 1 + 5 + BULK  # the mesh and every live agent, nothing else
    assert not any("/delta/" in h or "/echo/" in h for h in hrefs)
    titles = {i["href"]: i["title"] for i in items}
    assert titles[agents[0]] == "Alpha Writer"
    assert r.headers["link"] == f'<{anchor}>; rel="api-catalog"; type="application/linkset+json"'
    # Each item is a card one GET away, the mesh's too (served beside the catalog).
    r = await catalog.http.get(agents[1])
    assert parse_agent_card(r.json()).name == "Bravo"
    r = await catalog.http.get(hrefs[0])
    assert r.status_code == 200, r.text
    mesh = parse_agent_card(r.json())
    assert mesh.supported_interfaces[0].url == f"{catalog.base}/a2a/mesh"
    assert {"math.add", "lang.translate", "bulk.work"} <= {s.id for s in mesh.skills}


async def test_api_catalog_head_has_the_link_header(catalog: Catalog) -> None:
    r = await catalog.http.head("/.well-known/api-catalog")
    assert r.status_code == 200
    assert r.content == b""
    anchor = f"{catalog.base}/.well-known/api-catalog"
    assert r.headers["link"] == f'<{anchor}>; rel="api-catalog"; type="application/linkset+json"'
    assert r.headers["content-type"] == API_CATALOG_TYPE


async def test_other_methods_get_a_status_405(catalog: Catalog) -> None:
    for path in ("/.well-known/api-catalog", "/a2a/agents", f"/a2a/agents/alpha{CARD}"):
        r = await catalog.http.post(path, json={}, headers=ADMIN)
        assert r.status_code == 405, path
        assert r.headers["allow"] == "GET, HEAD"
        assert status_of(r.json())["ErrorInfo"]["reason"] == "METHOD_NOT_ALLOWED"


# -- base URL


async def test_urls_follow_the_host_header_not_untrusted_forwarded_ones(catalog: Catalog) -> None:
    headers = {"host": "mesh.example:8443", "x-forwarded-host": "evil.example"}
    r = await catalog.http.get("/.well-known/api-catalog", headers=headers)
    [context] = r.json()["linkset"]
    assert context["anchor"] == "http://mesh.example:8443/.well-known/api-catalog"
    assert all(i["href"].startswith("http://mesh.example:8443/") for i in context["item"])
    r = await catalog.http.get(f"/a2a/agents/bravo{CARD}", headers=headers)
    assert interface_url(r.json()) == "http://mesh.example:8443/a2a/mesh"
    r = await catalog.http.get("/a2a/agents", headers={"host": "bad host/../x"})
    assert r.status_code == 400
    assert status_of(r.json())["BadRequest"]["fieldViolations"][0]["field"] == "Host"


async def test_forwarded_headers_count_only_behind_a_trusted_proxy() -> None:
    c = await _start({"MESHWRIGHT_A2A_CATALOG_TRUST_PROXY": "1"})
    try:
        await register(
            c.http, "alpha", {"name": "Alpha", "version": "1.0.0", "skills": [{"id": "a.b"}]}
        )
        headers = {"x-forwarded-host": "mesh.example.com, inner:8080", "x-forwarded-proto": "https"}
        r = await c.http.get(f"/a2a/agents/alpha{CARD}", headers=headers)
        assert interface_url(r.json()) == "https://mesh.example.com/a2a/mesh"
        assert r.headers["vary"] == "X-Forwarded-Host, X-Forwarded-Proto"
        r = await c.http.get("/.well-known/api-catalog", headers=headers)
        anchor = r.json()["linkset"][0]["anchor"]
        assert anchor == "https://mesh.example.com/.well-known/api-catalog"
        r = await c.http.get(f"/a2a/agents/alpha{CARD}")  # no proxy headers: the Host
        assert interface_url(r.json()) == f"{c.base}/a2a/mesh"
    finally:
        await c.http.aclose()
        await c.node.stop()


async def test_a_gateway_alone_whose_registry_is_down_answers_503() -> None:
    # The gateway alone in front of a registry nobody serves: the catalog's read fails.
    c = await _start({}, services=(), registry_target=f"127.0.0.1:{free_port()}")
    try:
        for path in ("/a2a/agents", f"/a2a/agents/alpha{CARD}", "/.well-known/api-catalog"):
            r = await c.http.get(path)
            assert r.status_code == 503, (path, r.text)
            assert r.json()["code"] == 14
            assert r.headers["cache-control"] == "no-store"
    finally:
        await c.http.aclose()
        await c.node.stop()


async def test_settings_from_the_environment() -> None:
    assert CatalogSettings.from_env({}) == CatalogSettings()
    s = CatalogSettings.from_env(
        {
            "MESHWRIGHT_A2A_CATALOG_AUTH": "yes",
            "MESHWRIGHT_A2A_CATALOG_CACHE_S": "0.5",
            "MESHWRIGHT_A2A_CATALOG_PUBLIC_URL": "https://mesh.example.com/",
            "MESHWRIGHT_A2A_CATALOG_TRUST_PROXY": "1",
        }
    )
    assert (s.auth, s.cache_s, s.public_url, s.trust_proxy) == (
        True,
        0.5,
        "https://mesh.example.com",
        True,
    )
    for name, value in (
        ("AUTH", "maybe"),
        ("CACHE_S", "soon"),
        ("CACHE_S", "-1"),
        ("PUBLIC_URL", "mesh.example.com"),
    ):
        with pytest.raises(ValueError, match="A2A"):
            CatalogSettings.from_env({f"MESHWRIGHT_A2A_CATALOG_{name}": value})


# -- the cache


async def test_one_registry_read_serves_a_burst_of_anonymous_requests(catalog: Catalog) -> None:
    cache_s = CatalogSettings().cache_s
    before = catalog.list_agent_reads()

    async def fresh_snapshot() -> bool:
        r = await catalog.http.get("/a2a/agents", params={"q": "zulu"})
        return r.status_code == 200 and catalog.list_agent_reads() > before

    # Until a request made the catalog read the registry: its snapshot is new now.
    await eventually(fresh_snapshot, timeout=cache_s + 5)
    primed = time.monotonic()
    reads = catalog.list_agent_reads()
    await register(  # "zulu": a word no other card contains
        catalog.http,
        "zulu",
        {"name": "Zulu", "version": "1.0.0", "skills": [{"id": "zulu.join"}]},
    )
    replies = await asyncio.gather(
        *(catalog.http.get("/a2a/agents", params={"q": "zulu"}) for _ in range(30)),
        *(catalog.http.get(f"/a2a/agents/zulu{CARD}") for _ in range(10)),
        *(catalog.http.get("/.well-known/api-catalog") for _ in range(10)),
    )
    elapsed = time.monotonic() - primed
    assert all(r.status_code in (200, 404) for r in replies)
    # 50 requests; the registry saw at most one listing per cache period.
    assert catalog.list_agent_reads() - reads <= 1 + int(elapsed / cache_s)
    if elapsed < cache_s:
        # All answered from the snapshot taken before "zulu" registered.
        assert all(r.json()["agents"] == [] for r in replies[:30])
        assert all(r.status_code == 404 for r in replies[30:40])

    async def shows_zulu() -> bool:
        r = await catalog.http.get(f"/a2a/agents/zulu{CARD}")
        return r.status_code == 200

    await eventually(shows_zulu, timeout=cache_s + 5)
    assert await listed(catalog, q="zulu") == ["zulu"]


# -- protected mode (MESHWRIGHT_A2A_CATALOG_AUTH=1)

PROTECTED_PATHS = (
    "/a2a/agents",
    f"/a2a/agents/alpha{CARD}",
    "/a2a/agents/alpha",
    "/.well-known/api-catalog",
)


@pytest.mark.parametrize("path", PROTECTED_PATHS)
async def test_protected_mode_needs_a_token_on_every_route(protected: Catalog, path: str) -> None:
    for method in ("GET", "HEAD"):
        r = await protected.http.request(method, path)
        assert r.status_code == 401, (method, path)
        assert r.headers["cache-control"] == "no-store"
        if method == "GET":
            assert r.json()["code"] == 16
            assert status_of(r.json())["ErrorInfo"]["reason"] == "TOKEN_MISSING"
    r = await protected.http.get(path, headers={"authorization": "Bearer not-a-jwt"})
    assert r.status_code == 401
    # A bad query still answers 401 first: a caller without a token learns nothing.
    r = await protected.http.get(path, params={"page_size": "9999"})
    assert r.status_code == 401
    for role, subject in (("client", "carol"), ("agent", "alpha")):
        r = await protected.http.get(path, headers=bearer(role, subject))
        assert r.status_code == 200, (role, r.text)
        assert r.headers["cache-control"] == "no-store"  # what a token unlocked: no caching
        assert "access-control-allow-origin" not in r.headers


async def test_protected_mode_serves_the_same_catalog(protected: Catalog) -> None:
    carol = bearer("client", "carol")
    r = await protected.http.get("/a2a/agents", headers=carol)
    assert [a["agentId"] for a in r.json()["agents"]] == ["alpha"]
    r = await protected.http.get("/.well-known/api-catalog", headers=carol)
    hrefs = [i["href"] for i in r.json()["linkset"][0]["item"]]
    assert hrefs == [f"{protected.base}/a2a/mesh{CARD}", f"{protected.base}/a2a/agents/alpha{CARD}"]
    resolver = A2ACardResolver(protected.http, f"{protected.base}/a2a/agents/alpha")
    card = await resolver.get_agent_card(http_kwargs={"headers": carol})
    assert card.name == "Alpha"
