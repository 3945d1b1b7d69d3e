"""The trace waterfall: tree order, short names, counts, bars, running and empty traces."""

from __future__ import annotations

import re

import pytest
from rich.console import Console

from meshwright import _waterfall as wfall
from meshwright.workflow.v1 import workflow_pb2

W = workflow_pb2

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000  # the run's first instant, in ns

WF = "meshwright.workflow.v1.WorkflowService/CreateWorkflow"
OPEN = "meshwright.economy.v1.EconomyService/OpenEscrow"
CAPTURE = "meshwright.economy.v1.EconomyService/CaptureEscrow"
EXECUTE = "meshwright.agent.v1.AgentService/ExecuteTask"


def span(
    span_id: str,
    parent: str,
    name: str,
    start_ms: float,
    end_ms: float | None,
    *,
    kind: W.SpanKind.ValueType = W.SPAN_KIND_INTERNAL,
    error: bool = False,
    status_message: str = "",
    **attributes: str,
) -> W.TraceSpan:
    msg = W.TraceSpan(
        span_id=span_id.rjust(16, "0"),
        parent_span_id=parent.rjust(16, "0") if parent else "",
        name=name,
        kind=kind,
        error=error,
        status_message=status_message,
        service="meshwright",
    )
    msg.start_time.FromNanoseconds(T0 + int(start_ms * MS))
    if end_ms is not None:
        msg.end_time.FromNanoseconds(T0 + int(end_ms * MS))
    for key, value in attributes.items():
        msg.attributes[key.replace("__", ".")] = value
    return msg


def task(
    span_id: str,
    task_id: str,
    agent: str,
    attempt: int,
    start_ms: float,
    end_ms: float,
    outcome: str = "succeeded",
    **extra: str,
) -> W.TraceSpan:
    failed = outcome == "failed"
    return span(
        span_id,
        "2",
        f"task {task_id}",
        start_ms,
        end_ms,
        error=failed,
        status_message="UNAVAILABLE: agent went away" if failed else "",
        meshwright__workflow_id="wf-1",
        meshwright__task_id=task_id,
        meshwright__skill=f"skill.{task_id}",
        meshwright__agent_id=agent,
        meshwright__attempt=str(attempt),
        meshwright__price="5",
        meshwright__outcome=outcome,
        **extra,
    )


def rpc(
    span_id: str, parent: str, name: str, start_ms: float, end_ms: float, **extra: str
) -> W.TraceSpan:
    code = extra.pop("code", "0")
    return span(
        span_id,
        parent,
        name,
        start_ms,
        end_ms,
        kind=W.SPAN_KIND_CLIENT,
        error=code != "0",
        rpc__grpc__status_code=code,
        **extra,
    )


def run_trace() -> W.GetWorkflowTraceResponse:
    """A run through the gateway: create (with its escrow), fetch then parse and
    render in parallel; parse fails on agent-b and is retried on agent-c; each
    success is paid; the run ends. 1 s in all. In start order, as the RPC answers,
    but for the ending (first) and a server span (last): the tree must not care."""
    spans = [
        span("e", "2", "workflow end", 900, 1000, meshwright__state="WORKFLOW_STATE_SUCCEEDED"),
        span("1", "", "POST /v1/workflows", 0, 100, kind=W.SPAN_KIND_SERVER),
        span("2", "1", WF, 10, 90, kind=W.SPAN_KIND_SERVER, rpc__grpc__status_code="0"),
        rpc("3", "2", OPEN, 20, 40),
        task("a", "fetch", "agent-a", 1, 100, 300),
        rpc("a1", "a", EXECUTE, 110, 280, server__address="10.0.0.7:7001"),
        rpc("a2", "a", CAPTURE, 285, 295),
        task("b", "parse", "agent-b", 1, 300, 400, "failed", meshwright__retryable="True"),
        rpc("b1", "b", EXECUTE, 305, 395, code="14", server__address="10.0.0.8:7001"),
        task("c", "render", "agent-a", 1, 310, 600),
        rpc("c1", "c", EXECUTE, 315, 580, server__address="10.0.0.7:7001"),
        rpc("c2", "c", CAPTURE, 585, 595),
        task("d", "parse", "agent-c", 2, 450, 850),
        rpc("d1", "d", EXECUTE, 455, 830, server__address="10.0.0.9:7001"),
        rpc("d2", "d", CAPTURE, 835, 845),
    ]
    # The in-process economy serves the capture of render: its SERVER span, under the CLIENT one.
    spans.append(
        span("c3", "c2", CAPTURE, 586, 594, kind=W.SPAN_KIND_SERVER, rpc__grpc__status_code="0")
    )
    return W.GetWorkflowTraceResponse(trace_id=TRACE, spans=spans)


