"""The gateway in front of an auth-on node: tokens reach the RPC, browsers cannot mutate
state with simple requests, rate limits answer 429 with Retry-After (RESOURCE_EXHAUSTED with
RetryInfo over gRPC)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import httpx
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.limits import RateLimit, RateLimiter
from meshwright.mesh.pipeline import Pipeline
from meshwright.mesh.security import Security
from meshwright.node import Node, start_node
from meshwright.workflow.v1 import workflow_pb2
from tests.gateway.support import status_of
from tests.support_auth import test_keys

pytestmark = pytest.mark.asyncio(loop_scope="module")

ORIGINS = "http://a.example, http://b.example:8080"


@dataclass
class Secure:
    node: Node
    http: httpx.AsyncClient


def bearer(role: str, subject: str) -> dict[str, str]:
    return {"authorization": f"Bearer {test_keys().token(role, subject)}"}


async def _start(limiter: RateLimiter | None, *, cors_origins: str = "") -> Secure:
    keys = test_keys()
    security = Security(
        Pipeline(verifier=keys.verifier(), limiter=limiter),
        keys.token("service", "mesh"),
        None,
        keys.issuer(),
    )
    config = MeshConfig(grpc_port=0, http_port=0, grace_s=0, cors_origins=cors_origins)
    node = await start_node(config, security=security)
    assert node.http_url is not None
    return Secure(node, httpx.AsyncClient(base_url=node.http_url, timeout=10))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def secure() -> AsyncIterator[Secure]:
    s = await _start(None, cors_origins=ORIGINS)
    try:
        yield s
    finally:
        await s.http.aclose()
        await s.node.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def throttled() -> AsyncIterator[Secure]:
    s = await _start(RateLimiter(RateLimit(rate_per_s=1, burst=2)))
    try:
        yield s
    finally:
        await s.http.aclose()
        await s.node.stop()


async def balance(s: Secure, account_id: str) -> int:
    r = await s.http.get(f"/v1/accounts/{account_id}", headers=bearer("admin", "root"))
    assert r.status_code == 200, r.text
    return int(r.json()["account"]["balance"])


async def test_the_authorization_header_reaches_the_rpc(secure: Secure) -> None:
    r = await secure.http.get("/v1/workflows")
    assert r.status_code == 401
    assert r.json()["code"] == 16
    assert r.headers["cache-control"] == "no-store"
    r = await secure.http.get("/v1/workflows", headers={"authorization": "Bearer not-a-jwt"})
    assert r.status_code == 401
    r = await secure.http.get("/v1/workflows", headers=bearer("client", "carol"))
    assert r.status_code == 200, r.text
    # The caller's identity, not the gateway's, owns what it creates and is checked.
    r = await secure.http.post(
        "/v1/accounts", json={"accountId": "carol-main"}, headers=bearer("client", "carol")
    )
    assert r.status_code == 200, r.text
    assert r.json()["account"]["owner"] == "client:carol"
    r = await secure.http.get("/v1/accounts/carol-main", headers=bearer("client", "carol"))
    assert r.status_code == 200
    r = await secure.http.get("/v1/accounts/carol-main", headers=bearer("client", "mallory"))
    assert r.status_code == 403
    assert status_of(r.json())["ErrorInfo"]["reason"] == "NOT_OWNER"


async def test_a_text_plain_post_moves_no_money_even_with_a_token(secure: Secure) -> None:
    admin = bearer("admin", "root")
    for account_id, owner in (("dave-main", "client:dave"), ("eve-main", "client:eve")):
        r = await secure.http.post(
            "/v1/accounts",
            json={"accountId": account_id, "owner": owner, "initialBalance": "100"},
            headers=admin,
        )
        assert r.status_code == 200, r.text
    transfer = b'{"toAccountId": "eve-main", "amount": "40"}'
    # What a form or fetch(no-cors) on any page can send (the browser adds no token,
    # but even with one the request is refused before it reaches the RPC).
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {**bearer("client", "dave")}
        if content_type is not None:
            headers["content-type"] = content_type
        r = await secure.http.post(
            "/v1/accounts/dave-main:transfer", content=transfer, headers=headers
        )
        assert r.status_code == 415, r.text
    assert (await balance(secure, "dave-main"), await balance(secure, "eve-main")) == (100, 100)
    r = await secure.http.post(
        "/v1/accounts",
        content=b'{"accountId": "minted", "initialBalance": "1000000000000"}',
        headers={**admin, "content-type": "text/plain"},
    )
    assert r.status_code == 415
    r = await secure.http.get("/v1/accounts/minted", headers=admin)
    assert r.status_code == 404
    # The same transfer as JSON goes through: the refusal was the media type alone.
    r = await secure.http.post(
        "/v1/accounts/dave-main:transfer",
        content=transfer,
        headers={**bearer("client", "dave"), "content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert (await balance(secure, "dave-main"), await balance(secure, "eve-main")) == (60, 140)


async def test_cors_origins_come_from_the_config(secure: Secure) -> None:
    for origin in ("http://a.example", "http://b.example:8080"):
        r = await secure.http.options(
            "/v1/accounts",
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == origin
    r = await secure.http.get("/v1/workflows", headers={"origin": "http://c.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_a_node_without_cors_origins_answers_no_preflight(throttled: Secure) -> None:
    r = await throttled.http.options(
        "/v1/accounts",
        headers={"origin": "http://a.example", "access-control-request-method": "POST"},
    )
    assert r.status_code == 405
    assert "access-control-allow-origin" not in r.headers


async def test_rate_limit_over_rest_is_429_with_retry_after(throttled: Secure) -> None:
    who = bearer("client", "rest-caller")
    started = time.monotonic()
    passed = [(await throttled.http.get("/v1/workflows", headers=who)).status_code for _ in "ab"]
    assert passed == [200, 200]  # burst = 2
    r = await throttled.http.get("/v1/workflows", headers=who)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, "too slow to see the bucket empty at 1 call/s"
    assert r.status_code == 429, r.text
    assert r.headers["retry-after"] == "1"  # under a second, rounded up
    assert r.headers["cache-control"] == "no-store"
    details = status_of(r.json())
    assert details["ErrorInfo"]["reason"] == "RATE_LIMITED"
    assert 0 < float(details["RetryInfo"]["retryDelay"].rstrip("s")) <= 1.0
    # Per principal: another caller still has its whole burst.
    r = await throttled.http.get("/v1/workflows", headers=bearer("client", "someone-else"))
    assert r.status_code == 200


async def test_rate_limit_over_grpc_is_resource_exhausted_with_retry_info(
    throttled: Secure,
) -> None:
    metadata = list(bearer("client", "grpc-caller").items())
    async with grpc.aio.insecure_channel(throttled.node.grpc_address) as channel:
        call = channel.unary_unary(
            "/meshwright.workflow.v1.WorkflowService/ListWorkflows",
            request_serializer=workflow_pb2.ListWorkflowsRequest.SerializeToString,
            response_deserializer=workflow_pb2.ListWorkflowsResponse.FromString,
        )
        for _ in range(2):
            await call(workflow_pb2.ListWorkflowsRequest(), metadata=metadata, timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(workflow_pb2.ListWorkflowsRequest(), metadata=metadata, timeout=5)
    err = caught.value
    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(err)
    assert status is not None
    found: dict[str, object] = {}
    for detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo):
            if detail.Is(kind.DESCRIPTOR):
                msg = kind()
                detail.Unpack(msg)
                found[kind.__name__] = msg
    assert found["ErrorInfo"].reason == "RATE_LIMITED"  # type: ignore[attr-defined]
    delay = found["RetryInfo"].retry_delay.ToNanoseconds() / 1e9  # type: ignore[attr-defined]
    assert 0 < delay <= 1.0


async def test_the_rate_limit_is_shared_by_rest_and_grpc(throttled: Secure) -> None:
    # One principal, one bucket, whichever door it uses.
    who = bearer("client", "both-doors")
    assert (await throttled.http.get("/v1/workflows", headers=who)).status_code == 200
    async with grpc.aio.insecure_channel(throttled.node.grpc_address) as channel:
        call = channel.unary_unary(
            "/meshwright.economy.v1.EconomyService/GetAccount",
            request_serializer=economy_pb2.GetAccountRequest.SerializeToString,
            response_deserializer=economy_pb2.GetAccountResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(
                economy_pb2.GetAccountRequest(account_id="nobody"),
                metadata=list(who.items()),
                timeout=5,
            )
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED  # 2nd call: in budget
    r = await throttled.http.get("/v1/workflows", headers=who)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"
