"""A workflow run's trace as a waterfall in the terminal (rich).

``GetWorkflowTrace`` answers with the spans this process kept of a run, in start
order: the gateway's HTTP span, the SERVER and CLIENT spans of the calls, one
INTERNAL span per task attempt (``task <id>``, with its agent, attempt and
outcome), the agent calls and payments under them, and the ``workflow end``.
A flat list in start order hides which call belongs to which attempt, so this
lays the spans out as their tree (children under parents, siblings by start
time, spans whose parent was not kept as roots), one row each, with a bar
placed on the run's time window: where it started and how long it took.

``summary`` counts what the header says (spans, tasks, attempts, retries,
payments, errors, the window's duration), apart so it can be tested and
reused. A task attempt with ``meshwright.attempt`` above 1 is a retry; an
attempt the agent refused at capacity keeps its number, so it is no retry.
An in-process call has both a CLIENT and a SERVER span, the SERVER one its
child: a payment is a ``CaptureEscrow`` span not under another one, so it
counts once whichever of the two was kept.

A span without an end (still running when the trace was read) is drawn to the
end of the window and shown as running. Nothing here talks to the mesh: it
renders a response the caller already has.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from meshwright.workflow.v1 import workflow_pb2

W = workflow_pb2

BLOCK = "█"
"""The character a bar is drawn with."""
TRACK = "·"
"""The character of the bar's empty part (the rest of the window)."""

_INDENT = "  "
_MIN_BAR = 10
_GAP = 2  # cells between two columns (one of padding each side)

# grpc.StatusCode by number, without importing grpc for its names.
_GRPC_CODES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)

# "meshwright.economy.v1.EconomyService/CaptureEscrow": the package before the
# version, the method after the slash (one service per package in the mesh).
_RPC_NAME = re.compile(r"^(?P<package>[\w.]+?)\.v\d+(?:(?:alpha|beta)\d*)?\.\w+/(?P<method>\w+)$")

_OUTCOME_STYLE = {
    "succeeded": "green",
    "failed": "bold red",
    "at_capacity": "yellow",
    "cancelled": "magenta",
}
_STATE_STYLE = {
    "SUCCEEDED": "green",
    "FAILED": "bold red",
    "CANCELLED": "magenta",
}


def short_name(name: str) -> str:
    """A span's name for a row: ``economy CaptureEscrow`` for
    ``meshwright.economy.v1.EconomyService/CaptureEscrow`` (``grpc.health Check``
    for another package's RPC); any other name (``task fetch``, ``POST
    /v1/workflows``) as it is."""
    match = _RPC_NAME.match(name)
    if match is None:
        return name
    package = match["package"].removeprefix("meshwright.")
    return f"{package} {match['method']}"


def _method(span: W.TraceSpan) -> str:
    """The RPC method a span timed (``CaptureEscrow``), or ""."""
    match = _RPC_NAME.match(span.name)
    return match["method"] if match is not None else ""


def is_attempt(span: W.TraceSpan) -> bool:
    """Whether ``span`` is a task attempt (``task <id>``, made by the scheduler)."""
    return span.name.startswith("task ") and "meshwright.task_id" in span.attributes


def _attempt_number(span: W.TraceSpan) -> int:
    try:
        return int(span.attributes.get("meshwright.attempt", "1"))
    except ValueError:
        return 1


def _grpc_code(span: W.TraceSpan) -> int | None:
    raw = span.attributes.get("rpc.grpc.status_code")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def is_error(span: W.TraceSpan) -> bool:
    """Whether ``span`` ended in error: its status says so, its task attempt failed,
    or its call answered a gRPC code other than OK."""
    if span.error or span.attributes.get("meshwright.outcome") == "failed":
        return True
    code = _grpc_code(span)
    return code is not None and code != 0


def _ns(span: W.TraceSpan, field: str) -> int | None:
    if not span.HasField(field):
        return None
    value: int = getattr(span, field).ToNanoseconds()
    return value


@dataclass(frozen=True, slots=True)
class Window:
    """The run's time span: from the first start to the last end (or start) seen."""

    start_ns: int
    end_ns: int

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


