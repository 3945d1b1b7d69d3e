"""bench/soak.py and bench/scale.py's shared helpers (bench/_cluster_load.py): the window,
percentile and RSS-growth arithmetic with exact values, and one smoke run of the soak
against a real cluster (redis-server, registry/economy/workflow replicas on the Consul
double, the gateway, two no-op agents) whose --json document is checked."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
if str(BENCH) not in sys.path:  # the bench scripts import their helpers from bench/
    sys.path.insert(0, str(BENCH))
load = importlib.import_module("_cluster_load")
soak = importlib.import_module("soak")
C = load.Completion

# -- the arithmetic ---------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    ten = [float(v) for v in (7, 3, 10, 1, 9, 2, 8, 4, 6, 5)]  # 1..10, unsorted
    assert load.percentile(ten, 50) == 5.0
    assert load.percentile(ten, 90) == 9.0
    assert load.percentile(ten, 99) == 10.0
    assert load.percentile(ten, 0) == 1.0
    assert load.percentile(ten, 25) == 3.0  # rank ceil(2.5) = 3, not rounded to 2
    assert load.percentile([float(v) for v in range(1, 8)], 90) == 7.0  # rank ceil(6.3)
    assert load.percentile([42.0], 99) == 42.0
    assert load.percentile([], 50) is None
    hundred = [float(v) for v in range(1, 101)]
    assert (load.percentile(hundred, 50), load.percentile(hundred, 99)) == (50.0, 99.0)


def test_window_stats_count_ends_in_the_half_open_window() -> None:
    done = [
        C(end_s=0.5, latency_s=0.1),
        C(end_s=1.0, latency_s=0.2),  # on the boundary: the first window's
        C(end_s=1.5, latency_s=0.3, ok=False),
        C(end_s=2.0, latency_s=0.4),
    ]
    first = load.window_stats(done, 0.0, 1.0)
    assert (first.completed, first.failed, first.p50_ms, first.p99_ms) == (2, 0, 100.0, 200.0)
    assert first.rate == 2.0
    second = load.window_stats(done, 1.0, 2.0)  # the failed one is counted, not timed
    assert (second.completed, second.failed, second.p50_ms, second.p99_ms) == (1, 1, 400.0, 400.0)
    rows = load.windows(done, 1.0, 2.5)
    assert [(w.start_s, w.end_s, w.completed) for w in rows] == [
        (0.0, 1.0, 2),
        (1.0, 2.0, 1),
        (2.0, 2.5, 0),
    ]
    assert rows[2].p99_ms is None
    with pytest.raises(ValueError):
        load.windows(done, 0.0, 1.0)


def test_p99_of_each_third_and_rss_growth() -> None:
    # 30 s after a warmup of 0: 10 ends a second of the third they fall in.
    done = [C(end_s=t + 0.5, latency_s=(1 + t // 10) / 10) for t in range(30)]
    assert load.split_p99(done, 0.0, 30.0, 3) == [100.0, 200.0, 300.0]
    assert load.split_p99(done, 10.0, 30.0, 2) == [200.0, 300.0]
    assert load.growth_pct(100.0, 110.0) == 10.0
    assert load.growth_pct(200.0, 150.0) == -25.0
    assert load.growth_pct(80.0, 80.0) == 0.0
    with pytest.raises(ValueError):
        load.growth_pct(0.0, 1.0)


def test_kinds_rss_and_the_warmup() -> None:
    assert [load.kind_of(n) for n in ("redis", "registry-1", "workflow-2", "agent-3")] == [
        "redis",
        "registry",
        "workflow",
        "agent",
    ]
    with pytest.raises(ValueError):
        load.kind_of("workflower-1")
    mine = load.read_rss_kib(os.getpid())
    assert isinstance(mine, int) and mine > 1024  # a Python with pytest is over 1 MiB
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert load.read_rss_kib(gone.pid) is None
    ns = argparse.Namespace
    assert soak.warmup_s(ns(warmup=30.0, window=10.0)) == 30.0
    assert soak.warmup_s(ns(warmup=25.0, window=10.0)) == 30.0  # whole windows
    assert soak.warmup_s(ns(warmup=0.0, window=10.0)) == 10.0  # at least the first
    assert soak.warmup_s(ns(warmup=2.0, window=2.0)) == 2.0


# -- a smoke run of the soak -------------------------------------------------------------------

KINDS = ("redis", "registry", "economy", "workflow", "gateway", "agent")


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@pytest.mark.timeout(100)
def test_a_tiny_soak_writes_its_figures_and_series(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    argv = [
        sys.executable, str(BENCH / "soak.py"),
        "--rate", "5", "--duration", "8", "--window", "2", "--warmup", "2",
        "--replicas", "1", "--agents", "2", "--dir", str(tmp_path / "cluster"),
        "--json", str(out),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWRIGHT_")}
    run = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "verdict:" in run.stdout, run.stdout
    doc = json.loads(out.read_text())
    assert doc["bench"] == "soak"
    assert "--json" not in doc["command"] and "--rate 5" in doc["command"]

    figures = {f["metric"]: f for f in doc["figures"]}
    assert all(_number(f["value"]) for f in doc["figures"]), doc["figures"]
    assert figures["rate held (open loop, after the warmup)"]["peer_value"] == 5.0
    assert figures["workflows completed (after the warmup)"]["value"] > 0
    p99 = figures["p99 latency, last third of the run"]
    assert p99["value"] > 0 and p99["peer_value"] > 0
    assert p99["goal"] == "<= 1.5x" and isinstance(p99["met"], bool)
    assert figures["p50 latency (after the warmup)"]["value"] > 0

    series = doc["series"]
    assert [row["t"] for row in series] == [2.0, 4.0, 6.0, 8.0]
    names = set(series[0]["rss_mib"])
    assert {load.kind_of(n) for n in names} == set(KINDS), names
    assert sum(1 for n in names if n.startswith("agent-")) == 2
    for row in series:
        assert set(row["rss_mib"]) == names, row
        assert all(_number(v) and v > 1 for v in row["rss_mib"].values()), row
    assert sum(row["completed"] for row in series) > 0
    assert all(row["p99_ms"] > 0 for row in series if row["completed"]), series
    assert any(row["completed"] for row in series[1:])  # load after the warmup too
    for name in names:  # a growth figure for every process, judged against the goal
        growth = figures[f"RSS growth, {name}"]
        assert _number(growth["value"]) and growth["goal"] == "< 10%", growth
        assert isinstance(growth["met"], bool)
