"""The economy over REST: the real EconomyService behind the gateway, one test per route
family the ledger added (accounts listing and minting, escrows, rewards, proposals,
parameters, the audit)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest_asyncio

from meshwright.economy import ECONOMY_SERVICE, Economy, EconomyServicer, MemoryLedgerStore
from meshwright.gateway import create_app, start_gateway
from meshwright.mesh import MeshServer, RemoteServiceClient
from meshwright.mesh.security import insecure_pipeline
from tests.gateway.support import status_of


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    server = MeshServer(pipeline=insecure_pipeline(), port=0)
    server.add(EconomyServicer(Economy(MemoryLedgerStore())), ECONOMY_SERVICE)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    gateway = await start_gateway(create_app([RemoteServiceClient(channel, ECONOMY_SERVICE)]))
    client = httpx.AsyncClient(base_url=gateway.url, timeout=5.0)
    try:
        yield client
    finally:
        await client.aclose()
        await gateway.stop()
        await channel.close()
        await server.stop(0)


async def post(http: httpx.AsyncClient, path: str, body: dict[str, object]) -> dict[str, object]:
    r = await http.post(path, json=body)
    assert r.status_code == 200, r.text
    reply: dict[str, object] = r.json()
    return reply


async def open_accounts(http: httpx.AsyncClient) -> None:
    """alice (CREDIT and staked GOV, owned by client:alice) and bob (nothing)."""
    await post(
        http,
        "/v1/accounts",
        {
            "accountId": "alice",
            "initialBalance": 100,
            "initialGovBalance": 500,
            "owner": "client:alice",
        },
    )
    await post(http, "/v1/accounts", {"accountId": "bob", "owner": "client:bob"})
    await post(http, "/v1/accounts/alice:stake", {"amount": 200})


async def test_list_accounts_with_query_parameters(http: httpx.AsyncClient) -> None:
    await open_accounts(http)
    r = await http.get("/v1/accounts", params={"kind": "ACCOUNT_KIND_USER"})
    assert r.status_code == 200, r.text
    assert [a["accountId"] for a in r.json()["accounts"]] == ["alice", "bob"]
    r = await http.get("/v1/accounts", params={"owner": "client:alice"})
    (alice,) = r.json()["accounts"]
    assert (alice["balance"], alice["govBalance"], alice["staked"]) == ("100", "300", "200")
    assert (alice["kind"], alice["tier"]) == ("ACCOUNT_KIND_USER", "STAKE_TIER_BRONZE")
    # The ledger's own accounts are listed too, with their kinds; pages carry a token.
    r = await http.get("/v1/accounts", params={"pageSize": "2"})
    page = r.json()
    assert len(page["accounts"]) == 2 and page["nextPageToken"]
    r = await http.get("/v1/accounts", params={"kind": "ACCOUNT_KIND_STAKE"})
    assert [a["accountId"] for a in r.json()["accounts"]] == ["stake:alice"]
    r = await http.get("/v1/accounts", params={"kind": "ACCOUNT_KIND_SHINY"})
    assert r.status_code == 400
    assert status_of(r.json())["BadRequest"]["fieldViolations"][0]["field"] == "kind"


async def test_mint_route(http: httpx.AsyncClient) -> None:
    await open_accounts(http)
    reply = await post(http, "/v1/accounts/bob:mint", {"asset": "ASSET_GOV", "amount": "7"})
    account, tx = reply["account"], reply["transaction"]
    assert account["govBalance"] == "7"  # type: ignore[index]
    assert (tx["kind"], tx["fromAccountId"], tx["asset"]) == (  # type: ignore[index]
        "TRANSACTION_KIND_MINT",
        "system:issuance",
        "ASSET_GOV",
    )
    # The rewards pool's id has colons of its own; the verb is the last one.
    reply = await post(http, "/v1/accounts/system:rewards:mint", {"amount": 50})
    assert reply["account"]["balance"] == "50"  # type: ignore[index]
    r = await http.post("/v1/accounts/ghost:mint", json={"amount": 1})
    assert r.status_code == 404


async def test_escrow_routes(http: httpx.AsyncClient) -> None:
    await open_accounts(http)
    opened = await post(
        http,
        "/v1/escrows",
        {"escrowId": "esc-1", "payerAccountId": "alice", "amount": 40, "ttl": "60s"},
    )
    expires = opened["escrow"]["expireTime"]  # type: ignore[index]
    r = await http.get("/v1/escrows/esc-1")
    assert r.status_code == 200, r.text
    escrow = r.json()["escrow"]
    assert (escrow["state"], escrow["owner"], escrow["amount"]) == (
        "ESCROW_STATE_OPEN",
        "client:alice",
        "40",
    )
    renewed = await post(http, "/v1/escrows/esc-1:renew", {"ttl": "3600s"})
    assert renewed["escrow"]["expireTime"] > expires  # type: ignore[index]
    paid = await post(
        http,
        "/v1/escrows/esc-1:capture",
        {"payeeAccountId": "bob", "amount": 10, "taskId": "a"},
    )
    assert paid["transaction"]["taskId"] == "a"  # type: ignore[index]
    r = await http.get(
        "/v1/escrows", params={"owner": "client:alice", "state": "ESCROW_STATE_OPEN"}
    )
    assert [e["escrowId"] for e in r.json()["escrows"]] == ["esc-1"]
    r = await http.get("/v1/escrows", params={"state": "ESCROW_STATE_EXPIRED"})
    assert r.json()["escrows"] == []
    failed = await post(http, "/v1/accounts/bob:reportTaskFailure", {"escrowId": "esc-1"})
    assert failed["account"]["streak"] == 0  # type: ignore[index]
    assert (await http.get("/v1/escrows/esc-ghost")).status_code == 404


async def test_distribute_rewards_route(http: httpx.AsyncClient) -> None:
    await open_accounts(http)
    r = await http.post("/v1/rewards:distribute", json={"amount": 30})
    assert r.status_code == 400  # the pool is empty
    assert status_of(r.json())["ErrorInfo"]["reason"] == "INSUFFICIENT_FUNDS"
    await post(http, "/v1/accounts/system:rewards:mint", {"amount": 30})
    done = await post(http, "/v1/rewards:distribute", {"amount": 30, "memo": "weekly"})
    assert done["recipientCount"] == 1
    tx = done["transaction"]
    assert (tx["kind"], tx["toAccountId"], tx["amount"]) == (  # type: ignore[index]
        "TRANSACTION_KIND_REWARD_DISTRIBUTION",
        "alice",
        "30",
    )


async def test_proposal_listing_and_parameter_routes(http: httpx.AsyncClient) -> None:
    await open_accounts(http)
    r = await http.get("/v1/parameters")
    assert r.status_code == 200, r.text
    params = r.json()["parameters"]
    assert (params["version"], params["transferFeeBps"], params["passThresholdBps"]) == (
        "1",
        0,
        5000,
    )
    assert [t["tier"] for t in params["tiers"]][0] == "STAKE_TIER_BRONZE"
    assert params["escrowTtl"] == "3600s"
    created = await post(
        http,
        "/v1/proposals",
        {"proposerAccountId": "alice", "title": "a fee", "change": {"transferFeeBps": 25}},
    )
    proposal_id = created["proposal"]["proposalId"]  # type: ignore[index]
    await post(
        http,
        f"/v1/proposals/{proposal_id}:vote",
        {"voterAccountId": "alice", "choice": "VOTE_CHOICE_YES"},
    )
    r = await http.get("/v1/proposals", params={"state": "PROPOSAL_STATE_OPEN"})
    (listed,) = r.json()["proposals"]
    assert (listed["proposalId"], listed["change"]) == (proposal_id, {"transferFeeBps": 25})
    closed = await post(http, f"/v1/proposals/{proposal_id}:close", {})
    assert (closed["proposal"]["state"], closed["proposal"]["applied"]) == (  # type: ignore[index]
        "PROPOSAL_STATE_PASSED",
        True,
    )
    r = await http.get("/v1/parameters")
    assert (r.json()["parameters"]["version"], r.json()["parameters"]["transferFeeBps"]) == (
        "2",
        25,
    )
    r = await http.get("/v1/proposals", params={"state": "PROPOSAL_STATE_OPEN"})
    assert r.json()["proposals"] == []


async def test_audit_route(http: httpx.AsyncClient) -> None:
    await open_accounts(http)
    await post(http, "/v1/accounts/alice:transfer", {"toAccountId": "bob", "amount": 25})
    report = await post(http, "/v1/ledger:audit", {})
    assert report["ok"] is True
    assert report["transactionCount"] == "3"  # alice's mint, her stake, the transfer
    supplies = {s["asset"]: (s["issued"], s["held"]) for s in report["supplies"]}  # type: ignore[attr-defined]
    assert supplies == {"ASSET_CREDIT": ("100", "100"), "ASSET_GOV": ("500", "500")}
    assert report["mismatches"] == [] and report["negativeBalances"] == []
    assert (await http.get("/v1/ledger:audit")).status_code == 405
