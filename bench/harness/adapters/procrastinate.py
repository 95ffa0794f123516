"""Procrastinate (psycopg 3, async connector) under the bench workloads.

Worker: ``procrastinate --app=... worker --concurrency C --queues bench`` with the library's
default connection pool. The producer opens the same app in this process
(``defer_async``, ``batch_defer_async``). Finished jobs stay in the table as ``succeeded``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from harness import procs, stats
from harness.workload import Workload, pg_dsn

os.environ["BENCH_PG_DSN"] = pg_dsn()
from harness.jobs import procrastinate_noop

NAME = "procrastinate"
BACKEND = "postgresql"
PACKAGE = "procrastinate"
PREFILL_BATCH = 1_000
SETTINGS = {
    "driver": "psycopg 3 AsyncConnectionPool (PsycopgConnector defaults)",
    "worker": "procrastinate worker --concurrency C --queues bench",
}
TABLES = (
    "procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers, procrastinate_workers"
)

app = procrastinate_noop.app
noop = procrastinate_noop.noop


def _worker(w: Workload, expected: int, latencies: bool = False) -> procs.WorkerProcess:
    cli = str(Path(sys.executable).parent / "procrastinate")
    cmd = [
        cli,
        "--app=harness.jobs.procrastinate_noop.app",
        "worker",
        "--concurrency",
        str(w.concurrency),
        "--queues",
        "bench",
    ]
    return procs.start_worker(
        cmd, expected=expected, latencies=latencies, env={"BENCH_PG_DSN": pg_dsn()}
    )


async def _fetch_one(sql: str) -> Any:
    async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
        cursor = await conn.execute(sql)
        return await cursor.fetchone() if cursor.description else None


async def _fresh() -> None:
    exists = await _fetch_one("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
    if not exists[0]:
        await app.schema_manager.apply_schema_async()
    await _fetch_one(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")


async def _unfinished() -> int:
    row = await _fetch_one(
        "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
    )
    return int(row[0])


async def _enqueue_batches(count: int, batch: int) -> None:
    for start in range(0, count, batch):
        size = min(batch, count - start)
        await noop.batch_defer_async(*([{"t": 0.0}] * size))


async def _enqueue(w: Workload, batch: int | None) -> dict[str, Any]:
    async with app.open_async():
        await _fresh()
        began = time.perf_counter()
        if batch is None:
            for _ in range(w.jobs):
                await noop.defer_async(t=0.0)
        else:
            await _enqueue_batches(w.jobs, batch)
        took = time.perf_counter() - began
        if await _unfinished() != w.jobs:
            raise RuntimeError(f"{await _unfinished()} jobs queued, expected {w.jobs}")
        return stats.enqueue_result(w.jobs, took, batch or 1)


def enqueue_single(w: Workload) -> dict[str, Any]:
    return asyncio.run(_enqueue(w, None))


def enqueue_batched(w: Workload) -> dict[str, Any]:
    return asyncio.run(_enqueue(w, w.batch))


async def _process(w: Workload) -> dict[str, Any]:
    async with app.open_async():
        await _fresh()
        await _enqueue_batches(w.jobs, PREFILL_BATCH)
        await _fetch_one("ANALYZE procrastinate_jobs")
        worker = _worker(w, w.jobs)
        try:
            probe = procs.probe_result(worker, timeout=300)
            done = await procs.wait_drained_async(_unfinished)
        finally:
            procs.stop_worker(worker)
        return {
            **stats.process_result(w.jobs, probe, done, worker.spawned_at),
            "concurrency": w.concurrency,
        }


def process(w: Workload) -> dict[str, Any]:
    return asyncio.run(_process(w))


async def _latency(w: Workload) -> dict[str, Any]:
    count = w.latency_jobs
    async with app.open_async():
        await _fresh()
        worker = _worker(w, count, latencies=True)
        try:
            ready = await procs.warm_up_async(worker, lambda: noop.defer_async(t=-1.0))
            await asyncio.sleep(1.0)
            idle_rss = procs.tree_rss_kib(worker.pid)
            pacer = stats.Pacer(w.rate)
            began = time.perf_counter()
            for _ in range(count):
                pause = pacer.delay()
                if pause > 0:
                    await asyncio.sleep(pause)
                await noop.defer_async(t=time.time())
            took = time.perf_counter() - began
            probe = procs.probe_result(worker, timeout=120)
        finally:
            procs.stop_worker(worker)
        return {
            **stats.latency_result(count, probe, took, ready),
            "idle_rss_mib": round(idle_rss / 1024, 1),
        }


def latency(w: Workload) -> dict[str, Any]:
    return asyncio.run(_latency(w))
