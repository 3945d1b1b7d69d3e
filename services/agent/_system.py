"""Reading this machine's vital signs (for the sample agents)."""

from __future__ import annotations

import os
import shutil
import socket
import time
from datetime import UTC, datetime
from typing import Any

SNAPSHOT_KIND = "system.snapshot"
"""Value of ``kind`` in a snapshot, so consumers can find snapshots among upstream outputs."""


def _meminfo(path: str = "/proc/meminfo") -> dict[str, int]:
    """``/proc/meminfo`` in bytes, by field name."""
    out: dict[str, int] = {}
    with open(path, encoding="ascii") as f:
        for line in f:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                scale = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
                out[name] = int(parts[0]) * scale
    return out


def memory() -> dict[str, Any]:
    """Total, available and used memory in bytes, and the used percentage."""
    try:
        info = _meminfo()
        total = info["MemTotal"]
        available = info.get("MemAvailable", info.get("MemFree", 0))
    except (OSError, KeyError):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    used = max(0, total - available)
    return {
        "total_bytes": total,
        "available_bytes": available,
        "used_bytes": used,
        "used_percent": round(100.0 * used / total, 2) if total else 0.0,
    }


def uptime_s() -> float | None:
    """Seconds since boot, when the OS says."""
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            return round(float(f.read().split()[0]), 1)
    except (OSError, ValueError, IndexError):
        return None


def load_average() -> dict[str, float]:
    """1, 5 and 15 minute load averages (zeros where unsupported)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        one = five = fifteen = 0.0
    return {"1m": round(one, 2), "5m": round(five, 2), "15m": round(fifteen, 2)}


def disk(path: str = "/") -> dict[str, Any]:
    """Disk usage of the filesystem holding ``path``."""
    usage = shutil.disk_usage(path)
    return {
        "path": path,
        "total_bytes": usage.total,
        "used_bytes": usage.used,
        "free_bytes": usage.free,
        "used_percent": round(100.0 * usage.used / usage.total, 2) if usage.total else 0.0,
    }


def snapshot() -> dict[str, Any]:
    """One snapshot: host, CPUs, load, memory, disk of "/", uptime."""
    return {
        "kind": SNAPSHOT_KIND,
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count() or 1,
        "load": load_average(),
        "memory": memory(),
        "disk": disk("/"),
        "uptime_s": uptime_s(),
        "taken_at": datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="seconds"),
    }


def is_snapshot(data: object) -> bool:
    """Whether ``data`` looks like a snapshot (upstream outputs are untyped)."""
    return isinstance(data, dict) and (
        data.get("kind") == SNAPSHOT_KIND or ("cpu_count" in data and "load" in data)
    )