def text_of(renderable: object, width: int = 120) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def rows_of(text: str) -> list[str]:
    """The rendered rows after the header line and the column titles."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[2:]


def name_cell(row: str) -> str:
    """A row's first cell, its indentation kept: words one space apart, up to the gap."""
    match = re.match(r" *\S+(?: \S+)*", row)
    assert match is not None
    return match.group(0)


def test_summary_counts_exactly() -> None:
    assert wfall.summary(run_trace()) == {
        "spans": 16,
        "tasks": 3,
        "attempts": 4,
        "retries": 1,
        # three captures; the SERVER span under render's CLIENT one is the same payment
        "payments": 3,
        "errors": 2,  # the failed attempt and its UNAVAILABLE call
        "running": 0,
        "dropped": 0,
        "duration_s": 1.0,
    }


def test_header_says_what_the_run_did() -> None:
    first = text_of(wfall.render_waterfall(run_trace())).splitlines()[0]
    assert TRACE in first
    assert "1.00 s" in first
    assert "16 spans" in first
    assert "3 tasks (1 retry)" in first
    assert "3 payments" in first
    assert "2 errors" in first
    assert "dropped" not in first
    dropped = run_trace()
    dropped.dropped_spans = 7
    assert "7 dropped" in text_of(wfall.render_waterfall(dropped)).splitlines()[0]


def test_rows_in_tree_order_indented_by_depth() -> None:
    rows = rows_of(text_of(wfall.render_waterfall(run_trace())))
    cells = [name_cell(row) for row in rows]
    got = [(len(cell) - len(cell.lstrip()), cell.lstrip()) for cell in cells]
    # the name column is the first one: its indentation is the depth, two cells a level
    names = [
        (0, "POST /v1/workflows"),
        (2, "workflow CreateWorkflow"),
        (4, "economy OpenEscrow"),
        (4, "task fetch"),
        (6, "agent ExecuteTask"),
        (6, "economy CaptureEscrow"),
        (4, "task parse"),
        (6, "agent ExecuteTask"),
        (4, "task render"),
        (6, "agent ExecuteTask"),
        (6, "economy CaptureEscrow"),
        (8, "economy CaptureEscrow"),
        (4, "task parse"),
        (6, "agent ExecuteTask"),
        (6, "economy CaptureEscrow"),
        (4, "workflow end"),
    ]
    assert got == names


def test_span_tree_depths_and_sibling_order() -> None:
    tree = wfall.span_tree(list(run_trace().spans))
    assert [(d, s.span_id.lstrip("0")) for d, s in tree][:6] == [
        (0, "1"),
        (1, "2"),
        (2, "3"),
        (2, "a"),
        (3, "a1"),
        (3, "a2"),
    ]
    # the ending, listed first, sorts last among the create call's children by its start
    assert tree[-1][1].name == "workflow end" and tree[-1][0] == 2


def test_rows_carry_agent_attempt_outcome_and_duration() -> None:
    rows = rows_of(text_of(wfall.render_waterfall(run_trace())))
    fetch = next(r for r in rows if "task fetch" in r)
    assert "agent-a" in fetch and "succeeded" in fetch and "200 ms" in fetch
    retry = [r for r in rows if "task parse" in r][1]
    assert re.search(r"agent-c\s+2\s+succeeded\s+400 ms", retry)
    call = rows[rows.index(retry) + 1]
    assert "agent ExecuteTask" in call and "OK" in call and "agent-c" not in call
    end = rows[-1]
    assert "workflow end" in end and "SUCCEEDED" in end and "100 ms" in end


