"""runce on SQLite: the store's defaults (WAL), one file in the bench's work dir."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

from harness.adapters import runce_queue
from harness.workload import Workload, work_dir

NAME = "runce"
BACKEND = "sqlite"
PACKAGE = "nurv-runce"
PROJECT = "runce-sqlite"
DB_PATH = work_dir(PROJECT) / "runce.db"
SETTINGS = {
    "store": "sqlite:///runce.db (store defaults)",
    "worker": "runce worker --concurrency C (default settings: an INFO line per run)",
    "producer": "runce.enqueue / runce.enqueue_many, config found from the current directory",
}


def _execute(sql: str) -> Any:
    with closing(sqlite3.connect(DB_PATH, timeout=30)) as conn, conn:
        return conn.execute(sql).fetchone()


def _clear() -> None:
    for table in ("runce_run_attempts", "runce_runs", "runce_workers"):
        _execute(f"DELETE FROM {table}")


class _Unfinished:
    """Counts unfinished runs on one connection kept open while the harness polls."""

    def __init__(self) -> None:
        self._conn: sqlite3.Connection | None = None

    def __call__(self) -> int:
        if self._conn is None:
            self._conn = sqlite3.connect(DB_PATH, timeout=30, isolation_level=None)
        sql = "SELECT count(*) FROM runce_runs WHERE state IN ('queued', 'running')"
        return int(self._conn.execute(sql).fetchone()[0])


BACKEND_HOOKS = runce_queue.Backend(PROJECT, "sqlite:///runce.db", _clear, _Unfinished())


def _bench(measurement: str, w: Workload) -> dict[str, Any]:
    runce_queue.open_project(BACKEND_HOOKS)
    result: dict[str, Any] = getattr(runce_queue, measurement)(BACKEND_HOOKS, w)
    return result


def enqueue_single(w: Workload) -> dict[str, Any]:
    return _bench("enqueue_single", w)


def enqueue_batched(w: Workload) -> dict[str, Any]:
    return _bench("enqueue_batched", w)


def process(w: Workload) -> dict[str, Any]:
    return _bench("process", w)


def latency(w: Workload) -> dict[str, Any]:
    return _bench("latency", w)


def memory(w: Workload) -> dict[str, Any]:
    return _bench("memory", w)
