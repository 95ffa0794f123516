"""Huey (SqliteHuey) under the bench workloads.

Huey takes a task off the queue by deleting its row and has no acknowledgement, so "all
done" is "the queue is empty". It has no batch enqueue (``task.map`` enqueues one by one).
The consumer keeps Huey's default polling (``-d 0.1 -m 10 -b 1.15``) unless
``BENCH_HUEY_ARGS`` adds options, e.g. ``-d 0.01 -m 0.1``.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from harness import procs, stats
from harness.workload import Workload, work_dir

NAME = "huey"
BACKEND = "sqlite"
PACKAGE = "huey"
DB_PATH = work_dir("huey") / "huey.db"
EXTRA_ARGS = shlex.split(os.environ.get("BENCH_HUEY_ARGS", ""))
SETTINGS = {
    "storage": "SqliteHuey (WAL, library defaults)",
    "worker": " ".join(["huey_consumer ... -w C -k thread -q", *EXTRA_ARGS]),
}

os.environ["BENCH_HUEY_DB"] = str(DB_PATH)
from harness.jobs import huey_noop  # noqa: E402  (reads BENCH_HUEY_DB on import)


def _worker(w: Workload, expected: int, latencies: bool = False) -> procs.WorkerProcess:
    consumer = str(Path(sys.executable).parent / "huey_consumer")
    cmd = [
        consumer,
        "harness.jobs.huey_noop.huey",
        "-w",
        str(w.concurrency),
        "-k",
        "thread",
        "-q",
        *EXTRA_ARGS,
    ]
    return procs.start_worker(
        cmd, expected=expected, latencies=latencies, env={"BENCH_HUEY_DB": str(DB_PATH)}
    )


def _fresh() -> None:
    huey_noop.huey.flush()


def _queued() -> int:
    return int(huey_noop.huey.pending_count())


def enqueue_single(w: Workload) -> dict[str, Any]:
    _fresh()
    began = time.perf_counter()
    for _ in range(w.jobs):
        huey_noop.noop(0.0)
    took = time.perf_counter() - began
    if _queued() != w.jobs:
        raise RuntimeError(f"{_queued()} tasks queued, expected {w.jobs}")
    return stats.enqueue_result(w.jobs, took, 1)


def enqueue_batched(w: Workload) -> dict[str, Any]:
    return {"supported": False, "reason": "no batch enqueue: task.map() enqueues one by one"}


def process(w: Workload) -> dict[str, Any]:
    _fresh()
    for _ in range(w.jobs):
        huey_noop.noop(0.0)
    worker = _worker(w, w.jobs)
    try:
        probe = procs.probe_result(worker, timeout=300)
        emptied = procs.wait_drained(_queued)
    finally:
        procs.stop_worker(worker)
    return {
        **stats.process_result(w.jobs, probe, emptied, worker.spawned_at),
        "concurrency": w.concurrency,
    }


def latency(w: Workload) -> dict[str, Any]:
    _fresh()
    count = w.latency_jobs
    worker = _worker(w, count, latencies=True)
    try:
        ready = procs.warm_up(worker, lambda: huey_noop.noop(-1.0))
        idle_rss = procs.idle_rss_kib(worker)
        pacer = stats.Pacer(w.rate)
        began = time.perf_counter()
        for _ in range(count):
            pacer.wait()
            huey_noop.noop(time.time())
        took = time.perf_counter() - began
        probe = procs.probe_result(worker, timeout=120)
    finally:
        procs.stop_worker(worker)
    return {
        **stats.latency_result(count, probe, took, ready),
        "idle_rss_mib": round(idle_rss / 1024, 1),
    }
