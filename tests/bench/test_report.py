"""scripts/bench_report.py: documents rendered into BENCHMARKS.md, benches run and reported.

Fixture documents are written with bench/_results.py itself, so the format under test
is the one every bench writes; one real bench (the cheapest) runs with ``--json``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

INTRO = """# Benchmarks

Figures measured on the project machine (2 cores, 24 GiB, no GPU), with the
command beside each.

## Fan-out DAG on the in-memory engine (`bench/fanout.py`)

| agents | tasks/s |
|---|---|
| 1 | 1,924 |

Trailing text, kept as it is.
"""


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


report = load("bench_report", ROOT / "scripts" / "bench_report.py")
results = load("_results", ROOT / "bench" / "_results.py")


def write_doc(directory: Path, bench: str, figures: list[dict[str, Any]], **extra: Any) -> Path:
    """A document as a bench writes it (bench/_results.py)."""
    doc = results.Results(bench=bench, title=extra.pop("title", f"The {bench} bench"))
    for f in figures:
        doc.add(**f)
    doc.series = extra.pop("series", [])
    doc.notes = extra.pop("notes", [])
    path = directory / f"{bench}.json"
    doc.write(path, argv=[f"bench/{bench}.py", "--tasks", "20", "--json", str(path)])
    return path


def outcome_of(path: Path, **kw: Any) -> Any:
    doc = json.loads(path.read_text())
    o = report.Outcome(doc["bench"], doc["title"], doc["command"], **kw)
    o.doc = doc
    return o


def run_info() -> Any:
    return report.RunInfo(
        date="2026-12-03 10:00 UTC",
        commit="abc1234 + changes",
        machine="Test CPU, 2 cores, 24.0 GiB RAM, Linux 6.1, Python 3.11.7",
        seconds=123.4,
        command="`python scripts/bench_report.py`",
    )


def table_row(block: str, metric: str) -> list[str]:
    """The cells of the figures-table row of ``metric``."""
    for line in block.splitlines():
        if line.startswith(f"| {metric} |"):
            return [c.strip() for c in line.strip().strip("|").split("|")]
    raise AssertionError(f"no row for {metric!r} in:\n{block}")


FANOUT = {"metric": "fan-out", "unit": "tasks/s", "value": 581.0}


def test_first_render_inserts_the_markers_after_the_intro_second_replaces_only_the_block(
    tmp_path: Path,
) -> None:
    target = tmp_path / "BENCHMARKS.md"
    target.write_text(INTRO)
    first = write_doc(tmp_path, "fanout", [{**FANOUT, "peer": "echo", "peer_value": 1290.0}])
    report.write_report(target, [outcome_of(first)], run_info())
    text = target.read_text()
    assert text.count(report.BEGIN) == 1 and text.count(report.END) == 1
    head, _, rest = text.partition(report.BEGIN)
    block, _, tail = rest.partition(report.END)
    intro_end = INTRO.index("## Fan-out")
    assert head == INTRO[:intro_end], "the block goes right after the intro paragraph"
    assert tail == "\n" + INTRO[intro_end - 1 :], "everything after it is kept as it was"
    assert "## Report of `make bench`" in block and "581 tasks/s" in block

    second = write_doc(tmp_path, "fanout", [{**FANOUT, "value": 777.0}])
    report.write_report(target, [outcome_of(second)], run_info())
    again = target.read_text()
    head2, _, rest2 = again.partition(report.BEGIN)
    block2, _, tail2 = rest2.partition(report.END)
    assert (head2, tail2) == (head, tail), "outside the markers the file is byte-identical"
    assert "777 tasks/s" in block2 and "581" not in block2
    assert again.count(report.BEGIN) == 1


def test_header_names_date_commit_machine_time_and_command(tmp_path: Path) -> None:
    doc = write_doc(tmp_path, "fanout", [FANOUT])
    block = report.render_block([outcome_of(doc)], run_info())
    for expected in (
        "2026-12-03 10:00 UTC",
        "abc1234 + changes",
        "Test CPU, 2 cores, 24.0 GiB RAM",
        "2 min 3 s",
        "`python scripts/bench_report.py`",
        "`python bench/fanout.py --tasks 20`",  # the bench's own command, --json left out
    ):
        assert expected in block, expected
    assert block.startswith(report.BEGIN) and block.endswith(report.END)


def test_a_failed_bench_is_reported_with_its_stderr_tail_and_a_missing_one_as_missing(
    tmp_path: Path,
) -> None:
    ok = outcome_of(write_doc(tmp_path, "fanout", [FANOUT]))
    failed = report.Outcome(
        "ledger",
        "Economy ledger",
        "python bench/ledger.py --no-kernel",
        status="failed",
        returncode=1,
        seconds=12.0,
        tail=["Traceback (most recent call last):", "RuntimeError: redis-server exited"],
    )
    missing = report.Outcome("scale", "Scale", "python bench/scale.py", status="missing")
    block = report.render_block([ok, failed, missing], run_info())
    assert "| `fanout` | ok |" in block
    assert "| `ledger` | **failed** (exit 1) | 12 s |" in block
    assert "| `scale` | missing |" in block
    ledger = block[block.index("(`bench/ledger.py`)") :]
    assert "```\nTraceback (most recent call last):\nRuntimeError: redis-server exited\n```" in (
        ledger
    )
    assert "Missing: bench/scale.py is not in this checkout" in block


def test_ratio_met_and_numbers_are_formatted(tmp_path: Path) -> None:
    doc = write_doc(
        tmp_path,
        "stores",
        [
            {
                "metric": "fan-out, Redis store",
                "unit": "tasks/s",
                "value": 1870.4,
                "peer": "bare echo",
                "peer_value": 6589.0,
                "goal": ">= 0.5x",
                "met": False,
            },
            {
                "metric": "Redis / Celery",
                "unit": "tasks/s",
                "value": 1870.0,
                "peer": "Celery chord",
                "peer_value": 312.0,
                "goal": ">= 5x",
                "met": True,
            },
            {"metric": "p50", "unit": "ms", "value": 0.81234, "note": "lower is better"},
            {"metric": "growth", "unit": "%", "value": 12.345},
        ],
    )
    block = report.render_block([outcome_of(doc)], run_info())
    assert table_row(block, "fan-out, Redis store") == [
        "fan-out, Redis store",
        "1,870 tasks/s",
        "bare echo",
        "6,589",
        "0.28x",
        ">= 0.5x",
        "no",
    ]
    assert table_row(block, "Redis / Celery")[4:] == ["5.99x", ">= 5x", "yes"]
    assert table_row(block, "p50")[1:] == ["0.812 ms", "", "", "", "", ""]
    assert table_row(block, "growth")[1] == "12.3%"
    assert "- p50: lower is better" in block
    assert [report.number(v) for v in (12345.6, 250.4, 12.34, 1.234, 0.0, None)] == [
        "12,346",
        "250",
        "12.3",
        "1.23",
        "0",
        "-",
    ]


def test_a_series_is_a_table_of_at_most_twelve_rows_first_and_last_kept(tmp_path: Path) -> None:
    series = [
        {"t": 10 * (i + 1), "rate": 20.0 + i, "rss_mib": {"registry-1": 90.0 + i / 10}}
        for i in range(100)
    ]
    doc = write_doc(tmp_path, "soak", [FANOUT], series=series)
    block = report.render_block([outcome_of(doc)], run_info())
    lines = block[block.index("Series (") :].splitlines()
    assert lines[2] == "| t | rate | rss_mib.registry-1 |"
    rows = [line for line in lines[4:] if line.startswith("| ")]
    assert 2 < len(rows) <= report.SERIES_ROWS
    assert rows[0].startswith("| 10 |") and rows[-1].startswith("| 1,000 |")
    assert "12 of 100 rows" in lines[0]
    short = report.series_table(series[:5])
    assert len([line for line in short if line.startswith("| ")]) == 1 + 5  # header + all


def test_from_json_through_the_cli(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    write_doc(docs, "fanout", [{**FANOUT, "peer": "echo", "peer_value": 1162.0}])
    write_doc(docs, "gateway", [{"metric": "GET, 16 in flight", "unit": "req/s", "value": 900}])
    failed = report.Outcome(
        "ledger", "Economy ledger", "python bench/ledger.py", "failed", 2, 3.0, ["boom"]
    )
    report.save_outcome(docs, failed)
    target = tmp_path / "B.md"
    target.write_text(INTRO)
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_report.py")]
        + ["--from-json", str(docs), "--output", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    text = target.read_text()
    block = text[text.index(report.BEGIN) : text.index(report.END)]
    # the standard order: fanout, ledger, gateway
    assert block.index("`fanout`") < block.index("`ledger`") < block.index("`gateway`")
    assert table_row(block, "fan-out")[4] == "0.50x"
    assert "| `ledger` | **failed** (exit 2) |" in block and "```\nboom\n```" in block
    assert "Rendered from the documents in" in block
    assert text.endswith(INTRO[INTRO.index("## Fan-out") - 1 :])


def fake_bench(root: Path, name: str, body: str, timeout_s: float = 30.0) -> Any:
    (root / "bench").mkdir(exist_ok=True)
    (root / "bench" / f"{name}.py").write_text(body)
    return report.Bench(name, f"The {name} bench", (), (), timeout_s, timeout_s)


WRITES_ITS_DOC = """
import json, sys
path = sys.argv[sys.argv.index("--json") + 1]
json.dump({"bench": "%s", "title": "t", "command": "c", "seconds": 0.1,
           "figures": [], "series": [], "notes": []}, open(path, "w"))
