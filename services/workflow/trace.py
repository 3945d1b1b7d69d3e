"""A workflow run's trace as GetWorkflowTrace answers it: the spans this process kept.

The run's trace id comes from the workflow (its ``traceparent``, the create
call's span); the spans from the process's ``SpanStore`` (``meshwright up``
keeps one). Attributes are rendered as text: the waterfall and the dashboard
only show them.
"""

from __future__ import annotations

from typing import Any

from meshwright.mesh import telemetry
from meshwright.mesh.telemetry import SpanKind
from meshwright.workflow.errors import NoSpanStore
from meshwright.workflow.v1 import workflow_pb2

W = workflow_pb2

_KINDS = {
    SpanKind.INTERNAL: W.SPAN_KIND_INTERNAL,
    SpanKind.SERVER: W.SPAN_KIND_SERVER,
    SpanKind.CLIENT: W.SPAN_KIND_CLIENT,
}


def trace_of(workflow: W.Workflow) -> W.GetWorkflowTraceResponse:
    """The kept spans of ``workflow``'s run; ``NoSpanStore`` when this process keeps
    none (the message names the trace id to look up elsewhere)."""
    trace_id = telemetry.trace_id_of(workflow.traceparent)
    out = W.GetWorkflowTraceResponse(trace_id=trace_id)
    store = telemetry.span_store()
    if store is None:
        where = f"trace id {trace_id}" if trace_id else "no trace id (tracing was off)"
        raise NoSpanStore(
            "this process keeps no spans (tracing to an exporter only, or off): look the "
            f"run up in the tracing backend by its {where}",
            metadata={"trace_id": trace_id},
        )
    if not trace_id:
        return out
    for span in store.spans(trace_id):
        out.spans.append(span_message(span))
    out.dropped_spans = store.dropped(trace_id)
    return out


def span_message(span: Any) -> W.TraceSpan:
    """One SDK ``ReadableSpan`` as a ``TraceSpan``."""
    msg = W.TraceSpan(
        span_id=f"{span.context.span_id:016x}",
        parent_span_id=f"{span.parent.span_id:016x}" if span.parent is not None else "",
        name=span.name,
        kind=_KINDS.get(span.kind, W.SPAN_KIND_UNSPECIFIED),
        error=not span.status.is_ok and not span.status.is_unset,
        status_message=span.status.description or "",
        service=str(span.resource.attributes.get("service.name", "")),
    )
    if span.start_time:
        msg.start_time.FromNanoseconds(span.start_time)
    if span.end_time:
        msg.end_time.FromNanoseconds(span.end_time)
    for key, value in (span.attributes or {}).items():
        msg.attributes[key] = str(value)
    return msg


__all__ = ["span_message", "trace_of"]