def window_of(spans: Iterable[W.TraceSpan]) -> Window:
    """The window the spans cover (an empty one at 0 when none has a time)."""
    times: list[int] = []
    for span in spans:
        for field in ("start_time", "end_time"):
            ns = _ns(span, field)
            if ns is not None:
                times.append(ns)
    if not times:
        return Window(0, 0)
    return Window(min(times), max(times))


def _extent(span: W.TraceSpan, window: Window) -> tuple[int, int]:
    """``span``'s (start, end) in ns, a running one ending with the window."""
    start = _ns(span, "start_time")
    end = _ns(span, "end_time")
    if start is None:
        start = end if end is not None else window.start_ns
    if end is None:
        end = window.end_ns
    return start, max(start, end)


def span_tree(spans: Sequence[W.TraceSpan]) -> list[tuple[int, W.TraceSpan]]:
    """The spans as (depth, span) in tree order: each span followed by its children,
    siblings by start time (then their order in ``spans``); spans with no parent or
    one not among ``spans`` are roots at depth 0. Every span appears once, even in a
    malformed list (a cycle of parents is broken where it is found)."""
    ids = {span.span_id for span in spans if span.span_id}
    children: dict[str, list[int]] = {}
    roots: list[int] = []
    for i, span in enumerate(spans):
        parent = span.parent_span_id
        if parent and parent in ids and parent != span.span_id:
            children.setdefault(parent, []).append(i)
        else:
            roots.append(i)

    def key(i: int) -> tuple[int, int]:
        start = _ns(spans[i], "start_time")
        return (start if start is not None else 0, i)

    out: list[tuple[int, W.TraceSpan]] = []
    seen: set[int] = set()

    def walk(first: Iterable[int]) -> None:
        stack = [(0, i) for i in sorted(first, key=key, reverse=True)]
        while stack:
            depth, i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            out.append((depth, spans[i]))
            below = children.get(spans[i].span_id, [])
            stack.extend((depth + 1, j) for j in sorted(below, key=key, reverse=True))

    walk(roots)
    # What is left hangs off a cycle of parents: start it again from its earliest span.
    while len(seen) < len(spans):
        walk([min((i for i in range(len(spans)) if i not in seen), key=key)])
    return out


