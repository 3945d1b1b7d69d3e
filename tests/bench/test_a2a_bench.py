"""bench/a2a_vs_native.py runs end to end (a few calls) and writes its figures with
their peers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(150)


def test_the_a2a_bench_measures_the_three_modes(tmp_path: Path) -> None:
    path = tmp_path / "a2a_vs_native.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "a2a_vs_native.py"), "--calls", "20", "--rounds", "1"]
        + ["--concurrency", "1", "2", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=140,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(path.read_text())
    assert doc["bench"] == "a2a_vs_native"
    metrics = {f["metric"]: f for f in doc["figures"]}
    for c in (1, 2):
        ours = metrics[f"message/send to our A2A endpoint (same agent process), {c} in flight"]
        assert ours["value"] > 0 and ours["peer_value"] > 0 and ours["ratio"] > 0
        assert metrics[f"message/send to an a2a-sdk agent, {c} in flight"]["value"] > 0
        assert metrics[f"ExecuteTask over gRPC (meshwright agent), {c} in flight"]["value"] > 0
        assert f"our A2A endpoint vs the a2a-sdk agent, {c} in flight" in metrics
