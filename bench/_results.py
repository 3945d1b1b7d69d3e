"""What a bench script hands `make bench`: its figures as JSON, each beside its peer.

Every bench/ script takes ``--json PATH``; when given, it writes one document:

    {
      "bench": "fanout",                      # the script's stem
      "title": "Fan-out DAG on the embedded engine",
      "command": "python bench/fanout.py --tasks 2000 --agents 2 --runs 3",
      "seconds": 41.2,                        # how long the script ran
      "figures": [
        {"metric": "2,000-task fan-out", "unit": "tasks/s", "value": 581.0,
         "peer": "bare gRPC echo, same calls", "peer_value": 1290.0,
         "ratio": 0.45, "goal": ">= 0.4", "met": true, "note": "..."},
        ...
      ],
      "series": [...],                        # optional: figures over time (the soak)
      "notes": ["..."]                        # optional: lines worth keeping
    }

``ratio`` is value / peer_value (computed here when both are given); ``goal`` and
``met`` are optional. scripts/bench_report.py renders these documents into
BENCHMARKS.md.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_STARTED = time.monotonic()


@dataclass(slots=True, kw_only=True)
class Figure:
    """One measured figure, and the peer it is measured against in the same run."""

    metric: str
    unit: str
    value: float
    peer: str = ""
    peer_value: float | None = None
    ratio: float | None = None
    """value / peer_value unless given (e.g. when lower is better and the ratio is inverted)."""
    goal: str = ""
    met: bool | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.ratio is None and self.peer_value:
            self.ratio = self.value / self.peer_value


@dataclass(slots=True, kw_only=True)
class Results:
    bench: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    series: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, metric: str, unit: str, value: float, **kw: Any) -> Figure:
        fig = Figure(metric=metric, unit=unit, value=float(value), **kw)
        self.figures.append(fig)
        return fig

    def write(self, path: str | Path | None, argv: Sequence[str] | None = None) -> None:
        """Write the document to ``path`` (nothing when None)."""
        if not path:
            return
        argv = list(sys.argv if argv is None else argv)
        script = Path(argv[0])
        shown = [f"bench/{script.name}" if script.parent.name == "bench" else argv[0]]
        rest = list(argv[1:])
        if "--json" in rest:  # the command as a reader would rerun it
            i = rest.index("--json")
            del rest[i : i + 2]
        rest = [a for a in rest if not a.startswith("--json=")]
        doc = {
            "bench": self.bench,
            "title": self.title,
            "command": shlex.join(["python", *shown, *rest]),
            "seconds": round(time.monotonic() - _STARTED, 1),
            "figures": [asdict(f) for f in self.figures],
            "series": self.series,
            "notes": self.notes,
        }
        Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def add_json_flag(parser: Any) -> None:
    """``--json PATH`` on a bench's argparse parser."""
    parser.add_argument(
        "--json", metavar="PATH", help="also write the figures as JSON (for `make bench`)"
    )
