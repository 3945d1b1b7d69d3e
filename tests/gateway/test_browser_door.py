"""The gateway as a browser-facing door: JSON-only mutations, CORS, no-store, Retry-After."""

from __future__ import annotations

import httpx
import pytest

from meshwright.gateway import create_app, start_gateway
from meshwright.gateway.status import retry_after
from meshwright.mesh import LocalServiceClient
from meshwright.mesh.errors import ResourceExhausted
from meshwright.mesh.security import insecure_pipeline
from tests.gateway.support import AGENT, CORS_ORIGIN, RestAgent, Stack, status_of

pytestmark = pytest.mark.asyncio(loop_scope="package")

EXECUTE = "/v1/agent/tasks:execute"
BODY = b'{"taskId": "door", "skill": "text.echo"}'


def assert_415(r: httpx.Response) -> None:
    assert r.status_code == 415, r.text
    body = r.json()
    assert body["code"] == 3  # INVALID_ARGUMENT
    assert status_of(body)["ErrorInfo"]["reason"] == "UNSUPPORTED_MEDIA_TYPE"
    assert r.headers["cache-control"] == "no-store"


# Each of these is what a page on another origin can send without a preflight
# (or a near miss of application/json); each alone is refused.
REFUSED = [
    "text/plain",
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/jsonx",
    "application/json-patch+json",
    "text/json",
    "text/plain; application/json",
    "application/json; charset=latin-1",
    "application/json; charset=utf-16",
    "",
]


@pytest.mark.parametrize("content_type", REFUSED)
async def test_a_mutation_that_is_not_json_is_415_and_never_reaches_the_rpc(
    stack: Stack, content_type: str
) -> None:
    before = len(stack.agent.executed)
    r = await stack.http.post(EXECUTE, content=BODY, headers={"content-type": content_type})
    assert_415(r)
    assert len(stack.agent.executed) == before


async def test_a_post_without_content_type_is_415_even_when_empty(stack: Stack) -> None:
    # fetch(url, {method: "POST", mode: "no-cors"}) sends exactly this: no preflight.
    before = len(stack.agent.executed)
    r = await stack.http.post(EXECUTE, content=BODY)
    assert "content-type" not in r.request.headers
    assert_415(r)
    r = await stack.http.post("/v1/agent/tasks/t1:cancel")
    assert r.request.headers["content-length"] == "0"
    assert_415(r)
    assert len(stack.agent.executed) == before
    # The same empty body declared as JSON is fine.
    r = await stack.http.post(
        "/v1/agent/tasks/t1:cancel", headers={"content-type": "application/json"}
    )
    assert r.status_code == 200, r.text


async def test_two_content_types_are_415(stack: Stack) -> None:
    r = await stack.http.post(
        EXECUTE,
        content=BODY,
        headers=[("content-type", "application/json"), ("content-type", "text/plain")],
    )
    assert_415(r)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", 'Application/JSON;Charset="UTF-8"'],
)
async def test_json_with_or_without_utf8_charset_is_accepted(
    stack: Stack, content_type: str
) -> None:
    r = await stack.http.post(EXECUTE, content=BODY, headers={"content-type": content_type})
    assert r.status_code == 200, r.text
    assert stack.agent.executed[-1] == "door"


async def test_415_comes_before_the_body_is_read(stack: Stack) -> None:
    big = b"x" * (5 * 1024 * 1024)  # over the 413 limit
    r = await stack.http.post(EXECUTE, content=big, headers={"content-type": "text/plain"})
    assert_415(r)


async def test_reads_need_no_content_type(stack: Stack) -> None:
    r = await stack.http.get("/v1/agent/card", headers={"content-type": "text/plain"})
    assert r.status_code == 200


