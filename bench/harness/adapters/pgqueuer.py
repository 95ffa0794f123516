"""PgQueuer (asyncpg) under the bench workloads.

Worker: ``pgq run ... --batch-size C/2 --max-concurrent-tasks C``. PgQueuer has no
per-worker concurrency flag; a cap of C jobs in flight is the nearest, and it requires the
dequeue batch to be at most half of it. Acknowledgement deletes the job row (and logs it).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries

from harness import procs, stats
from harness.jobs.pgqueuer_noop import ENTRYPOINT
from harness.workload import Workload, pg_dsn

NAME = "pgqueuer"
BACKEND = "postgresql"
PACKAGE = "pgqueuer"
PREFILL_BATCH = 1_000
SETTINGS = {
    "driver": "asyncpg, one connection for the producer, one for the worker",
    "worker": "pgq run --batch-size C/2 --max-concurrent-tasks C",
}


def _pgq() -> str:
    return str(Path(sys.executable).parent / "pgq")


def _worker(w: Workload, expected: int, latencies: bool = False) -> procs.WorkerProcess:
    batch = max(1, w.concurrency // 2)
    cmd = [
        _pgq(),
        "run",
        "harness.jobs.pgqueuer_noop:create",
        "--batch-size",
        str(batch),
        "--max-concurrent-tasks",
        str(w.concurrency),
    ]
    return procs.start_worker(
        cmd, expected=expected, latencies=latencies, env={"BENCH_PG_DSN": pg_dsn()}
    )


async def _fresh() -> tuple[asyncpg.Connection, Queries]:
    conn = await asyncpg.connect(pg_dsn())
    if await conn.fetchval("SELECT to_regclass('pgqueuer')") is None:
        subprocess.run([_pgq(), "--pg-dsn", pg_dsn(), "install"], check=True, capture_output=True)
    await conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
    return conn, Queries(AsyncpgDriver(conn))


async def _queued(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM pgqueuer"))


async def _enqueue_batches(queries: Queries, count: int, batch: int) -> None:
    for start in range(0, count, batch):
        size = min(batch, count - start)
        await queries.enqueue([ENTRYPOINT] * size, [None] * size, [0] * size)


async def _enqueue(w: Workload, batch: int | None) -> dict[str, Any]:
    conn, queries = await _fresh()
    try:
        began = time.perf_counter()
        if batch is None:
            for _ in range(w.jobs):
                await queries.enqueue(ENTRYPOINT, None)
        else:
            await _enqueue_batches(queries, w.jobs, batch)
        took = time.perf_counter() - began
        if await _queued(conn) != w.jobs:
            raise RuntimeError(f"{await _queued(conn)} jobs queued, expected {w.jobs}")
        return stats.enqueue_result(w.jobs, took, batch or 1)
    finally:
        await conn.close()


def enqueue_single(w: Workload) -> dict[str, Any]:
    return asyncio.run(_enqueue(w, None))


def enqueue_batched(w: Workload) -> dict[str, Any]:
    return asyncio.run(_enqueue(w, w.batch))


async def _process(w: Workload) -> dict[str, Any]:
    conn, queries = await _fresh()
    try:
        await _enqueue_batches(queries, w.jobs, PREFILL_BATCH)
        await conn.execute("ANALYZE pgqueuer")
        worker = _worker(w, w.jobs)
        try:
            probe = procs.probe_result(worker, timeout=300)
            done = await procs.wait_drained_async(lambda: _queued(conn))
        finally:
            procs.stop_worker(worker)
        return {
            **stats.process_result(w.jobs, probe, done, worker.spawned_at),
            "concurrency": w.concurrency,
        }
    finally:
        await conn.close()


def process(w: Workload) -> dict[str, Any]:
    return asyncio.run(_process(w))


async def _latency(w: Workload) -> dict[str, Any]:
    conn, queries = await _fresh()
    count = w.latency_jobs
    try:
        worker = _worker(w, count, latencies=True)
        try:
            ready = await procs.warm_up_async(worker, lambda: queries.enqueue(ENTRYPOINT, b"-1"))
            await asyncio.sleep(1.0)
            idle_rss = procs.tree_rss_kib(worker.pid)
            pacer = stats.Pacer(w.rate)
            began = time.perf_counter()
            for _ in range(count):
                pause = pacer.delay()
                if pause > 0:
                    await asyncio.sleep(pause)
                await queries.enqueue(ENTRYPOINT, repr(time.time()).encode())
            took = time.perf_counter() - began
            probe = procs.probe_result(worker, timeout=120)
        finally:
            procs.stop_worker(worker)
        return {
            **stats.latency_result(count, probe, took, ready),
            "idle_rss_mib": round(idle_rss / 1024, 1),
        }
    finally:
        await conn.close()


def latency(w: Workload) -> dict[str, Any]:
    return asyncio.run(_latency(w))