"""


def test_run_bench_reports_failure_timeout_and_a_missing_script(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    boom_body = "import sys\nprint('working')\nsys.exit('ValueError: no redis-server here')\n"
    boom = fake_bench(tmp_path, "boom", boom_body)
    failed = report.run_bench(boom, out, quick=False, root=tmp_path)
    assert failed.status == "failed" and failed.returncode == 1
    assert failed.tail == ["ValueError: no redis-server here"]

    slow = fake_bench(tmp_path, "slow", "import time\ntime.sleep(60)\n", timeout_s=1.0)
    timed_out = report.run_bench(slow, out, quick=True, root=tmp_path)
    assert timed_out.status == "timed out" and timed_out.seconds is not None
    assert timed_out.seconds < 30

    silent = fake_bench(tmp_path, "silent", "pass\n")
    no_doc = report.run_bench(silent, out, quick=False, root=tmp_path)
    assert no_doc.status == "failed" and "wrote no silent.json" in no_doc.tail[-1]

    good = fake_bench(tmp_path, "good", WRITES_ITS_DOC % "good")
    ok = report.run_bench(good, out, quick=False, root=tmp_path)
    assert ok.status == "ok" and ok.doc is not None and ok.doc["bench"] == "good"

    absent = report.Bench("soak", "Soak", ("--duration", "600"), (), 1.0, 1.0)
    missing = report.run_bench(absent, out, quick=False, root=tmp_path)
    assert missing.status == "missing" and missing.doc is None


def test_only_rejects_an_unknown_bench() -> None:
    with pytest.raises(SystemExit):
        report.parse_args(["--only", "fanout,nosuch"])
    assert report.parse_args(["--only", "gateway, grpc_streams"]).only == [
        "gateway",
        "grpc_streams",
    ]


def test_a_real_bench_writes_figures_with_their_peers(tmp_path: Path) -> None:
    path = tmp_path / "grpc_streams.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "grpc_streams.py"), "--messages", "640"]
        + ["--json", str(path)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(path.read_text())
    assert doc["bench"] == "grpc_streams"
    assert doc["command"] == "python bench/grpc_streams.py --messages 640"
    figures = doc["figures"]
    assert len(figures) >= 2
    for f in figures:
        assert f["peer"] and f["peer_value"] > 0 and f["value"] >= 0, f
        assert f["ratio"] == pytest.approx(f["value"] / f["peer_value"]), f
    block = report.render_block([outcome_of(path)], run_info())
    assert table_row(block, figures[0]["metric"])[4].endswith("x")
