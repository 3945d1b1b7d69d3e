"""`make bench`: run every bench/ script, one after another, and rewrite BENCHMARKS.md's report.

Each bench runs with its standard arguments (the commands BENCHMARKS.md states) and
``--json <dir>/<name>.json`` (bench/_results.py: its figures, each beside its peer
measured in the same run), under a timeout, its output passed through as it comes.
A bench that fails or times out is reported as such with the last lines of its
stderr, and the others still run; a script that is not in this checkout is reported
as missing. Then the report, with the date, the commit, the machine, the total time
and the command, replaces what lies between the lines

    <!-- make bench: begin -->
    <!-- make bench: end -->

of BENCHMARKS.md (placed after its intro paragraph the first time); everything else
in the file stays as it is.

    python scripts/bench_report.py                     # every bench, full size (~30 min)
    python scripts/bench_report.py --quick             # small sizes (a few minutes)
    python scripts/bench_report.py --only gateway,grpc_streams
    python scripts/bench_report.py --from-json DIR     # render documents, run nothing
    python scripts/bench_report.py --list              # the bench set and its commands

``--json-dir DIR`` keeps the documents (and each bench's status) for a later
``--from-json DIR``; ``--output PATH`` writes another file than BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- make bench: begin -->"
END = "<!-- make bench: end -->"
TAIL_LINES = 15
"""Lines of a failed bench's stderr the report keeps."""
SERIES_ROWS = 12
"""At most this many rows of a document's series in the report."""
RUN_FILE = "_run.json"
STATUS_SUFFIX = ".status.json"


@dataclass(frozen=True, slots=True)
class Bench:
    """One bench of the standard set."""

    name: str
    """The script's stem (bench/<name>.py), the document's ``bench``."""
    title: str
    """The section's title when the script wrote no document."""
    args: tuple[str, ...]
    """Standard arguments (BENCHMARKS.md's commands)."""
    quick: tuple[str, ...]
    """``--quick``: small sizes, seconds to a minute or two."""
    timeout_s: float
    quick_timeout_s: float

    @property
    def script(self) -> str:
        return f"bench/{self.name}.py"

    def argv(self, quick: bool) -> list[str]:
        return [self.script, *(self.quick if quick else self.args)]


BENCHES: tuple[Bench, ...] = (
    Bench(
        "fanout",
        "Fan-out DAG on the embedded engine",
        ("--tasks", "2000", "--agents", "2", "--runs", "3"),
        ("--tasks", "200", "--agents", "2", "--runs", "1"),
        600,
        180,
    ),
    Bench(
        "auth",
        "Auth on vs off, one run",
        ("--calls", "2000", "--rounds", "3"),
        ("--calls", "300", "--rounds", "1"),
        900,
        180,
    ),
    Bench(
        "stores",
        "Workflow stores side by side",
        (),  # --tasks 2000 --runs 3 --samples 300
        ("--tasks", "200", "--runs", "1", "--samples", "30"),
        1200,
        300,
    ),
    Bench(
        "ledger",
        "Economy Transfer over gRPC vs a bare echo",
        ("--no-kernel",),  # the kernel is a bench of its own below
        ("--transfers", "800", "--rounds", "1", "--no-kernel"),
        600,
        180,
    ),
    Bench(
        "ledger_kernel",
        "Ledger kernel on Redis vs a bare Lua transfer",
        (),  # --transfers 5000 --rounds 5 --concurrency 50
        ("--transfers", "1000", "--rounds", "1"),
        600,
        120,
    ),
    Bench(
        "registry",
        "Registry discovery under heartbeat load",
        ("--backend", "memory"),  # 10,000 agents, stream and unary heartbeats
        ("--backend", "memory", "--agents", "1000", "--duration", "5", "--idle", "2")
        + ("--echo-calls", "1000"),
        1200,
        300,
    ),
    Bench(
        "grpc_streams",
        "A message on a stream vs a unary call",
        (),  # 20,000 of each
        ("--messages", "2000"),
        300,
        120,
    ),
    Bench(
        "tracing",
        "Tracing and metrics: on vs off vs bare",
        ("--rounds", "6"),
        ("--quick",),
        2400,
        300,
    ),
    Bench(
        "agent_echo",
        "One agent's ExecuteTask, free echo skill",
        (),
        (),  # 2,000 calls, fixed: about ten seconds
        300,
        120,
    ),
    Bench(
        "gateway",
        "Direct gRPC vs the REST gateway",
        (),  # --calls 2000 --transfers 1000 --rounds 3 --concurrency 1 16
        ("--calls", "300", "--transfers", "100", "--rounds", "1"),
        600,
        120,
    ),
    Bench(
        "a2a_vs_native",
        "A2A: native vs our A2A endpoint vs an a2a-sdk agent",
        (),  # --calls 1000 --rounds 3 --concurrency 1 16
        ("--calls", "100", "--rounds", "1"),
        600,
        120,
    ),
    Bench(
        "soak",
        "Soak: a cluster held at half its throughput",
        ("--duration", "600"),
        ("--duration", "60", "--probe", "10"),
        1200,
        300,
    ),
    Bench(
        "scale",
        "How it scales: 1 vs 2 workflow replicas",
        (),  # --k 16 32 --duration 20 --rounds 2
        ("--quick",),
        1800,
        300,
    ),
)
BY_NAME = {b.name: b for b in BENCHES}