def bar_extent(start_ns: int, end_ns: int, window: Window, width: int) -> tuple[int, int]:
    """Where a bar of ``width`` cells starts and how many cells it fills, for a span
    from ``start_ns`` to ``end_ns`` in ``window``: proportional, at least one cell,
    always inside the bar (exact integer arithmetic, so a span covering the window
    fills it all and one starting at its middle starts at the middle cell)."""
    if width < 1:
        raise ValueError(f"width must be >= 1, not {width}")
    total = window.duration_ns
    if total <= 0:
        return 0, 1  # every span at one instant: nothing to be proportional to
    lo = min(max(start_ns - window.start_ns, 0), total)
    hi = min(max(end_ns - window.start_ns, lo), total)
    offset = min(lo * width // total, width - 1)
    stop = -(-hi * width // total)  # ceiling
    return offset, max(1, min(stop, width) - offset)


def bar(start_ns: int, end_ns: int, window: Window, width: int, *, style: str = "cyan") -> Text:
    """The bar of a span as ``width`` cells: the track, then the span's blocks."""
    offset, length = bar_extent(start_ns, end_ns, window, width)
    text = Text(TRACK * offset, style="dim")
    text.append(BLOCK * length, style=style)
    text.append(TRACK * (width - offset - length), style="dim")
    return text


def human_duration(ns: int) -> str:
    """A duration for people: ``0.42 ms``, ``12.5 ms``, ``420 ms``, ``1.25 s``, ``2m 05s``."""
    ms = ns / 1e6
    # Each bound is where the shorter form would round up to the next one's first value.
    if ms < 9.995:
        return f"{ms:.2f} ms"
    if ms < 99.95:
        return f"{ms:.1f} ms"
    if ms < 999.5:
        return f"{ms:.0f} ms"
    s = ms / 1000
    if s < 59.995:
        return f"{s:.2f} s"
    minutes, seconds = divmod(round(s), 60)
    return f"{minutes}m {seconds:02d}s"


def _payments(spans: Sequence[W.TraceSpan]) -> int:
    capture = {span.span_id for span in spans if _method(span) == "CaptureEscrow"}
    return sum(
        1 for span in spans if span.span_id in capture and span.parent_span_id not in capture
    )


def summary(response: W.GetWorkflowTraceResponse) -> dict[str, Any]:
    """What the waterfall's header counts: ``spans`` kept, ``tasks`` (distinct task
    ids attempted), ``attempts`` (task attempt spans), ``retries`` (attempts with
    ``meshwright.attempt`` > 1), ``payments`` (``CaptureEscrow`` calls, a client
    and server span of one call counted once), ``errors`` (spans ended in error),
    ``running`` (spans without an end), ``dropped`` (spans past the store's bound)
    and ``duration_s`` (the window's length)."""
    spans = list(response.spans)
    attempts = [span for span in spans if is_attempt(span)]
    return {
        "spans": len(spans),
        "tasks": len({span.attributes["meshwright.task_id"] for span in attempts}),
        "attempts": len(attempts),
        "retries": sum(1 for span in attempts if _attempt_number(span) > 1),
        "payments": _payments(spans),
        "errors": sum(1 for span in spans if is_error(span)),
        "running": sum(1 for span in spans if not span.HasField("end_time")),
        "dropped": int(response.dropped_spans),
        "duration_s": window_of(spans).duration_ns / 1e9,
    }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def header(response: W.GetWorkflowTraceResponse) -> Text:
    """The line above the rows: trace id, duration and the counts of ``summary``."""
    counts = summary(response)
    retries = counts["retries"]
    text = Text.from_markup(f"[bold]trace {escape(response.trace_id)}[/bold]")
    parts = [
        human_duration(round(counts["duration_s"] * 1e9)),
        _plural(counts["spans"], "span"),
        _plural(counts["tasks"], "task")
        + (" (1 retry)" if retries == 1 else f" ({retries} retries)"),
        _plural(counts["payments"], "payment"),
    ]
    for part in parts:
        text.append(" · ", style="dim")
        text.append(part)
    if counts["errors"]:
        text.append(" · ", style="dim")
        text.append(_plural(counts["errors"], "error"), style="bold red")
    if counts["running"]:
        text.append(" · ", style="dim")
        text.append(f"{counts['running']} running", style="yellow")
    if counts["dropped"]:
        text.append(" · ", style="dim")
        text.append(f"{counts['dropped']} dropped", style="yellow")
    return text


def _status(span: W.TraceSpan) -> tuple[str, str]:
    """A span's outcome as (text, style)."""
    attrs = span.attributes
    if not span.HasField("end_time"):
        return "running", "yellow"
    error = is_error(span)
    if "meshwright.outcome" in attrs:
        outcome = attrs["meshwright.outcome"]
        label = outcome
        style = "bold red" if error else _OUTCOME_STYLE.get(outcome, "")
    elif "meshwright.state" in attrs:
        label = attrs["meshwright.state"].removeprefix("WORKFLOW_STATE_")
        style = "bold red" if error else _STATE_STYLE.get(label, "")
    elif (code := _grpc_code(span)) is not None:
        label = _GRPC_CODES[code] if 0 <= code < len(_GRPC_CODES) else f"code {code}"
        style = "bold red" if error else "green"
    elif "http.response.status_code" in attrs:
        label = f"HTTP {attrs['http.response.status_code']}"
        style = "bold red" if error else "green"
    else:
        label = "error" if error else "ok"
        style = "bold red" if error else "green"
    if error and span.status_message and span.status_message != label:
        label = f"{label}: {span.status_message}"
    if attrs.get("meshwright.retryable", "").lower() == "true":
        label += " (retryable)"
    return label, style


def _agent(span: W.TraceSpan) -> str:
    return span.attributes.get("meshwright.agent_id", "")


def _bar_style(span: W.TraceSpan) -> str:
    if not span.HasField("end_time"):
        return "yellow"
    if is_error(span):
        return "red"
    if is_attempt(span):
        return "green"
    if span.kind == W.SPAN_KIND_CLIENT:
        return "blue"
    return "cyan"


def empty_message(response: W.GetWorkflowTraceResponse) -> Text:
    """The line shown for a response without spans."""
    if not response.trace_id:
        return Text(
            "This run has no trace id: tracing was off when it was created.", style="yellow"
        )
    line = f"No spans were kept for trace {response.trace_id}"
    if response.dropped_spans:
        line += f" ({response.dropped_spans} dropped past the store's per-trace bound)"
    return Text(line + ".", style="yellow")


def render_waterfall(response: W.GetWorkflowTraceResponse, *, width: int = 100) -> RenderableType:
    """The run's waterfall, ``width`` cells wide: a header line, then one row per span
    in tree order (name indented by depth, agent, attempt, outcome, duration, bar).
    A response without spans is one line saying why."""
    if not response.spans:
        return empty_message(response)
    spans = list(response.spans)
    window = window_of(spans)
    rows = span_tree(spans)

    names = [_INDENT * depth + short_name(span.name) for depth, span in rows]
    agents = [_agent(span) for _, span in rows]
    attempts = [span.attributes.get("meshwright.attempt", "") for _, span in rows]
    statuses = [_status(span) for _, span in rows]
    durations: list[str] = []
    for _, span in rows:
        start, end = _extent(span, window)
        text = human_duration(end - start)
        durations.append(text if span.HasField("end_time") else f"≥{text}")

    def fit(title: str, cells: Iterable[str], cap: int) -> int:
        return min(max([len(title), *(len(c) for c in cells)]), cap)

    # Each text column as wide as its widest cell (capped); the bar takes the rest, but
    # at least a quarter of the width: the outcome, then the name, then the agent give
    # way for it, each down to a minimum.
    cols = {
        "name": fit("span", names, 48),
        "agent": fit("agent", agents, 20),
        "attempt": fit("attempt", attempts, 7),
        "status": fit("outcome", (s for s, _ in statuses), 32),
        "duration": fit("duration", durations, 10),
    }
    gaps = _GAP * len(cols)
    want = max(_MIN_BAR, (width - gaps) // 4)
    for col, least in (("status", 11), ("name", 20), ("agent", 8), ("status", 7), ("name", 8)):
        short = want - (width - sum(cols.values()) - gaps)
        if short <= 0:
            break
        cols[col] -= min(short, max(cols[col] - least, 0))
    bar_w = max(_MIN_BAR, width - sum(cols.values()) - gaps)
    name_w, agent_w, attempt_w, status_w, duration_w = cols.values()

    table = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False, header_style="bold")
    table.add_column("span", width=name_w, no_wrap=True, overflow="ellipsis")
    table.add_column("agent", width=agent_w, no_wrap=True, overflow="ellipsis")
    table.add_column("attempt", width=attempt_w, no_wrap=True, justify="right")
    table.add_column("outcome", width=status_w, no_wrap=True, overflow="ellipsis")
    table.add_column("duration", width=duration_w, no_wrap=True, justify="right")
    table.add_column(
        f"0 … {human_duration(window.duration_ns)}", width=bar_w, no_wrap=True, overflow="crop"
    )
    for (_, span), name, agent, attempt, (status, style), duration in zip(
        rows, names, agents, attempts, statuses, durations, strict=True
    ):
        start, end = _extent(span, window)
        name_style = "bold red" if is_error(span) else ("bold" if is_attempt(span) else "")
        table.add_row(
            Text(name, style=name_style),
            Text(agent),
            Text(attempt),
            Text(status, style=style),
            Text(duration),
            bar(start, end, window, bar_w, style=_bar_style(span)),
        )
    return Group(header(response), table)


__all__ = [
    "BLOCK",
    "TRACK",
    "Window",
    "bar",
    "bar_extent",
    "empty_message",
    "header",
    "human_duration",
    "is_attempt",
    "is_error",
    "render_waterfall",
    "short_name",
    "span_tree",
    "summary",
    "window_of",
]