async def test_unknown_routes_and_methods_keep_their_own_status(stack: Stack) -> None:
    r = await stack.http.post("/v1/nowhere", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 404
    r = await stack.http.put(EXECUTE, content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 405


# -- Cache-Control -------------------------------------------------------------------


async def test_every_answer_is_no_store(stack: Stack) -> None:
    answers = [
        await stack.http.get("/v1/agent/card"),
        await stack.http.post(EXECUTE, json={"taskId": "t", "skill": "text.echo"}),
        await stack.http.post(EXECUTE, json={"taskId": "t", "skill": "missing"}),  # 404
        await stack.http.post(EXECUTE, json={"skill": "x"}),  # 400
        await stack.http.get("/v1/nowhere"),  # route 404
        await stack.http.delete("/v1/agent/card"),  # 405
        await stack.http.post(
            EXECUTE, content=b"x" * (5 * 1024 * 1024), headers={"content-type": "application/json"}
        ),  # 413
        await stack.http.get("/v1/workflows/wf-1:watch"),  # SSE
        await stack.http.get("/v1/workflows/missing:watch"),  # SSE answered as an error
        await stack.http.get("/healthz"),
        await stack.http.get("/v1/routes"),
    ]
    statuses = [r.status_code for r in answers]
    assert statuses == [200, 200, 404, 400, 404, 405, 413, 200, 404, 200, 200]
    assert [r.headers.get_list("cache-control") for r in answers] == [["no-store"]] * len(answers)


# -- Retry-After ---------------------------------------------------------------------


@pytest.mark.parametrize(("after_s", "header"), [(0.0, "1"), (0.2, "1"), (1.0, "1"), (2.1, "3")])
async def test_an_error_with_a_retry_delay_carries_retry_after(
    stack: Stack, after_s: float, header: str
) -> None:
    r = await stack.http.post(
        EXECUTE, json={"taskId": "t", "skill": "throttled", "input": {"after_s": after_s}}
    )
    assert r.status_code == 429
    assert r.headers["retry-after"] == header
    retry = status_of(r.json())["RetryInfo"]
    assert float(retry["retryDelay"].rstrip("s")) == pytest.approx(after_s)


async def test_an_error_without_a_retry_delay_has_no_retry_after(stack: Stack) -> None:
    r = await stack.http.post(EXECUTE, json={"taskId": "t", "skill": "busy"})
    assert r.status_code == 429
    assert "retry-after" not in r.headers
    assert "RetryInfo" not in status_of(r.json())


async def test_retry_after_rounds_up_to_whole_seconds() -> None:
    assert [retry_after(s) for s in (None, 0.0, 0.001, 1.0, 1.001, 59.5)] == [
        None,
        "1",
        "1",
        "1",
        "2",
        "60",
    ]
    assert retry_after(float("inf")) is None and retry_after(float("nan")) is None
    assert ResourceExhausted("x").retry_after_s is None


# -- CORS ----------------------------------------------------------------------------


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": method,
        "access-control-request-headers": "authorization, content-type",
    }


async def test_cors_allowlist(stack: Stack) -> None:
    r = await stack.http.options(EXECUTE, headers=preflight(CORS_ORIGIN))
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == CORS_ORIGIN
    allowed = {h.strip() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "access-control-allow-credentials" not in r.headers
    r = await stack.http.options(EXECUTE, headers=preflight("http://evil.example"))
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers
    r = await stack.http.post(
        EXECUTE,
        json={"taskId": "t", "skill": "throttled", "input": {"after_s": 1}},
        headers={"origin": CORS_ORIGIN},
    )
    assert r.headers["access-control-allow-origin"] == CORS_ORIGIN
    # A page reads Retry-After only if it is exposed (it is not CORS-safelisted).
    assert "retry-after" in r.headers["access-control-expose-headers"].lower()


async def test_cors_is_off_by_default() -> None:
    app = create_app([LocalServiceClient(RestAgent(), AGENT, insecure_pipeline())])
    gateway = await start_gateway(app)
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            r = await http.options(EXECUTE, headers=preflight(CORS_ORIGIN))
            assert r.status_code == 405  # no preflight answer: the browser refuses the call
            assert not any(h.startswith("access-control-") for h in r.headers)
            r = await http.get("/v1/agent/card", headers={"origin": CORS_ORIGIN})
            assert r.status_code == 200
            assert not any(h.startswith("access-control-") for h in r.headers)
    finally:
        await gateway.stop()


@pytest.mark.parametrize(
    ("origins", "credentials", "words"),
    [
        (["*"], True, "credentials"),
        (["http://a.example", "*"], True, "credentials"),
        (["http://a.example/"], False, "scheme://host"),
        (["a.example"], False, "scheme://host"),
        (["http://a.example/app"], False, "scheme://host"),
        (["ftp://a.example"], False, "scheme://host"),
    ],
)
async def test_cors_settings_that_cannot_work_are_refused(
    origins: list[str], credentials: bool, words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        create_app([], cors_origins=origins, cors_allow_credentials=credentials)


async def test_cors_settings_that_work() -> None:
    create_app([], cors_origins=["*"])
    create_app([], cors_origins=["http://a.example:8080", "https://[::1]:3000"])
    create_app([], cors_origins=["https://a.example"], cors_allow_credentials=True)