# -- running ----------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """What became of one bench: its status and, if it wrote one, its document."""

    bench: str
    title: str
    command: str
    status: str = "ok"
    """ok, failed, timed out or missing."""
    returncode: int | None = None
    seconds: float | None = None
    tail: list[str] = field(default_factory=list)
    """The last lines of its stderr (of its stdout when stderr had none), if it failed."""
    doc: dict[str, Any] | None = None

    def status_record(self) -> dict[str, Any]:
        record = asdict(self)
        del record["doc"]
        return record


def shown_command(argv: Sequence[str]) -> str:
    return shlex.join(["python", *argv])


def _pump(stream: TextIO, echo: TextIO, keep: collections.deque[str]) -> None:
    for line in iter(stream.readline, ""):
        echo.write(line)
        echo.flush()
        keep.append(line.rstrip("\n"))


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the bench's process group, a bounded wait, then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_bench(bench: Bench, json_dir: Path, *, quick: bool, root: Path = ROOT) -> Outcome:
    """Run one bench to its end (or its timeout); its outcome and document."""
    argv = bench.argv(quick)
    outcome = Outcome(bench.name, bench.title, shown_command(argv))
    if not (root / bench.script).exists():
        outcome.status = "missing"
        return outcome
    doc_path = json_dir / f"{bench.name}.json"
    doc_path.unlink(missing_ok=True)
    timeout = bench.quick_timeout_s if quick else bench.timeout_s
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, *argv, "--json", str(doc_path)],
        cwd=root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # its children too stop with it on a timeout
    )
    assert proc.stdout is not None and proc.stderr is not None
    out_tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    err_tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, sys.stdout, out_tail), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, sys.stderr, err_tail), daemon=True),
    ]
    for t in pumps:
        t.start()
    try:
        outcome.returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        outcome.status = "timed out"
        _stop_group(proc)
    except BaseException:  # Ctrl-C: leave nothing running
        _stop_group(proc)
        raise
    for t in pumps:
        t.join(timeout=5)  # a grandchild in a session of its own may hold a pipe open
    outcome.seconds = round(time.monotonic() - t0, 1)
    if outcome.status == "ok" and outcome.returncode != 0:
        outcome.status = "failed"
    if doc_path.exists():
        try:
            outcome.doc = json.loads(doc_path.read_text())
        except ValueError as err:
            outcome.status = "failed"
            err_tail.append(f"(bench_report: its document does not parse: {err})")
    elif outcome.status == "ok":
        outcome.status = "failed"
        err_tail.append(f"(bench_report: it exited 0 but wrote no {doc_path.name})")
    if outcome.status != "ok":
        outcome.tail = list(err_tail or out_tail)
    return outcome


# -- where and on what ------------------------------------------------------------------


@dataclass(slots=True)
class RunInfo:
    """The report's header: when, at which commit, on what, how long, by which command."""

    date: str
    commit: str
    machine: str
    seconds: float
    command: str
    note: str = ""


