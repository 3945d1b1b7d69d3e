"""Errors of the workflow domain (codes come from meshwright.mesh.errors' table)."""

from __future__ import annotations

from meshwright.mesh.errors import AlreadyExists, FailedPrecondition, NotFound


class WorkflowNotFound(NotFound):
    """No workflow with that id."""

    reason = "WORKFLOW_NOT_FOUND"


class WorkflowExists(AlreadyExists):
    """A workflow with that id exists already."""

    reason = "WORKFLOW_EXISTS"


class TemplateNotFound(NotFound):
    """No template with that name."""

    reason = "TEMPLATE_NOT_FOUND"


class TemplateExists(AlreadyExists):
    """A template with that name exists already."""

    reason = "TEMPLATE_EXISTS"


class NoSpanStore(FailedPrecondition):
    """This process keeps no spans: a run's trace is read in the backend it exports to."""

    reason = "NO_SPAN_STORE"
