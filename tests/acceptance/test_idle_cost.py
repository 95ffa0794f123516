"""What an idle worker costs PostgreSQL, and how soon it still starts new work (LISTEN/NOTIFY).

The worker is the real ``runce worker`` in a database of its own, so that
``pg_stat_database`` counts its transactions and nobody else's (the test reads the counters
from another database).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import runce
from tests import services
from tests.acceptance.conftest import Workspace

JOBS = """
import time

import runce


@runce.job("idle.touch")
def touch(params):
    with open(params["path"], "a") as out:
        out.write(f"{time.time()} {params['sent']}\\n")
"""


@pytest.fixture
def idle_pg(postgres_server: str, tmp_path: Path) -> Iterator[tuple[Workspace, str]]:
    url = services.create_database(postgres_server)
    space = Workspace(tmp_path, url, '[worker]\nhandlers = ["jobs"]\n')
    (tmp_path / "jobs.py").write_text(JOBS)
    yield space, url
    space.reap()
    services.drop_database(postgres_server, url)


def _transactions(server: str, database: str) -> int:
    """Commits and rollbacks PostgreSQL counted in ``database``, read from another one; the
    statistics a backend keeps reach the view within a second of its transaction, so the
    snapshot is cleared and read afresh."""
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (database,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _enqueue(url: str, path: Path) -> None:
    runce.enqueue("idle.touch", {"path": str(path), "sent": time.time()}, config={"store": url})


def _wait_for_lines(path: Path, count: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.01)
    raise AssertionError(f"{count} run(s) did not start within {timeout} s")


def test_an_idle_postgres_worker_costs_under_a_query_a_second_and_starts_new_work_at_once(
    idle_pg: tuple[Workspace, str], postgres_server: str
) -> None:
    space, url = idle_pg
    database = url.rsplit("/", 1)[1]
    started = space.root / "started.txt"
    # One run first: the schema exists, and the worker is surely past its start-up.
    worker = space.start("worker", "--concurrency", "2")
    _enqueue(url, started)
    _wait_for_lines(started, 1, timeout=60)

    # Idle: the worker's transactions over a window of seconds (a busy machine only makes
    # the worker slower, so the count can only come out lower, never higher).
    # PostgreSQL sends a backend's statistics on within 10 s when it is idle: those of the
    # warm-up are in the view by the time the window starts.
    time.sleep(11)
    before, began = _transactions(postgres_server, database), time.monotonic()
    time.sleep(10)
    after, took = _transactions(postgres_server, database), time.monotonic() - began
    per_second = (after - before) / took
    assert per_second <= 1.0, f"an idle worker made {after - before} transactions in {took:.1f} s"

    # Still listening: a run enqueued now starts within milliseconds, not at the next poll.
    delays = []
    for _ in range(3):
        count = len(started.read_text().splitlines())
        _enqueue(url, started)
        line = _wait_for_lines(started, count + 1, timeout=30)[-1]
        ran, sent = map(float, line.split())
        delays.append(ran - sent)
        time.sleep(2)  # idle again in between
    assert sorted(delays)[1] < 0.2, f"runs started {delays} s after their enqueue"
    worker.terminate()
    worker.communicate(timeout=60)
