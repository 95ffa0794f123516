"""What an idle worker costs its store, and how soon it still starts new work.

On PostgreSQL the worker is the real ``runce worker`` in a database of its own, so that
``pg_stat_database`` counts its transactions and nobody else's (the test reads the counters
from another database). SQLite has no server to count for it, and a MongoDB server's
counters are the whole server's: there the worker is the same command run through
``counted_runce.py``, which counts in the worker's process what it asks the store.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import runce
from tests import services
from tests.acceptance.conftest import Workspace, clean_env

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


# --- SQLite and MongoDB: counted inside the worker's process ------------------------------------

COUNTED = Path(__file__).with_name("counted_runce.py")
# What the counts are of (see counted_runce.py): SQLite transactions and statements on their
# own, as pg_stat_database counts them; MongoDB commands.
UNIT = {"sqlite": "queries", "mongo": "commands"}
WINDOW = 30.0  # seconds counted: several of each periodic duty (a look every 2 s, the
# liveness write every 10 s, the reclaim every 15 s), so their phases barely move the mean


@pytest.fixture(params=["sqlite", "mongo"])
def idle_elsewhere(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Workspace, str]]:
    if request.param == "sqlite":
        store = f"sqlite:///{tmp_path / 'runce.db'}"
        space = Workspace(tmp_path, store, '[worker]\nhandlers = ["jobs"]\n')
        (tmp_path / "jobs.py").write_text(JOBS)
        yield space, "sqlite"
        space.reap()
        return
    import pymongo

    server = request.getfixturevalue("mongo_server")
    database = f"runce_t_{uuid.uuid4().hex[:12]}"
    space = Workspace(
        tmp_path, f"{server.rstrip('/')}/{database}", '[worker]\nhandlers = ["jobs"]\n'
    )
    (tmp_path / "jobs.py").write_text(JOBS)
    yield space, "mongo"
    space.reap()
    with pymongo.MongoClient(server) as client:
        client.drop_database(database)


def _counts(path: Path, timeout: float = 30) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found: dict[str, float] = json.loads(path.read_text())
            return found
        except (FileNotFoundError, json.JSONDecodeError):
            assert time.monotonic() < deadline, f"the worker wrote no counts to {path}"
            time.sleep(0.05)


def test_an_idle_sqlite_or_mongo_worker_asks_at_most_once_a_second_and_wakes_for_new_work(
    idle_elsewhere: tuple[Workspace, str],
) -> None:
    space, store = idle_elsewhere
    unit = UNIT[store]
    counted = space.root / "counts.json"
    started = space.root / "started.txt"
    # The real `runce worker` at its default settings, counting what it asks the store.
    worker = subprocess.Popen(
        [sys.executable, str(COUNTED), str(counted), "worker", "--concurrency", "2"],
        cwd=space.root,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    space.procs.append(worker)
    # One run first: the schema exists, and the worker is surely past its start-up.
    _enqueue(space.store, started)
    _wait_for_lines(started, 1, timeout=60)

    # Idle: what it asks over a window of seconds (a busy machine only makes the worker
    # slower, so the count can only come out lower, never higher).
    time.sleep(3)
    before = _counts(counted)
    time.sleep(WINDOW)
    after = _counts(counted)
    asked, took = after.get(unit, 0) - before.get(unit, 0), after["at"] - before["at"]
    assert took >= WINDOW * 0.9, (before, after)
    detail = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k)}
    assert asked / took <= 1.0, (
        f"an idle {store} worker made {asked:g} {unit} in {took:.1f} s: {detail}"
    )

    # Still woken by news: a run enqueued by another process (this one) starts within a
    # second, not at the next look for due runs.
    delays = []
    for _ in range(3):
        count = len(started.read_text().splitlines())
        _enqueue(space.store, started)
        line = _wait_for_lines(started, count + 1, timeout=30)[-1]
        ran, sent = map(float, line.split())
        delays.append(ran - sent)
        time.sleep(2.5)  # idle again in between, past a look
    assert sorted(delays)[1] < 1.0, f"runs started {delays} s after their enqueue"
    worker.terminate()
    worker.communicate(timeout=60)
    assert worker.returncode == 0, worker.stderr