def machine() -> str:
    """CPU model, cores, RAM, kernel, Python."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    ram = ""
    try:
        found = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        if found:
            ram = f", {int(found.group(1)) / 2**20:.1f} GiB RAM"
    except OSError:
        pass
    return (
        f"{model or platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores{ram}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def git_commit(root: Path = ROOT) -> str:
    """The short commit, and "+ changes" if tracked files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout?)"
    return f"{commit} + changes" if dirty else commit


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def invocation(argv: Sequence[str]) -> str:
    """The command as typed: ``make bench`` (or bench-quick) when make ran it."""
    command = shlex.join(["python", "scripts/bench_report.py", *argv])
    if os.environ.get("MAKELEVEL"):
        target = "bench-quick" if "--quick" in argv else "bench"
        return f"`make {target}` (`{command}`)"
    return f"`{command}`"


# -- rendering --------------------------------------------------------------------------


def number(value: Any) -> str:
    """A figure for a reader: thousands separators, precision by size."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        return "-"
    a = abs(v)
    if a >= 1000 or (v.is_integer() and a < 1e15):
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def with_unit(value: Any, unit: str) -> str:
    text = number(value)
    if not unit or text == "-":
        return text
    return f"{text}{unit}" if unit in ("%", "x") else f"{text} {unit}"


def ratio_text(ratio: Any) -> str:
    if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not math.isfinite(ratio):
        return ""
    return f"{ratio:.2f}x" if abs(ratio) >= 0.01 else f"{ratio:.3g}x"


def met_text(met: Any) -> str:
    return "yes" if met is True else "no" if met is False else ""


def cell(text: Any) -> str:
    """Table-safe: no pipe or newline breaks the row."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def figures_table(figures: Iterable[dict[str, Any]]) -> list[str]:
    lines = [
        "| metric | value | peer | peer value | ratio | goal | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        unit = str(f.get("unit") or "")
        row = [
            f.get("metric", ""),
            with_unit(f.get("value"), unit),
            f.get("peer") or "",
            number(f["peer_value"]) if f.get("peer_value") is not None else "",
            ratio_text(f.get("ratio")),
            f.get("goal") or "",
            met_text(f.get("met")),
        ]
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    return lines


def flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``outer.inner`` columns."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def sample_rows(n: int, cap: int = SERIES_ROWS) -> list[int]:
    """Indices of at most ``cap`` of ``n`` rows: the first, every k-th, the last."""
    if n <= cap:
        return list(range(n))
    step = math.ceil((n - 1) / (cap - 1))
    picked = list(range(0, n, step))
    if picked[-1] != n - 1:
        picked.append(n - 1)
    return picked


def figure_notes(figures: Iterable[dict[str, Any]]) -> list[str]:
    """Each figure's note after its metric; one line for the figures a note is shared by."""
    by_note: dict[str, list[str]] = {}
    for f in figures:
        if f.get("note"):
            by_note.setdefault(str(f["note"]), []).append(str(f.get("metric", "")))
    return [f"{'; '.join(metrics)}: {note}" for note, metrics in by_note.items()]


def series_table(series: list[dict[str, Any]], cap: int = SERIES_ROWS) -> list[str]:
    rows = [flatten(r) for r in series if isinstance(r, dict)]
    if not rows:
        return []
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    picked = sample_rows(len(rows), cap)
    shown = (
        f"all {len(rows)} rows"
        if len(picked) == len(rows)
        else f"{len(picked)} of {len(rows)} rows: the first, every"
        f" {picked[1] - picked[0]}th and the last"
    )
    lines = [f"Series ({shown}):", "", "| " + " | ".join(cell(c) for c in columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    for i in picked:
        lines.append("| " + " | ".join(cell(number(rows[i].get(c))) for c in columns) + " |")
    return lines


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, s = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {s} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def status_text(o: Outcome) -> str:
    if o.status == "ok":
        return "ok"
    if o.status == "missing":
        return "missing"
    if o.status == "timed out":
        return f"**timed out** after {seconds_text(o.seconds)}"
    code = "" if o.returncode is None else f" (exit {o.returncode})"
    return f"**failed**{code}"


def section(o: Outcome) -> list[str]:
    doc = o.doc or {}
    title = doc.get("title") or o.title
    script = f"bench/{o.bench}.py"
    lines = [f"### {title} (`{script}`)", ""]
    command = doc.get("command") or o.command
    took = doc.get("seconds", o.seconds)
    lines += [f"`{command}`" + (f" ({seconds_text(took)})" if took is not None else ""), ""]
    if o.status == "missing":
        return lines + [f"Missing: {script} is not in this checkout; nothing ran.", ""]
    if o.status != "ok":
        lines.append(f"This bench {status_text(o)}.")
        if o.tail:
            lines += ["The last lines of its stderr:", "", "```", *o.tail, "```"]
        lines.append("")
    figures = doc.get("figures") or []
    if figures:
        if o.status != "ok":
            lines += ["What it wrote before it ended:", ""]
        lines += figures_table(figures)
        lines.append("")
    elif o.status == "ok":
        lines += ["(no figures in its document)", ""]
    notes = figure_notes(figures) + [str(n) for n in doc.get("notes") or []]
    if notes:
        lines += [f"- {n}" for n in notes] + [""]
    series = doc.get("series") or []
    if series:
        lines += series_table(series) + [""]
    return lines


def render_block(outcomes: Sequence[Outcome], run: RunInfo) -> str:
    """The report, markers included (no newline after the end marker)."""
    lines = [
        BEGIN,
        "## Report of `make bench`",
        "",
        f"Written by {run.command} on {run.date} at commit {run.commit}, in "
        f"{seconds_text(run.seconds)}. Machine: {run.machine}.",
        "",
    ]
    if run.note:
        lines += [run.note, ""]
    lines += [
        "Every figure stands beside its peer measured in the same run of the same script"
        " (ratio = value / peer value): compare the ratios, not figures across runs. This"
        " block is rewritten by each `make bench`; the sections after it keep earlier"
        " sessions' figures and their analysis.",
        "",
        "| bench | status | time |",
        "|---|---|---|",
    ]
    for o in outcomes:
        took = (o.doc or {}).get("seconds", o.seconds)
        lines.append(f"| `{o.bench}` | {status_text(o)} | {seconds_text(took)} |")
    lines.append("")
    for o in outcomes:
        lines += section(o)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join([*lines, END])


def place_block(text: str, block: str) -> str:
    """``text`` with the report between its markers, or placed after the intro paragraph
    (the first paragraph under the title) when it has none; nothing else changes."""
    begin, end = text.find(BEGIN), text.find(END)
    if begin != -1 and end > begin:
        return text[:begin] + block + text[end + len(END) :]
    if begin != -1 or end != -1:
        raise ValueError(f"the file has one of {BEGIN!r} and {END!r} without the other")
    if not text.strip():
        return f"# Benchmarks\n\n{block}\n"
    lines = text.splitlines(keepends=True)
    i = next((k for k, line in enumerate(lines) if line.startswith("# ")), None)
    if i is None:
        return f"{block}\n\n{text}"
    i += 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    while i < len(lines) and lines[i].strip() and not lines[i].startswith("#"):
        i += 1  # the intro paragraph
    head = "".join(lines[:i])
    if not head.endswith("\n"):
        head += "\n"
    return f"{head}\n{block}\n{''.join(lines[i:])}"


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(path: Path, outcomes: Sequence[Outcome], run: RunInfo) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    write_atomically(path, place_block(text, render_block(outcomes, run)))


# -- documents on disk ------------------------------------------------------------------


def save_outcome(json_dir: Path, o: Outcome) -> None:
    (json_dir / f"{o.bench}{STATUS_SUFFIX}").write_text(
        json.dumps(o.status_record(), indent=2) + "\n"
    )


def load_outcomes(json_dir: Path) -> list[Outcome]:
    """The outcomes a run left in ``json_dir``: each document, with its status if saved
    beside it (a document alone counts as ok); in the standard order, others after."""
    found: dict[str, Outcome] = {}
    for path in sorted(json_dir.glob(f"*{STATUS_SUFFIX}")):
        record = json.loads(path.read_text())
        known = {k: record[k] for k in Outcome.__dataclass_fields__ if k in record and k != "doc"}
        found[record["bench"]] = Outcome(**known)
    for path in sorted(json_dir.glob("*.json")):
        if path.name.endswith(STATUS_SUFFIX) or path.name == RUN_FILE:
            continue
        doc = json.loads(path.read_text())
        name = str(doc.get("bench") or path.stem)
        bench = BY_NAME.get(name)
        o = found.get(name) or Outcome(
            name,
            bench.title if bench else str(doc.get("title") or name),
            str(doc.get("command") or ""),
        )
        o.doc = doc
        found[name] = o
    order = {b.name: i for i, b in enumerate(BENCHES)}
    return sorted(found.values(), key=lambda o: (order.get(o.bench, len(order)), o.bench))


# -- the command ------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="small sizes for every bench")
    p.add_argument("--only", help="comma-separated bench names (see --list)")
    p.add_argument("--from-json", metavar="DIR", help="render the documents in DIR, run nothing")
    p.add_argument(
        "--json-dir", metavar="DIR", help="keep the documents here (default: a temp dir)"
    )
    p.add_argument(
        "--output", metavar="PATH", default=str(ROOT / "BENCHMARKS.md"), help="BENCHMARKS.md"
    )
    p.add_argument("--list", action="store_true", help="print the bench set and exit")
    args = p.parse_args(argv)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BY_NAME]
        if unknown or not names:
            p.error(
                f"--only: unknown {', '.join(unknown) or '(none named)'}; know {', '.join(BY_NAME)}"
            )
        args.only = names
    if args.from_json and (args.quick or args.json_dir):
        p.error("--from-json runs nothing: --quick and --json-dir do not apply")
    return args


def render_from_json(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``--from-json DIR``: the report of the documents in DIR; nothing runs."""
    json_dir = Path(args.from_json)
    if not json_dir.is_dir():
        print(f"--from-json: {json_dir} is not a directory", file=sys.stderr)
        return 2
    outcomes = load_outcomes(json_dir)
    if args.only:
        outcomes = [o for o in outcomes if o.bench in args.only]
    run_file = json_dir / RUN_FILE
    if run_file.exists():  # a run kept with --json-dir: its own header
        run = RunInfo(**json.loads(run_file.read_text()))
    else:
        run = RunInfo(
            date=utc_now(),
            commit=git_commit(),
            machine=machine(),
            seconds=sum(float((o.doc or {}).get("seconds") or 0) for o in outcomes),
            command=invocation(argv),
            note=f"Rendered from the documents in {json_dir}: the date, commit and machine"
            " are the rendering's, the total time the benches' own.",
        )
    write_report(Path(args.output), outcomes, run)
    print(f"wrote {args.output} ({len(outcomes)} benches from {json_dir})")
    return 0


def run_all(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run the benches one after another, then write the report; 1 if any failed."""
    benches = [BY_NAME[n] for n in args.only] if args.only else list(BENCHES)
    said: list[str] = []
    if args.quick:
        said.append(
            "Quick sizes (`--quick`): a smoke run; its figures are not the standard"
            " commands' and compare only with each other."
        )
    if args.only:
        said.append(f"Only {', '.join(args.only)} ran (`--only`).")
    run = RunInfo(
        date=utc_now(),
        commit=git_commit(),
        machine=machine(),
        seconds=0.0,
        command=invocation(argv),
        note=" ".join(said),
    )
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="meshwright-bench-report-") as tmp:
        json_dir = Path(args.json_dir or tmp)
        json_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        for k, bench in enumerate(benches, 1):
            command = shown_command(bench.argv(args.quick))
            print(f"\n== [{k}/{len(benches)}] {bench.name}: {command}", flush=True)
            o = run_bench(bench, json_dir, quick=args.quick)
            outcomes.append(o)
            save_outcome(json_dir, o)
            print(f"== {bench.name}: {o.status} ({seconds_text(o.seconds)})", flush=True)
        run.seconds = round(time.monotonic() - t0, 1)
        (json_dir / RUN_FILE).write_text(json.dumps(asdict(run), indent=2) + "\n")
    write_report(Path(args.output), outcomes, run)
    print(f"\nwrote {args.output}: " + ", ".join(f"{o.bench} {o.status}" for o in outcomes))
    return 1 if any(o.status in ("failed", "timed out") for o in outcomes) else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.list:
        for b in BENCHES:
            print(f"{b.name:14} {shown_command(b.argv(False))}")
            print(f"{'':14} --quick: {shown_command(b.argv(True))}")
        return 0
    if args.from_json:
        return render_from_json(args, argv)
    return run_all(args, argv)


if __name__ == "__main__":
    sys.exit(main())
