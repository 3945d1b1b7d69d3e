"""Workflow templates: reusable definitions with ``${name}`` parameters.

Parameters are substituted into every string of the definition (name,
skills, labels, payer, and string values inside task inputs), so one template
can serve many runs. ``$${`` escapes a literal ``${``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from google.protobuf import struct_pb2

from meshwright.mesh.errors import FieldViolation, InvalidArgument
from meshwright.workflow._dag import check_definition, quote
from meshwright.workflow.v1 import workflow_pb2

PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
TEMPLATE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")
_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}")


def field_key(text: str) -> str:
    """A caller's map key inside a field path: as is when short ASCII, else quoted."""
    return text if text.isascii() and len(text) <= 64 else quote(text)


def references(text: str) -> set[str]:
    """Parameter names ``text`` refers to."""
    return {m.group(1) for m in _REF.finditer(text) if m.group(1) is not None}


def substitute(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each ``${name}`` replaced by its value."""
    if "$" not in text:
        return text

    def repl(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return "${"
        return values.get(m.group(1), m.group(0))

    return _REF.sub(repl, text)


def _strings_of_value(value: struct_pb2.Value) -> list[str]:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return [value.string_value]
    if kind == "struct_value":
        return [s for v in value.struct_value.fields.values() for s in _strings_of_value(v)]
    if kind == "list_value":
        return [s for v in value.list_value.values for s in _strings_of_value(v)]
    return []


def _substitute_value(value: struct_pb2.Value, values: Mapping[str, str]) -> None:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        value.string_value = substitute(value.string_value, values)
    elif kind == "struct_value":
        for v in value.struct_value.fields.values():
            _substitute_value(v, values)
    elif kind == "list_value":
        for v in value.list_value.values:
            _substitute_value(v, values)


def _strings(definition: workflow_pb2.WorkflowDefinition) -> list[tuple[str, str]]:
    """(field path, text) of every string parameters may appear in."""
    out = [("definition.name", definition.name)]
    out.append(("definition.payer_account_id", definition.payer_account_id))
    out.extend((f"definition.labels[{field_key(k)}]", v) for k, v in definition.labels.items())
    for i, task in enumerate(definition.tasks):
        out.append((f"definition.tasks[{i}].skill", task.skill))
        for name, value in task.input.fields.items():
            where = f"definition.tasks[{i}].input.{field_key(name)}"
            out.extend((where, s) for s in _strings_of_value(value))
    return out


def check_template(template: workflow_pb2.Template) -> list[FieldViolation]:
    """Violations of a template before it is stored."""
    out: list[FieldViolation] = []
    if not template.name:
        out.append(FieldViolation("template.name", "is required"))
    elif not TEMPLATE_NAME.fullmatch(template.name):
        out.append(
            FieldViolation(
                "template.name",
                "must be 1-64 letters, digits, '_', '-' or '.', starting with a letter",
            )
        )
    declared: set[str] = set()
    for i, p in enumerate(template.parameters):
        if not PARAM_NAME.fullmatch(p.name):
            out.append(
                FieldViolation(
                    f"template.parameters[{i}].name", "must match [A-Za-z_][A-Za-z0-9_]*"
                )
            )
        elif p.name in declared:
            out.append(FieldViolation(f"template.parameters[{i}].name", "is declared twice"))
        declared.add(p.name)
    if not template.HasField("definition"):
        out.append(FieldViolation("template.definition", "is required"))
        return out
    for field, text in _strings(template.definition):
        for name in sorted(references(text) - declared):
            out.append(
                FieldViolation(
                    f"template.{field}",
                    f"refers to undeclared parameter {quote('${' + name + '}')}",
                )
            )
    # Structure is checked with placeholder values so ids/deps errors surface now.
    out.extend(
        check_definition(
            _expand_unchecked(template, {p: f"p_{p}" for p in declared}), "template.definition"
        )
    )
    return out


def _expand_unchecked(
    template: workflow_pb2.Template, values: Mapping[str, str]
) -> workflow_pb2.WorkflowDefinition:
    out = workflow_pb2.WorkflowDefinition()
    out.CopyFrom(template.definition)
    out.name = substitute(out.name, values)
    out.payer_account_id = substitute(out.payer_account_id, values)
    for k in list(out.labels):
        out.labels[k] = substitute(out.labels[k], values)
    for task in out.tasks:
        task.skill = substitute(task.skill, values)
        for v in task.input.fields.values():
            _substitute_value(v, values)
    return out


def expand(
    template: workflow_pb2.Template, invocation: workflow_pb2.TemplateInvocation
) -> workflow_pb2.WorkflowDefinition:
    """The definition a template invocation describes, with parameters substituted."""
    violations: list[FieldViolation] = []
    declared = {p.name: p for p in template.parameters}
    for name in sorted(set(invocation.parameters) - set(declared)):
        violations.append(
            FieldViolation(
                f"template.parameters[{field_key(name)}]",
                f"template {template.name!r} has no parameter {quote(name)}",
            )
        )
    values: dict[str, str] = {}
    for name, p in declared.items():
        if name in invocation.parameters:
            values[name] = invocation.parameters[name]
        elif p.required:
            violations.append(
                FieldViolation(f"template.parameters[{field_key(name)}]", "is required")
            )
        else:
            values[name] = p.default_value
    if violations:
        raise InvalidArgument(
            f"bad parameters for template {template.name!r}", violations=violations
        )
    definition = _expand_unchecked(template, values)
    if invocation.budget > 0:
        definition.budget = invocation.budget
    elif invocation.budget < 0:
        raise InvalidArgument.field("template.budget", "must not be negative")
    if invocation.payer_account_id:
        definition.payer_account_id = invocation.payer_account_id
    return definition