@pytest.mark.parametrize(
    ("name", "short"),
    [
        (CAPTURE, "economy CaptureEscrow"),
        (OPEN, "economy OpenEscrow"),
        (WF, "workflow CreateWorkflow"),
        (EXECUTE, "agent ExecuteTask"),
        ("meshwright.registry.v1.RegistryService/ListAgents", "registry ListAgents"),
        ("grpc.health.v1.Health/Check", "grpc.health Check"),
        ("task fetch", "task fetch"),
        ("task a.b/c", "task a.b/c"),
        ("workflow end", "workflow end"),
        ("POST /v1/workflows", "POST /v1/workflows"),
    ],
)
def test_short_names(name: str, short: str) -> None:
    assert wfall.short_name(name) == short


def test_the_error_rows_are_marked() -> None:
    rendered = wfall.render_waterfall(run_trace())
    rows = rows_of(text_of(rendered))
    failed = next(r for r in rows if "task parse" in r)
    assert "failed: UNA" in failed  # the rest of the message past the column's ellipsis
    call = rows[rows.index(failed) + 1]
    assert "agent ExecuteTask" in call and "UNAVAILABLE" in call
    assert [r for r in rows if "UNA" in r] == [failed, call]
    # in colour the failed rows are red, the others not
    console = Console(record=True, width=120, color_system="truecolor", force_terminal=True)
    console.print(rendered)
    styled = [line for line in console.export_text(styles=True).splitlines() if line.strip()]
    red = [line for line in styled if "\x1b[1;31m" in line or "\x1b[31m" in line]
    assert len(red) == 3  # the header's error count, the failed attempt, its failed call
    assert any("task parse" in line for line in red)
    assert not any("task fetch" in line or "task render" in line for line in red)


def test_status_of_a_failed_attempt() -> None:
    failed = task("b", "parse", "agent-b", 1, 0, 1, "failed", meshwright__retryable="True")
    label, style = wfall._status(failed)
    assert label == "failed: UNAVAILABLE: agent went away (retryable)"
    assert "red" in style
    assert wfall.is_error(failed)
    ok = task("a", "fetch", "agent-a", 1, 0, 1)
    assert wfall._status(ok) == ("succeeded", "green")
    assert not wfall.is_error(ok)


def test_bar_proportions() -> None:
    window = wfall.Window(T0, T0 + 1000 * MS)
    assert wfall.bar_extent(T0, T0 + 1000 * MS, window, 40) == (0, 40)
    assert wfall.bar(T0, T0 + 1000 * MS, window, 40).plain == wfall.BLOCK * 40
    # half the run, from its middle: the right half
    assert wfall.bar_extent(T0 + 500 * MS, T0 + 1000 * MS, window, 40) == (20, 20)
    assert wfall.bar(T0 + 500 * MS, T0 + 1000 * MS, window, 40).plain == (
        wfall.TRACK * 20 + wfall.BLOCK * 20
    )
    # a quarter from 25%: cells 10 to 19 of 40
    assert wfall.bar_extent(T0 + 250 * MS, T0 + 500 * MS, window, 40) == (10, 10)
    # an instant still takes a cell, even at the very end
    assert wfall.bar_extent(T0 + 300 * MS, T0 + 300 * MS, window, 40) == (12, 1)
    assert wfall.bar_extent(T0 + 1000 * MS, T0 + 1000 * MS, window, 40) == (39, 1)
    # every bar is exactly as wide as asked
    for start, end in [(0, 1), (1, 999), (333, 334), (999, 1000)]:
        assert len(wfall.bar(T0 + start * MS, T0 + end * MS, window, 37).plain) == 37
    # a window with no length: one cell at its start
    assert wfall.bar_extent(T0, T0, wfall.Window(T0, T0), 10) == (0, 1)
    with pytest.raises(ValueError):
        wfall.bar_extent(T0, T0, window, 0)


