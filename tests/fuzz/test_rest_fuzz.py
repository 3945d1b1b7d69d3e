"""Random input against every REST route of a running `meshwright up`: never a 500.

Bodies mix the request message's real JSON field names with values of every
JSON type; path variables and query values are arbitrary text. Each answer
must be a success or a 4xx carrying a google.rpc.Status body. Bounded: a fixed
number of examples per route, against 127.0.0.1 only.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
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


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshwright", "up", "--grpc-port", "0", "--http-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
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
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


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


@pytest.mark.parametrize("binding", BINDINGS, ids=lambda b: f"{b.http_method} {b.template.text}")
def test_no_route_answers_500(http: httpx.Client, binding: Any) -> None:
    variables = re.findall(r"\{([^}=]+)", binding.template.text)

    @settings(
        max_examples=int(os.environ.get("MESHWRIGHT_FUZZ_EXAMPLES", "30")),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(
        path_values=st.lists(
            st.text(min_size=1, max_size=12), min_size=len(variables), max_size=len(variables)
        ),
        body=bodies(binding),
        query=st.dictionaries(names_of(binding), st.text(max_size=10), max_size=3),
    )
    def check(path_values: list[str], body: Any, query: dict[str, str]) -> None:
        path = binding.template.text
        for name, value in zip(variables, path_values, strict=True):
            path = re.sub(r"\{" + re.escape(name) + r"(=[^}]*)?\}", quote(value, safe=""), path)
        if binding.http_method in ("GET", "DELETE"):
            r = http.request(binding.http_method, path, params=query)
        else:
            r = http.request(binding.http_method, path, json=body)
        assert r.status_code < 500 or r.status_code in (503, 504), (path, body, r.text)
        if r.status_code >= 400:
            status = r.json()
            assert isinstance(status.get("code"), int) and status["code"] > 0, r.text
            assert "message" in status, r.text

    check()
