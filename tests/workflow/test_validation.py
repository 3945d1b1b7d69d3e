"""Definition and template checks: every problem named by its field path."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from meshwright.mesh.errors import InvalidArgument
from meshwright.workflow._dag import check_definition, find_cycle
from meshwright.workflow.templates import check_template, expand
from meshwright.workflow.v1 import workflow_pb2


def definition(**kw: object) -> workflow_pb2.WorkflowDefinition:
    return json_format.ParseDict(kw, workflow_pb2.WorkflowDefinition())


def fields(violations: list) -> list[str]:  # type: ignore[type-arg]
    return [v.field for v in violations]


def test_valid_diamond_has_no_violations() -> None:
    d = definition(
        tasks=[
            {"id": "a", "skill": "s"},
            {"id": "b", "skill": "s", "dependsOn": ["a"]},
            {"id": "c", "skill": "s", "dependsOn": ["a"]},
            {"id": "d", "skill": "s", "dependsOn": ["b", "c"]},
        ]
    )
    assert check_definition(d) == []
    assert find_cycle(d) is None


def test_every_problem_is_reported_at_once() -> None:
    d = definition(
        budget=-5,
        tasks=[
            {"id": "a", "skill": "s"},
            {"id": "a", "skill": ""},
            {"id": "", "skill": "s"},
            {"id": "bad id!", "skill": "s"},
            {"id": "e", "skill": "s", "dependsOn": ["zzz", "a", "a"]},
            {"id": "f", "skill": "s", "retry": {"maxAttempts": -1}, "timeout": "-1s"},
        ],
    )
    got = fields(check_definition(d))
    assert got == [
        "definition.budget",
        "definition.tasks[1].id",
        "definition.tasks[1].skill",
        "definition.tasks[2].id",
        "definition.tasks[3].id",
        "definition.tasks[5].retry.max_attempts",
        "definition.tasks[5].timeout",
        "definition.tasks[4].depends_on[0]",
        "definition.tasks[4].depends_on[2]",
    ]


def test_empty_definition_and_budget_without_payer() -> None:
    assert fields(check_definition(definition())) == ["definition.tasks"]
    d = definition(budget=10, tasks=[{"id": "a", "skill": "s"}])
    assert fields(check_definition(d)) == ["definition.payer_account_id"]


def test_cycle_is_reported_with_its_path() -> None:
    d = definition(
        tasks=[
            {"id": "root", "skill": "s"},
            {"id": "a", "skill": "s", "dependsOn": ["root", "c"]},
            {"id": "b", "skill": "s", "dependsOn": ["a"]},
            {"id": "c", "skill": "s", "dependsOn": ["b"]},
        ]
    )
    (violation,) = check_definition(d)
    assert violation.field == "definition.tasks[1].depends_on"
    assert "a -> c -> b -> a" in violation.description


def test_self_dependency_is_a_cycle() -> None:
    d = definition(tasks=[{"id": "a", "skill": "s", "dependsOn": ["a"]}])
    assert find_cycle(d) == ["a", "a"]


def test_long_chain_does_not_recurse() -> None:
    tasks = [{"id": "t0", "skill": "s"}] + [
        {"id": f"t{i}", "skill": "s", "dependsOn": [f"t{i - 1}"]} for i in range(1, 5000)
    ]
    assert check_definition(definition(tasks=tasks)) == []


def template(**kw: object) -> workflow_pb2.Template:
    return json_format.ParseDict(kw, workflow_pb2.Template())


def test_template_expansion_substitutes_every_string() -> None:
    t = template(
        name="report",
        parameters=[{"name": "topic", "required": True}, {"name": "who", "defaultValue": "ops"}],
        definition={
            "name": "report on ${topic}",
            "tasks": [
                {
                    "id": "a",
                    "skill": "text.upper",
                    "input": {"text": "${topic} for ${who}", "nested": {"l": ["${who}", 1]}},
                },
            ],
        },
    )
    assert check_template(t) == []
    inv = workflow_pb2.TemplateInvocation(template_name="report", parameters={"topic": "cpu"})
    d = expand(t, inv)
    assert d.name == "report on cpu"
    assert d.tasks[0].input["text"] == "cpu for ops"
    assert d.tasks[0].input["nested"]["l"][0] == "ops"


def test_template_parameters_are_checked() -> None:
    t = template(
        name="x",
        parameters=[{"name": "p", "required": True}, {"name": "p"}, {"name": "9bad"}],
        definition={"tasks": [{"id": "a", "skill": "${q}"}]},
    )
    got = fields(check_template(t))
    assert "template.parameters[1].name" in got
    assert "template.parameters[2].name" in got
    assert "template.definition.tasks[0].skill" in got

    ok = template(
        name="x",
        parameters=[{"name": "p", "required": True}],
        definition={"tasks": [{"id": "a", "skill": "s"}]},
    )
    with pytest.raises(InvalidArgument) as err:
        expand(ok, workflow_pb2.TemplateInvocation(template_name="x", parameters={"zz": "1"}))
    assert fields(list(err.value.violations)) == [
        "template.parameters[zz]",
        "template.parameters[p]",
    ]


def test_names_and_labels_are_bounded_at_the_limit_and_one_past() -> None:
    from meshwright.workflow._dag import (
        MAX_LABEL_KEY_CHARS,
        MAX_LABEL_VALUE_CHARS,
        MAX_LABELS,
        MAX_NAME_CHARS,
    )

    task = [{"id": "a", "skill": "s"}]
    assert check_definition(definition(name="n" * MAX_NAME_CHARS, tasks=task)) == []
    assert fields(check_definition(definition(name="n" * (MAX_NAME_CHARS + 1), tasks=task))) == [
        "definition.name"
    ]
    at = {f"k{i}": "v" * MAX_LABEL_VALUE_CHARS for i in range(MAX_LABELS)}
    assert check_definition(definition(labels=at, tasks=task)) == []
    past = {**at, "one-more": "v"}
    assert fields(check_definition(definition(labels=past, tasks=task))) == ["definition.labels"]
    assert fields(
        check_definition(definition(labels={"k" * (MAX_LABEL_KEY_CHARS + 1): "v"}, tasks=task))
    ) == [f"definition.labels['{'k' * 32}'...]"]
    assert fields(
        check_definition(definition(labels={"k": "v" * (MAX_LABEL_VALUE_CHARS + 1)}, tasks=task))
    ) == ["definition.labels['k']"]


def test_the_definition_is_bounded_in_bytes() -> None:
    from meshwright.workflow._dag import MAX_DEFINITION_BYTES

    def of_size(n: int) -> workflow_pb2.WorkflowDefinition:
        d = definition(tasks=[{"id": "a", "skill": "s"}])
        d.tasks[0].input["pad"] = "x" * (n - 100)  # then a short name makes up the rest
        d.name = "n" * (n - d.ByteSize() - 2)  # 2: the name's tag and length
        return d

    assert of_size(MAX_DEFINITION_BYTES).ByteSize() == MAX_DEFINITION_BYTES
    assert check_definition(of_size(MAX_DEFINITION_BYTES)) == []
    assert fields(check_definition(of_size(MAX_DEFINITION_BYTES + 1))) == ["definition"]


def test_a_long_cycle_is_abbreviated_and_caller_text_is_clipped_ascii() -> None:
    ids = [f"t{i}" for i in range(300)]
    ring = [{"id": t, "skill": "s", "dependsOn": [ids[(i + 1) % 300]]} for i, t in enumerate(ids)]
    (violation,) = check_definition(definition(tasks=ring))
    assert violation.description == (
        "dependency cycle: t0 -> t1 -> t2 -> t3 -> t4 -> t5 -> t6 -> t7 -> t8 -> t9 -> "
        "... (290 more, 300 tasks in all) -> t0 (each depends on the next)"
    )
    short = [
        {"id": t, "skill": "s", "dependsOn": [f"c{(i + 1) % 11}"]}
        for i, t in enumerate(f"c{i}" for i in range(11))
    ]
    (violation,) = check_definition(definition(tasks=short))
    assert "..." not in violation.description  # 12 ids in the path: shown in full

    d = definition(tasks=[{"id": "a", "skill": "s", "dependsOn": ["é" * 1000]}])
    (violation,) = check_definition(d)
    assert violation.description.isascii() and len(violation.description) < 300
