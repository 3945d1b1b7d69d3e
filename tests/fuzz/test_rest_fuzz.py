"""Random input against every REST route of a running `meshwright up`: never a 500.

Bodies mix the request message's real JSON field names with values of every
JSON type; path variables and query values are arbitrary text; headers,
content types, credentials and whole paths are random too. Each answer must
be a success or a 4xx carrying a google.rpc.Status body, with
``Cache-Control: no-store``; no request without a token changes anything.
Bounded: ``MESHWRIGHT_FUZZ_EXAMPLES`` examples per route (default 30), against
127.0.0.1 only. Auth is on, as by default: the mesh keeps its development keys
in a temporary config directory and the fuzz calls with the admin token
``meshwright up`` leaves there (so requests get past authentication).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from google.protobuf import descriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshwright.agent.v1 import agent_pb2
from meshwright.economy.v1 import economy_pb2
from meshwright.gateway.binding import bindings_of
from meshwright.mesh.security import DevCredentials
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.v1 import workflow_pb2

SERVICES = [
    agent_pb2.DESCRIPTOR.services_by_name["AgentService"],
    registry_pb2.DESCRIPTOR.services_by_name["RegistryService"],
    economy_pb2.DESCRIPTOR.services_by_name["EconomyService"],
    workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"],
]
# Streams never end by themselves; their errors are covered in tests/gateway.
BINDINGS = [b for s in SERVICES for b in bindings_of(s) if not b.server_streaming]


@dataclass(frozen=True)
class Mesh:
    url: str
    admin_token: str
    client_token: str


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    config_dir = tmp_path_factory.mktemp("meshwright-config")
    # Made beforehand and named explicitly too, so the mesh and the fuzz agree on
    # the keys whichever way `up` looks for them; `up` reuses fresh tokens it finds.
    creds = DevCredentials.ensure(config_dir)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MESHWRIGHT_INSECURE_NO_AUTH", "MESHWRIGHT_TOKEN")
    }
    env.update(
        COLUMNS="200",
        MESHWRIGHT_CONFIG_DIR=str(config_dir),
        MESHWRIGHT_AUTH_PUBLIC_KEY=str(creds.public_key),
        MESHWRIGHT_AUTH_PRIVATE_KEY=str(creds.private_key),
        # The fuzz is a flood by design; 429s would hide the routes behind them.
        MESHWRIGHT_RATE_LIMIT_RPS="0",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshwright", "up", "--grpc-port", "0", "--http-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    url = None
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        found = re.search(r"REST\s+(http://127\.0\.0\.1:\d+)", line)
        if found:
            url = found.group(1)
        if "ready" in line or not line:
            break
    try:
        assert url, "".join(lines)
        yield Mesh(
            url,
            (config_dir / "admin.token").read_text().strip(),
            (config_dir / "client.token").read_text().strip(),
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


@pytest.fixture(scope="module")
def http(mesh: Mesh) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {mesh.admin_token}"}
    with httpx.Client(base_url=mesh.url, timeout=30, headers=headers) as client:
        yield client


@pytest.fixture(scope="module")
def anonymous(mesh: Mesh) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mesh.url, timeout=30) as client:
        yield client


EXAMPLES = int(os.environ.get("MESHWRIGHT_FUZZ_EXAMPLES", "30"))

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def field_names(message: descriptor.Descriptor) -> list[str]:
    return [f.json_name for f in message.fields] + [f.name for f in message.fields]


def names_of(binding: Any) -> st.SearchStrategy[str]:
    names = field_names(binding.request_type.DESCRIPTOR)
    return st.sampled_from(names) if names else st.text(min_size=1, max_size=8)


def bodies(binding: Any) -> st.SearchStrategy[Any]:
    known = st.dictionaries(names_of(binding), json_values, max_size=5)
    return known | json_values


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

# Header values as HTTP allows them on the wire: visible ASCII, space and obs-text.
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
).map(lambda v: v.strip().encode("latin-1"))
CONTENT_TYPES = (
    "application/json",
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON;charset=UTF-8",
    "application/json; charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=zz",
    "application/json, text/plain",
    "*/*",
    "",
)
content_types = st.none() | st.sampled_from(CONTENT_TYPES).map(str.encode) | header_values
# Headers the transport itself owns (framing, host) are left to httpx.
_OWN = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect", "te"}
header_names = st.sampled_from(
    [
        "accept",
        "origin",
        "last-event-id",
        "x-request-id",
        "traceparent",
        "tracestate",
        "baggage",
        "grpc-metadata-tenant",
        "grpc-metadata-grpc-timeout",
        "grpc-metadata-x-bin",
        "grpc-metadata-",
        "grpc-timeout",
        "content-encoding",
        "access-control-request-method",
        "x-forwarded-for",
        "cookie",
        "range",
    ]
) | st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True).filter(
    lambda n: n not in _OWN and n not in ("authorization", "content-type")
)
extra_headers = st.lists(st.tuples(header_names, header_values), max_size=4)
WORDS = ["v1", "agents", "accounts", "workflows", "templates", "escrows", "proposals", "agent"]
WORDS += ["tasks", "card", "routes", "healthz", "..", ".", "%2F", "%0A", "%00", "%ff", "*", ""]
paths = (
    st.lists(
        st.sampled_from(WORDS) | st.text(max_size=10).map(lambda t: quote(t, safe="")), max_size=6
    )
    .map(lambda segs: "/" + "/".join(segs))
    .flatmap(
        lambda p: st.sampled_from(["", ":cancel", ":watch", ":execute", ":", "%3Acancel"]).map(
            lambda v: p + v
        )
    )
)
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE", "PROPFIND"]


def credentials(mesh: Mesh) -> st.SearchStrategy[tuple[str, bytes | None]]:
    """Who calls: (kind, Authorization value); kinds other than admin/client are refused."""
    admin, client = mesh.admin_token, mesh.client_token
    return st.sampled_from(
        [
            ("admin", f"Bearer {admin}".encode()),
            ("admin", f"Bearer {admin}".encode()),
            ("client", f"Bearer {client}".encode()),
            ("none", None),
            ("bad", b"Bearer x"),
            ("bad", b"Basic Zm9vOmJhcg=="),
            ("bad", f"Bearer {admin[:-4]}AAAA".encode()),  # wrong signature
            ("bad", f"Bearer {admin}.{admin}".encode()),
            ("bad", b"Bearer"),
        ]
    ) | header_values.map(lambda v: ("bad", v))


def assert_status_body(r: httpx.Response, context: Any) -> None:
    """Never a 500; every error a google.rpc.Status; nothing cacheable."""
    assert r.status_code < 500 or r.status_code in (503, 504), (context, r.text)
    if r.request.method == "OPTIONS" and "access-control-request-method" in r.request.headers:
        return  # a CORS preflight; off here, so the dispatcher answers it (405) anyway
    assert r.headers.get("cache-control") == "no-store", (context, r.headers)
    if r.status_code >= 400 and r.request.method != "HEAD":
        status = r.json()
        assert isinstance(status.get("code"), int) and status["code"] > 0, (context, r.text)
        assert "message" in status, r.text


@pytest.mark.parametrize("binding", BINDINGS, ids=lambda b: f"{b.http_method} {b.template.text}")
def test_no_route_answers_500(mesh: Mesh, anonymous: httpx.Client, binding: Any) -> None:
    variables = re.findall(r"\{([^}=]+)", binding.template.text)

    @FUZZ
    @given(
        path_values=st.lists(
            st.text(min_size=1, max_size=12), min_size=len(variables), max_size=len(variables)
        ),
        body=bodies(binding),
        query=st.lists(
            st.tuples(names_of(binding) | st.text(max_size=8), st.text(max_size=10)), max_size=3
        ),
        who=credentials(mesh),
        content_type=content_types,
        headers=extra_headers,
    )
    def check(
        path_values: list[str],
        body: Any,
        query: list[tuple[str, str]],
        who: tuple[str, bytes | None],
        content_type: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> None:
        path = binding.template.text
        for name, value in zip(variables, path_values, strict=True):
            path = re.sub(r"\{" + re.escape(name) + r"(=[^}]*)?\}", quote(value, safe=""), path)
        sent: list[tuple[str, bytes]] = list(headers)
        kind, authorization = who
        if authorization is not None:
            sent.append(("authorization", authorization))
        content = b""
        if binding.http_method not in ("GET", "DELETE"):
            content = json.dumps(body).encode()
            if content_type is not None:
                sent.append(("content-type", content_type))
        r = anonymous.request(
            binding.http_method, path, params=query, content=content or None, headers=sent
        )
        context = (binding.http_method, path, query, kind, content_type, headers, body)
        assert_status_body(r, context)
        if kind in ("none", "bad"):
            assert r.status_code >= 400, context  # no identity, no effect

    check()
    assert anonymous.get("/healthz").status_code == 200


def test_random_paths_and_methods_never_answer_500(mesh: Mesh, http: httpx.Client) -> None:
    @FUZZ
    @given(
        method=st.sampled_from(METHODS),
        path=paths,
        query=st.text(max_size=20),
        content_type=content_types,
        headers=extra_headers,
        body=st.binary(max_size=64),
    )
    def check(
        method: str,
        path: str,
        query: str,
        content_type: bytes | None,
        headers: list[tuple[str, bytes]],
        body: bytes,
    ) -> None:
        sent = list(headers) + ([("content-type", content_type)] if content_type else [])
        # A leading "//" would make httpx read the rest as a host, not a path.
        url = "/" + path.lstrip("/") + ("?" + quote(query, safe="=&") if query else "")
        r = http.request(method, url, content=body or None, headers=sent)
        assert_status_body(r, (method, url, content_type, headers, body))

    check()
    assert http.get("/healthz").status_code == 200


def snapshot(http: httpx.Client) -> tuple[Any, ...]:
    workflows = http.get("/v1/workflows", params={"pageSize": "1000"}).json()["workflows"]
    agents = http.get("/v1/agents", params={"pageSize": "1000"}).json()["agents"]
    account = http.get("/v1/accounts/fz-rest").json()["account"]
    return (
        len(workflows),
        sorted(a["agentId"] for a in agents),
        (account["balance"], account["staked"], account["escrowed"]),
    )


MUTATIONS = [b for b in BINDINGS if b.http_method != "GET"]


def test_requests_without_a_valid_token_change_nothing(
    mesh: Mesh, http: httpx.Client, anonymous: httpx.Client
) -> None:
    r = http.post("/v1/accounts", json={"accountId": "fz-rest", "initialBalance": "500"})
    assert r.status_code in (200, 409), r.text
    before = snapshot(http)

    @FUZZ
    @given(
        binding=st.sampled_from(MUTATIONS),
        body=st.sampled_from(MUTATIONS).flatmap(bodies),
        who=credentials(mesh).filter(lambda w: w[0] in ("none", "bad")),
        content_type=content_types,
    )
    def check(
        binding: Any, body: Any, who: tuple[str, bytes | None], content_type: bytes | None
    ) -> None:
        path = re.sub(r"\{[^}]*\}", "fz-rest", binding.template.text)
        sent = [("content-type", content_type)] if content_type is not None else []
        if who[1] is not None:
            sent.append(("authorization", who[1]))
        r = anonymous.request(
            binding.http_method, path, content=json.dumps(body).encode(), headers=sent
        )
        assert_status_body(r, (binding.http_method, path, who, content_type, body))
        assert r.status_code in (400, 401, 404, 413, 415), (path, who, r.text)

    check()
    assert snapshot(http) == before
