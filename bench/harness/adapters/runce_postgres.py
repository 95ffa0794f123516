"""runce on PostgreSQL: the bench database, runce's tables in a schema of their own."""

from __future__ import annotations

from typing import Any

import psycopg

from harness.adapters import runce_queue
from harness.workload import Workload, pg_dsn

NAME = "runce"
BACKEND = "postgresql"
PACKAGE = "nurv-runce"
PROJECT = "runce-postgres"
SCHEMA = "runce_bench"
SETTINGS = {
    "store": f"{pg_dsn()} (schema {SCHEMA}, store defaults)",
    "worker": "runce worker --concurrency C (default settings: an INFO line per run)",
    "producer": "runce.enqueue / runce.enqueue_many, config found from the current directory",
}


def _execute(sql: str) -> Any:
    with psycopg.connect(pg_dsn(), autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchone() if cursor.description else None


def _clear() -> None:
    _execute(f"TRUNCATE {SCHEMA}.run_attempts, {SCHEMA}.runs, {SCHEMA}.workers")


def _analyze() -> None:
    _execute(f"ANALYZE {SCHEMA}.runs")


class _Unfinished:
    """Counts unfinished runs on one connection kept open while the harness polls."""

    def __init__(self) -> None:
        self._conn: psycopg.Connection[Any] | None = None

    def __call__(self) -> int:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(pg_dsn(), autocommit=True)
        row = self._conn.execute(
            f"SELECT count(*) FROM {SCHEMA}.runs WHERE state IN ('queued', 'running')"
        ).fetchone()
        return int(row[0]) if row else 0


BACKEND_HOOKS = runce_queue.Backend(
    PROJECT, pg_dsn(), _clear, _Unfinished(), settings=f'schema = "{SCHEMA}"\n', analyze=_analyze
)


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
