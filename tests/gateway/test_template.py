"""Path templates (google/api/http.proto) and route precedence."""

from __future__ import annotations

import pytest

from meshwright.gateway import (
    MethodNotAllowed,
    PathTemplate,
    RouteNotFound,
    RouteTable,
    TemplateError,
)


def test_parses_literals_variables_and_verb() -> None:
    t = PathTemplate.parse("/v1/workflows/{workflow_id}:cancel")
    assert t.segments == ("v1", "workflows", "*")
    assert t.verb == "cancel"
    assert [v.name for v in t.variables] == ["workflow_id"]
    assert t.match("/v1/workflows/wf-1:cancel") == {"workflow_id": "wf-1"}
    assert t.match("/v1/workflows/wf-1") is None
    assert t.match("/v1/workflows/wf-1:watch") is None
    assert t.match("/v1/workflows/:cancel") is None  # a variable never binds ""


def test_literal_verb_template() -> None:
    t = PathTemplate.parse("/v1/agents:watch")
    assert t.match("/v1/agents:watch") == {}
    assert t.match("/v1/agents") is None


def test_nested_field_paths() -> None:
    t = PathTemplate.parse("/v1/{task.status.message}/x/{task.task_id}")
    assert [v.field_path for v in t.variables] == [
        ("task", "status", "message"),
        ("task", "task_id"),
    ]
    assert t.match("/v1/hello/x/t1") == {"task.status.message": "hello", "task.task_id": "t1"}


def test_multi_segment_variables_and_double_star() -> None:
    t = PathTemplate.parse("/v1/{name=shelves/*/books/*}")
    assert t.match("/v1/shelves/s1/books/b%2F2") == {"name": "shelves/s1/books/b%2F2"}
    assert t.match("/v1/shelves/s1/covers/b2") is None

    deep = PathTemplate.parse("/v1/files/{path=**}:download")
    assert deep.match("/v1/files/a/b/c.txt:download") == {"path": "a/b/c.txt"}
    assert deep.match("/v1/files/a%20b:download") == {"path": "a b"}
    assert deep.match("/v1/files:download") == {"path": ""}  # ** matches zero segments
    assert deep.match("/v1/files/a") is None

    bare = PathTemplate.parse("/static/**")
    assert bare.match("/static/css/site.css") == {}
    assert bare.match("/static") == {}


def test_single_segment_variables_are_fully_decoded() -> None:
    t = PathTemplate.parse("/v1/agents/{agent_id}")
    assert t.match("/v1/agents/a%2Fb%20c") == {"agent_id": "a/b c"}
    assert t.match("/v1/agents/a/b") is None


@pytest.mark.parametrize(
    "text",
    [
        "v1/no-slash",
        "/v1/{unclosed",
        "/v1/{bad-name}",
        "/v1/{a}/{a}",
        "/v1/**/tail",
        "/v1/a:",
        "/v1/a:b/c",
        "/v1//x",
        "/v1/{x=}",
    ],
)
def test_rejects_bad_templates(text: str) -> None:
    with pytest.raises(TemplateError):
        PathTemplate.parse(text)


def table() -> RouteTable[str]:
    t: RouteTable[str] = RouteTable()
    t.add("GET", "/v1/agents/{agent_id}", "GetAgent")
    t.add("DELETE", "/v1/agents/{agent_id}", "DeregisterAgent")
    t.add("GET", "/v1/agents", "ListAgents")
    t.add("POST", "/v1/agents", "RegisterAgent")
    t.add("POST", "/v1/agents/{agent_id}:heartbeat", "Heartbeat")
    t.add("GET", "/v1/agents:watch", "WatchAgents")
    t.add("GET", "/v1/{name=**}", "Catchall")
    t.add("GET", "/v1/agents/special", "Special")
    return t


@pytest.mark.parametrize(
    ("method", "path", "target", "variables"),
    [
        ("GET", "/v1/agents:watch", "WatchAgents", {}),
        ("GET", "/v1/agents", "ListAgents", {}),
        ("POST", "/v1/agents", "RegisterAgent", {}),
        ("GET", "/v1/agents/a1", "GetAgent", {"agent_id": "a1"}),
        ("DELETE", "/v1/agents/a1", "DeregisterAgent", {"agent_id": "a1"}),
        ("POST", "/v1/agents/a1:heartbeat", "Heartbeat", {"agent_id": "a1"}),
        ("GET", "/v1/agents/special", "Special", {}),  # literal beats variable
        ("GET", "/v1/other/thing", "Catchall", {"name": "other/thing"}),
        ("GET", "/v1/agents/a1/b", "Catchall", {"name": "agents/a1/b"}),
    ],
)
def test_route_precedence(method: str, path: str, target: str, variables: dict[str, str]) -> None:
    found = table().match(method, path)
    assert (found.route.target, found.variables) == (target, variables)


def test_registration_order_does_not_matter() -> None:
    t: RouteTable[str] = RouteTable()
    t.add("GET", "/v1/{name=**}", "Catchall")
    t.add("GET", "/v1/agents/{agent_id}", "GetAgent")
    t.add("GET", "/v1/agents/special", "Special")
    assert t.match("GET", "/v1/agents/special").route.target == "Special"
    assert t.match("GET", "/v1/agents/x").route.target == "GetAgent"


def test_verb_paths_never_fall_into_variables() -> None:
    t: RouteTable[str] = RouteTable()
    t.add("GET", "/v1/workflows/{workflow_id}", "GetWorkflow")
    t.add("POST", "/v1/workflows/{workflow_id}:cancel", "CancelWorkflow")
    with pytest.raises(MethodNotAllowed) as err:
        t.match("GET", "/v1/workflows/wf-1:cancel")
    assert err.value.allowed == ("POST",)
    # An id with a colon but no declared verb is still an id.
    assert t.match("GET", "/v1/workflows/a:b").variables == {"workflow_id": "a:b"}


def test_not_found_and_method_not_allowed() -> None:
    t = table()
    with pytest.raises(RouteNotFound):
        t.match("GET", "/v2/agents")
    with pytest.raises(MethodNotAllowed) as err:
        t.match("PUT", "/v1/agents/a1")
    assert err.value.allowed == ("DELETE", "GET")
    with pytest.raises(MethodNotAllowed):
        t.match("DELETE", "/v1/agents:watch")


def test_duplicate_routes_are_rejected() -> None:
    t: RouteTable[str] = RouteTable()
    t.add("GET", "/v1/agents/{agent_id}", "a")
    with pytest.raises(ValueError, match="clashes"):
        t.add("GET", "/v1/agents/{name}", "b")
    t.add("POST", "/v1/agents/{name}", "c")  # another method is fine
