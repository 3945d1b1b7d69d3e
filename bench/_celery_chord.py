"""The Celery side of bench/stores.py: a chord of the mesh fan-out's shape.

A root task, then a chord of N-2 no-op tasks whose callback (the join) gets
their N-2 results: ``chain(root.si(), chord([noop.si(i) ...], join.s()))``.
Broker and result backend are the same Redis (``MESHWRIGHT_BENCH_CELERY_URL``).
Celery is a bench extra only (``pip install -r bench/requirements-celery.txt``);
nothing under services/ imports it.

The worker (started by bench/stores.py, bench/ on PYTHONPATH):

    celery -A _celery_chord worker --pool prefork --concurrency 2

The client (prints one JSON line per run, then exits):

    python bench/_celery_chord.py --tasks 2000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from celery import Celery, chain, chord  # type: ignore[import-untyped]

URL = os.environ.get("MESHWRIGHT_BENCH_CELERY_URL", "redis://127.0.0.1:6379/1")

app = Celery("meshwright_bench", broker=URL, backend=URL)
# Celery's defaults otherwise (prefetch multiplier 4, early acks, JSON).
app.conf.update(result_expires=600, broker_connection_retry_on_startup=True)


@app.task(name="bench.root")
def root() -> int:
    return 0


@app.task(name="bench.noop")
def noop(i: int) -> None:
    return None


@app.task(name="bench.join")
def join(results: list[Any]) -> int:
    return len(results)


def wait_for_worker(timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if app.control.ping(timeout=0.5):
            return
    raise SystemExit(f"no Celery worker answered a ping within {timeout_s:.0f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per run")
    args = p.parse_args()
    wait_for_worker(30.0)
    middle = args.tasks - 2
    for run in range(args.runs):
        t0 = time.perf_counter()
        flow = chain(root.si(), chord([noop.si(i) for i in range(middle)], join.s()))
        joined = flow.apply_async().get(timeout=args.timeout)
        wall = time.perf_counter() - t0
        ok = joined == middle
        print(json.dumps({"run": run + 1, "wall_s": wall, "ok": ok, "joined": joined}), flush=True)
        if not ok:
            sys.exit(1)


if __name__ == "__main__":
    main()