def test_rendered_bars_follow_the_spans() -> None:
    rows = rows_of(text_of(wfall.render_waterfall(run_trace(), width=100)))
    bars = [re.search(f"[{wfall.BLOCK}{wfall.TRACK}]+$", row) for row in rows]
    assert all(b is not None for b in bars)
    cells = [b.group(0) for b in bars if b is not None]
    assert len({len(c) for c in cells}) == 1  # one bar width for all rows
    width = len(cells[0])
    assert all(len(row) <= 100 for row in rows)
    root = cells[0]
    assert root.startswith(wfall.BLOCK) and root.count(wfall.BLOCK) == -(-width // 10)
    end = cells[-1]  # 900 to 1000 ms: the last tenth
    assert end.endswith(wfall.BLOCK) and end.index(wfall.BLOCK) == 9 * width // 10


def test_orphans_are_roots() -> None:
    spans = [
        span("1", "", "POST /v1/workflows", 0, 100, kind=W.SPAN_KIND_SERVER),
        # its parent, the create call, was dropped past the store's bound
        task("a", "fetch", "agent-a", 1, 100, 300),
        rpc("a1", "a", CAPTURE, 285, 295),
        span("z", "ffff", "workflow end", 50, 60),
    ]
    response = W.GetWorkflowTraceResponse(trace_id=TRACE, spans=spans, dropped_spans=1)
    tree = [(d, s.name) for d, s in wfall.span_tree(list(response.spans))]
    assert tree == [
        (0, "POST /v1/workflows"),
        (0, "workflow end"),
        (0, "task fetch"),
        (1, CAPTURE),
    ]
    rows = rows_of(text_of(wfall.render_waterfall(response)))
    assert [name_cell(row) for row in rows] == [
        "POST /v1/workflows",
        "workflow end",
        "task fetch",
        "  economy CaptureEscrow",
    ]


def test_a_cycle_of_parents_still_lists_every_span_once() -> None:
    spans = [span("a", "b", "x", 0, 10), span("b", "a", "y", 5, 10), span("c", "c", "z", 1, 2)]
    tree = wfall.span_tree(spans)
    assert sorted(s.name for _, s in tree) == ["x", "y", "z"]
    assert [(d, s.name) for d, s in tree] == [(0, "z"), (0, "x"), (1, "y")]


def test_a_running_span_runs_to_the_end_of_the_window() -> None:
    spans = [
        span("1", "", WF, 0, 100, kind=W.SPAN_KIND_SERVER),
        task("a", "fetch", "agent-a", 1, 100, 400),
        span(
            "b",
            "1",
            "task slow",
            200,
            None,
            meshwright__task_id="slow",
            meshwright__agent_id="agent-b",
            meshwright__attempt="1",
        ),
    ]
    spans[1].parent_span_id = spans[0].span_id
    response = W.GetWorkflowTraceResponse(trace_id=TRACE, spans=spans)
    counts = wfall.summary(response)
    assert counts["running"] == 1 and counts["duration_s"] == pytest.approx(0.4)
    text = text_of(wfall.render_waterfall(response, width=100))
    assert "1 running" in text.splitlines()[0]
    row = next(r for r in rows_of(text) if "task slow" in r)
    assert "running" in row and "≥200 ms" in row
    bar = re.search(f"[{wfall.BLOCK}{wfall.TRACK}]+$", row)
    assert bar is not None
    cells = bar.group(0)
    assert cells.endswith(wfall.BLOCK)  # to the end of the window
    assert cells.index(wfall.BLOCK) == len(cells) // 2  # from 200 of 400 ms


def test_no_spans_kept() -> None:
    response = W.GetWorkflowTraceResponse(trace_id=TRACE)
    text = text_of(wfall.render_waterfall(response)).strip()
    assert text == f"No spans were kept for trace {TRACE}."
    assert "\n" not in text
    response.dropped_spans = 3
    assert "3 dropped" in text_of(wfall.render_waterfall(response))


def test_no_trace_id() -> None:
    text = text_of(wfall.render_waterfall(W.GetWorkflowTraceResponse())).strip()
    assert "\n" not in text
    assert "no trace id" in text and "tracing was off" in text


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (420_000, "0.42 ms"),
        (12_500_000, "12.5 ms"),
        (420 * MS, "420 ms"),
        (1250 * MS, "1.25 s"),
        (125_000 * MS, "2m 05s"),
        (9_999_000, "10.0 ms"),
        (999_700_000, "1.00 s"),
        (59_999 * MS, "1m 00s"),
    ],
)
def test_human_duration(ns: int, text: str) -> None:
    assert wfall.human_duration(ns) == text


def test_narrow_widths_still_render_one_line_a_span() -> None:
    for width in (40, 60, 80, 160):
        text = text_of(wfall.render_waterfall(run_trace(), width=width), width=200)
        rows = rows_of(text)
        assert len(rows) == 16
