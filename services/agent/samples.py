"""Sample agents that do real work; serve one with
``python -m meshwright.agent run meshwright.agent.samples:sysinfo_agent --registry HOST:PORT``.

- ``sysinfo_agent`` ("sysinfo"): ``system.snapshot`` — load, CPUs, memory,
  disk of "/", uptime and hostname of the machine it runs on.
- ``analyst_agent`` ("analyst"): turns snapshots into verdicts and reports
  (``metrics.load``, ``metrics.memory``, ``report.compose``), small text
  skills (``text.wordcount``, ``text.upper``) and two demo skills for
  cancellation and retries (``demo.sleep``, ``demo.fail``). Skills that need
  a snapshot take one themselves when no upstream task provided it.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any

from meshwright.agent import _system
from meshwright.agent.agent import Agent
from meshwright.agent.context import TaskContext
from meshwright.agent.errors import TaskRejected

VERDICTS = ("ok", "busy", "overloaded")
"""Verdicts from best to worst, shared by every metric."""

MAX_SLEEP_S = 30.0
"""Longest ``demo.sleep``."""

sysinfo_agent = Agent(
    "sysinfo",
    description="Reports the vital signs of the machine it runs on.",
    version="1.0.0",
    capacity=16,
    tags=["system"],
)


@sysinfo_agent.skill(
    "system.snapshot",
    name="System snapshot",
    description="Load averages, CPU count, memory, disk usage of '/', uptime and hostname.",
    price=3,
    tags=["system", "metrics"],
    examples=["{}"],
)
def system_snapshot(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return _system.snapshot()


analyst_agent = Agent(
    "analyst",
    description="Judges system snapshots, composes reports, and handles small text jobs.",
    version="1.0.0",
    capacity=16,
    tags=["metrics", "text", "demo"],
)


async def _snapshots(input: dict[str, Any], ctx: TaskContext) -> list[dict[str, Any]]:
    """Snapshots from the input or upstream tasks, else a fresh one of this machine."""
    if _system.is_snapshot(input.get("snapshot")):
        return [input["snapshot"]]
    found = [ctx.upstream[k] for k in sorted(ctx.upstream) if _system.is_snapshot(ctx.upstream[k])]
    return found or [await asyncio.to_thread(_system.snapshot)]


def _thresholds(input: dict[str, Any], busy: float, overloaded: float) -> tuple[float, float]:
    try:
        busy_at = float(input.get("busy_at", busy))
        overloaded_at = float(input.get("overloaded_at", overloaded))
    except (TypeError, ValueError):
        raise TaskRejected("busy_at and overloaded_at must be numbers") from None
    if not 0 < busy_at <= overloaded_at:
        raise TaskRejected("need 0 < busy_at <= overloaded_at")
    return busy_at, overloaded_at


def _verdict(value: float, busy_at: float, overloaded_at: float) -> str:
    if value >= overloaded_at:
        return "overloaded"
    return "busy" if value >= busy_at else "ok"


def _worst(verdicts: list[str]) -> str:
    return max(verdicts, key=VERDICTS.index, default="ok")


def _load_metrics(
    snaps: list[dict[str, Any]], busy_at: float, overloaded_at: float
) -> dict[str, Any]:
    hosts = []
    for snap in snaps:
        cpus = max(1, int(snap.get("cpu_count") or 1))
        load = snap.get("load") or {}
        one = float(load.get("1m", 0.0))
        per_core = round(one / cpus, 3)
        hosts.append(
            {
                "hostname": snap.get("hostname", ""),
                "cpu_count": cpus,
                "load_1m": one,
                "load_5m": float(load.get("5m", 0.0)),
                "load_per_core": per_core,
                "verdict": _verdict(per_core, busy_at, overloaded_at),
            }
        )
    worst = max(hosts, key=lambda h: h["load_per_core"])
    return {
        "kind": "metrics.load",
        "verdict": _worst([h["verdict"] for h in hosts]),
        "load_per_core": worst["load_per_core"],
        "thresholds": {"busy_at": busy_at, "overloaded_at": overloaded_at},
        "hosts": hosts,
    }


def _memory_metrics(
    snaps: list[dict[str, Any]], busy_at: float, overloaded_at: float
) -> dict[str, Any]:
    hosts = []
    for snap in snaps:
        mem = snap.get("memory") or {}
        total = float(mem.get("total_bytes") or 0)
        available = float(mem.get("available_bytes") or 0)
        used_percent = round(100.0 * (total - available) / total, 2) if total else 0.0
        hosts.append(
            {
                "hostname": snap.get("hostname", ""),
                "total_bytes": total,
                "available_bytes": available,
                "used_percent": used_percent,
                "verdict": _verdict(used_percent, busy_at, overloaded_at),
            }
        )
    worst = max(hosts, key=lambda h: h["used_percent"])
    return {
        "kind": "metrics.memory",
        "verdict": _worst([h["verdict"] for h in hosts]),
        "used_percent": worst["used_percent"],
        "thresholds": {"busy_at": busy_at, "overloaded_at": overloaded_at},
        "hosts": hosts,
    }


@analyst_agent.skill(
    "metrics.load",
    name="Load verdict",
    description="Load per core from upstream snapshots (or a fresh one) and a verdict "
    "ok/busy/overloaded. Input: optional busy_at (0.7) and overloaded_at (1.0).",
    price=2,
    tags=["metrics", "system"],
)
async def metrics_load(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    busy_at, overloaded_at = _thresholds(input, 0.7, 1.0)
    return _load_metrics(await _snapshots(input, ctx), busy_at, overloaded_at)


@analyst_agent.skill(
    "metrics.memory",
    name="Memory verdict",
    description="Memory used % from upstream snapshots (or a fresh one) and a verdict "
    "ok/busy/overloaded. Input: optional busy_at (75) and overloaded_at (90) percent.",
    price=2,
    tags=["metrics", "system"],
)
async def metrics_memory(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    busy_at, overloaded_at = _thresholds(input, 75.0, 90.0)
    return _memory_metrics(await _snapshots(input, ctx), busy_at, overloaded_at)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    return f"{days} d {hours} h" if days else f"{hours} h {s // 60} min"


def _snapshot_md(snap: dict[str, Any]) -> list[str]:
    load = snap.get("load") or {}
    mem = snap.get("memory") or {}
    disk = snap.get("disk") or {}
    return [
        "| metric | value |",
        "|---|---|",
        f"| host | {snap.get('hostname', '')} |",
        f"| CPUs | {snap.get('cpu_count', '?')} |",
        f"| load 1m / 5m / 15m | {load.get('1m', 0)} / {load.get('5m', 0)} / "
        f"{load.get('15m', 0)} |",
        f"| memory used | {mem.get('used_percent', 0)} % of {_size(mem.get('total_bytes', 0))} |",
        f"| disk {disk.get('path', '/')} used | {disk.get('used_percent', 0)} % of "
        f"{_size(disk.get('total_bytes', 0))} |",
        f"| uptime | {_duration(snap.get('uptime_s'))} |",
    ]


def _metrics_md(data: dict[str, Any]) -> list[str]:
    lines = [f"- verdict: **{data.get('verdict', '?')}**"]
    for host in data.get("hosts") or []:
        if "load_per_core" in host:
            detail = (
                f"load per core {host['load_per_core']} "
                f"({host.get('load_1m')} on {host.get('cpu_count')} CPUs)"
            )
        else:
            detail = (
                f"memory used {host.get('used_percent')} % of {_size(host.get('total_bytes') or 0)}"
            )
        lines.append(f"- {host.get('hostname') or 'host'}: {detail} → {host.get('verdict')}")
    return lines


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(data, dict):
        out: list[tuple[str, Any]] = []
        for k in sorted(data):
            out.extend(_flatten(data[k], f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(data, list) and len(data) > 10:
        return [(prefix, f"[{len(data)} items]")]
    return [(prefix, data)]


def _generic_md(data: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in _flatten(data)[:50]:
        text = str(value)
        lines.append(f"- {key}: {text if len(text) <= 200 else text[:197] + '...'}")
    return lines or ["- (empty)"]


@analyst_agent.skill(
    "report.compose",
    name="Compose report",
    description="Merges every upstream output into a markdown report and a summary with the "
    "worst verdict. Input: optional title. Alone, it reports on a fresh snapshot.",
    price=5,
    tags=["report", "metrics"],
)
async def report_compose(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    title = str(input.get("title") or "System report")
    sections: dict[str, dict[str, Any]] = {k: ctx.upstream[k] for k in sorted(ctx.upstream)}
    if not sections:
        sections["snapshot"] = await asyncio.to_thread(_system.snapshot)
    kinds = {k: str(v.get("kind", "")) for k, v in sections.items()}
    snaps = [v for v in sections.values() if _system.is_snapshot(v)]
    # Verdicts the upstream did not compute are derived here, so a report on a bare
    # snapshot still says whether the machine is fine.
    for kind, derive, limits in (
        ("metrics.load", _load_metrics, (0.7, 1.0)),
        ("metrics.memory", _memory_metrics, (75.0, 90.0)),
    ):
        if snaps and kind not in kinds.values():
            key = kind.partition(".")[2]
            key = key if key not in sections else f"derived-{key}"
            sections[key] = derive(snaps, *limits)
            kinds[key] = kind
    verdicts = {k: str(v["verdict"]) for k, v in sections.items() if v.get("verdict") in VERDICTS}
    overall = _worst(list(verdicts.values()))
    hosts = {str(s.get("hostname", "")) for s in snaps}
    for key, data in sections.items():
        if kinds[key].startswith("metrics."):
            hosts.update(str(h.get("hostname", "")) for h in data.get("hosts") or [])
    hosts.discard("")
    body: list[str] = [
        f"# {title}",
        "",
        f"**Overall: {overall.upper()}** — {len(sections)} sections"
        + (f", hosts: {', '.join(sorted(hosts))}" if hosts else ""),
        "",
    ]
    for key, data in sections.items():
        kind = kinds[key]
        body += [f"## {key}" + (f" ({kind})" if kind else ""), ""]
        if _system.is_snapshot(data):
            body += _snapshot_md(data)
        elif kind.startswith("metrics."):
            body += _metrics_md(data)
        else:
            body += _generic_md(data)
        body.append("")
    markdown = "\n".join(body)
    summary = {
        "title": title,
        "verdict": overall,
        "verdicts": verdicts,
        "sections": list(sections),
        "hosts": sorted(hosts),
    }
    await ctx.artifact("report.md", {"markdown": markdown})
    return {"kind": "report", "markdown": markdown, "summary": summary}


def _text(input: dict[str, Any], ctx: TaskContext) -> str:
    """``input.text``, else the text (or markdown) of upstream outputs."""
    text = input.get("text")
    if text is None:
        parts = [
            str(out.get("text", out.get("markdown")))
            for _, out in sorted(ctx.upstream.items())
            if isinstance(out.get("text", out.get("markdown")), str)
        ]
        text = "\n".join(parts) if parts else None
    if not isinstance(text, str):
        raise TaskRejected("input.text (a string) is required")
    return text


_WORD = re.compile(r"[\w'-]+")


@analyst_agent.skill(
    "text.wordcount",
    name="Word count",
    description="Counts words, lines and characters of input.text (or upstream text), "
    "with the five most common words.",
    price=1,
    tags=["text"],
    examples=['{"text": "to be or not to be"}'],
)
async def text_wordcount(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    text = _text(input, ctx)
    words = _WORD.findall(text.lower())
    return {
        "words": len(text.split()),
        "lines": len(text.splitlines()),
        "characters": len(text),
        "top_words": [[w, n] for w, n in Counter(words).most_common(5)],
    }


@analyst_agent.skill(
    "text.upper",
    name="Upper case",
    description="input.text (or upstream text) in upper case.",
    price=1,
    tags=["text"],
    examples=['{"text": "hello"}'],
)
async def text_upper(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return {"text": _text(input, ctx).upper()}


@analyst_agent.skill(
    "demo.sleep",
    name="Sleep",
    description=f"Sleeps input.seconds (default 1, at most {MAX_SLEEP_S:g}) reporting progress; "
    "for cancellation and timeout demos.",
    price=0,
    tags=["demo"],
    examples=['{"seconds": 2}'],
)
async def demo_sleep(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    try:
        seconds = float(input.get("seconds", 1.0))
    except (TypeError, ValueError):
        raise TaskRejected("input.seconds must be a number") from None
    if seconds < 0:
        raise TaskRejected("input.seconds must not be negative")
    seconds = min(seconds, MAX_SLEEP_S)
    steps = max(1, min(20, int(seconds / 0.1)))
    for i in range(1, steps + 1):
        await asyncio.sleep(seconds / steps)
        await ctx.progress(f"slept {seconds * i / steps:.2f}s of {seconds:.2f}s", i / steps)
    return {"slept_s": seconds}


_attempts: dict[str, int] = {}
_MAX_KEYS = 10_000


@analyst_agent.skill(
    "demo.fail",
    name="Fail",
    description="Fails the first input.fail_times (default 1) attempts for input.key, then "
    "succeeds; for retry demos. Counts are per agent process.",
    price=0,
    tags=["demo"],
    examples=['{"key": "job-1", "fail_times": 2}'],
)
async def demo_fail(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    key = input.get("key")
    if not isinstance(key, str) or not key:
        raise TaskRejected("input.key (a non-empty string) is required")
    try:
        fail_times = int(input.get("fail_times", 1))
    except (TypeError, ValueError):
        raise TaskRejected("input.fail_times must be an integer") from None
    if len(_attempts) >= _MAX_KEYS and key not in _attempts:
        del _attempts[next(iter(_attempts))]
    attempt = _attempts[key] = _attempts.get(key, 0) + 1
    if attempt <= fail_times:
        raise RuntimeError(f"planned failure {attempt} of {fail_times} for key {key!r}")
    return {"key": key, "attempts": attempt}


__all__ = ["VERDICTS", "analyst_agent", "sysinfo_agent"]
