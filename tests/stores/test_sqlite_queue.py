"""What only the SQLite run queue does: enqueueing in the caller's transaction, real processes
racing on one file, waking on another process's commit, and its schema. The shared behaviour
is in the queue contract suite (test_queue_contract.py)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from runce.domain.runs import NewRun, Outcome, WorkerInfo, run_after
from runce.errors import SchemaError, StoreError, UsageError
from runce.stores.base import StoreSpec
from runce.stores.sqlite import SQLiteStore, open_store
from runce.stores.sqlite.queries import MIGRATIONS
from tests.stores.records import applied_for, finished, started

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def opened() -> Iterator[list[SQLiteStore]]:
    stores: list[SQLiteStore] = []
    yield stores
    for store in stores:
        store.close()


Make = Callable[..., SQLiteStore]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "runce.db"


@pytest.fixture
def make(db_path: Path, opened: list[SQLiteStore]) -> Make:
    def make(**changes: Any) -> SQLiteStore:
        store = open_store(StoreSpec(type="sqlite", url=f"sqlite:///{db_path}", **changes))
        opened.append(store)
        return store

    return make


def new(**fields: Any) -> NewRun:
    return NewRun(
        id=fields.pop("id", uuid.uuid4().hex),
        kind=fields.pop("kind", "email.send"),
        input_json=fields.pop("input_json", '{"to":"a@example.com"}'),
        max_attempts=fields.pop("max_attempts", 3),
        **fields,
    )


def _master(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name <> 'sqlite_sequence' "
            "ORDER BY type, name"
        )
        return [tuple(row) for row in rows]


def _user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        return version


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


# --- enqueue in the caller's transaction ------------------------------------------------------


def _callers_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, item TEXT)")
    conn.execute("INSERT INTO orders (item) VALUES ('book')")
    return conn


def test_a_run_enqueued_in_a_committed_transaction_exists(make: Make, db_path: Path) -> None:
    store = make()
    store.runs.enqueue([new()])  # the file and its schema exist
    conn = _callers_connection(db_path)
    try:
        [done] = store.runs.enqueue([new(idempotency_key="order-1")], connection=conn)
        assert done.created
        assert conn.in_transaction  # nothing committed for the caller
        assert store.runs.get(done.run.id) is None  # invisible until the caller commits
        conn.execute("COMMIT")
    finally:
        conn.close()
    assert store.runs.get(done.run.id) == done.run
    claimed = store.runs.claim("w1", None, limit=10, lease=30)
    assert done.run.id in {run.id for run in claimed}


def test_a_rolled_back_transaction_leaves_no_run(make: Make, db_path: Path) -> None:
    store = make()
    store.runs.enqueue([new()])
    conn = _callers_connection(db_path)
    try:
        [done] = store.runs.enqueue([new()], connection=conn)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    assert store.runs.get(done.run.id) is None
    assert "orders" not in _tables(db_path)  # the caller's own work went with it


@pytest.mark.parametrize("ending", ["COMMIT", "ROLLBACK"])
def test_enqueue_in_a_transaction_on_a_brand_new_file(
    make: Make, db_path: Path, ending: str
) -> None:
    store = make()
    conn = _callers_connection(db_path)  # the caller creates the file; runce never wrote it
    try:
        [done] = store.runs.enqueue([new()], connection=conn)
        assert conn.in_transaction
        conn.execute(ending)
    finally:
        conn.close()
    if ending == "ROLLBACK":
        assert _user_version(db_path) == 0
        assert _tables(db_path) == set()  # the tables runce created went with the rollback
        assert store.runs.get(done.run.id) is None
        assert store.schema_status().current == 0
        return
    assert _user_version(db_path) == MIGRATIONS.latest
    assert {"orders", "runce_runs", "runce_applied"} <= _tables(db_path)
    assert store.schema_status().up_to_date
    [claimed] = store.runs.claim("w1", None, limit=10, lease=30)
    assert claimed.id == done.run.id
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_legacy_transaction_handling_gets_its_implicit_transaction(
    make: Make, db_path: Path
) -> None:
    store = make()
    conn = sqlite3.connect(db_path)  # Python's default: transactions opened implicitly
    try:
        assert not conn.in_transaction
        [done] = store.runs.enqueue([new()], connection=conn)
        assert conn.in_transaction
        conn.rollback()
    finally:
        conn.close()
    assert store.runs.get(done.run.id) is None
    assert _user_version(db_path) == 0


def test_a_caller_row_factory_does_not_matter(make: Make, db_path: Path) -> None:
    store = make()
    conn = _callers_connection(db_path)
    conn.row_factory = lambda cursor, row: {
        d[0]: v for d, v in zip(cursor.description, row, strict=True)
    }
    try:
        [done] = store.runs.enqueue([new()], connection=conn)
        conn.execute("COMMIT")
    finally:
        conn.close()
    assert store.runs.get(done.run.id) == done.run


def test_connections_that_cannot_hold_the_run_are_refused(
    make: Make, db_path: Path, tmp_path: Path
) -> None:
    store = make()
    with pytest.raises(UsageError, match=r"sqlite3\.Connection"):
        store.runs.enqueue([new()], connection=object())
    other = sqlite3.connect(tmp_path / "other.db", isolation_level=None)
    memory = sqlite3.connect(":memory:")
    autocommit = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN")
        with pytest.raises(UsageError, match=r"other\.db"):
            store.runs.enqueue([new()], connection=other)
        with pytest.raises(UsageError, match="in-memory"):
            store.runs.enqueue([new()], connection=memory)
        with pytest.raises(UsageError, match="autocommit"):
            store.runs.enqueue([new()], connection=autocommit)
    finally:
        for conn in (other, memory, autocommit):
            conn.close()
    assert _tables(tmp_path / "other.db") == set()


def test_without_auto_migrate_the_callers_transaction_is_not_migrated(
    make: Make, db_path: Path
) -> None:
    store = make(auto_migrate=False)
    conn = _callers_connection(db_path)
    try:
        with pytest.raises(SchemaError, match="runce db upgrade"):
            store.runs.enqueue([new()], connection=conn)
        assert conn.in_transaction  # the caller's transaction is theirs to end
        conn.execute("ROLLBACK")
    finally:
        conn.close()


# --- many processes on one file ---------------------------------------------------------------

_ENQUEUER = """
import sys, uuid
from runce.stores.base import StoreSpec
from runce.stores.queue import NewRun
from runce.stores.sqlite import open_store

db, count = sys.argv[1], int(sys.argv[2])
queue = open_store(StoreSpec(type="sqlite", url="sqlite:///" + db)).runs
print("ready", flush=True)
sys.stdin.readline()
for i in range(count):
    run = NewRun(id=uuid.uuid4().hex, kind="k", input_json='{"i":%d}' % i, max_attempts=3)
    queue.enqueue([run])
print("enqueued", flush=True)
"""

_CLAIMER = """
import os, random, sys
from runce.stores.base import StoreSpec
from runce.stores.queue import ClaimRequest, Outcome
from runce.stores.sqlite import open_store

db, all_enqueued = sys.argv[1], sys.argv[2]
queue = open_store(StoreSpec(type="sqlite", url="sqlite:///" + db)).runs
print("ready", flush=True)
sys.stdin.readline()
outcomes = []
while True:
    request = ClaimRequest("claimer-%d" % os.getpid(), None, random.randint(1, 12), 60)
    acked, claimed = queue.exchange(outcomes, request)
    assert all(run is not None for run in acked), acked
    for run in claimed:
        print(run.id, flush=True)
    outcomes = [Outcome(run.fence, "succeeded", result_json="1") for run in claimed]
    if not claimed:
        if os.path.exists(all_enqueued):
            break
        queue.wait_for_work(0.05)
queue.complete(outcomes)
"""


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_processes_enqueueing_and_claiming_at_once_never_lock_or_share(tmp_path: Path) -> None:
    db, all_enqueued = tmp_path / "race.db", tmp_path / "all-enqueued"
    enqueuers = [_spawn(_ENQUEUER, str(db), "250") for _ in range(4)]
    claimers = [_spawn(_CLAIMER, str(db), str(all_enqueued)) for _ in range(4)]
    children = enqueuers + claimers
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        for child in children:  # go: every process starts on an empty (not yet created) file
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        for child in enqueuers:
            out, err = child.communicate(timeout=90)
            assert child.returncode == 0, err
            assert out.strip() == "enqueued"
        all_enqueued.touch()
        claimed: list[str] = []
        for child in claimers:
            out, err = child.communicate(timeout=90)
            assert child.returncode == 0, err
            assert "locked" not in err
            claimed.extend(out.split())
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()

    counts = Counter(claimed)
    assert len(counts) == 1000
    assert set(counts.values()) == {1}, "a run was claimed twice"
    store = open_store(StoreSpec(type="sqlite", url=f"sqlite:///{db}"))
    try:
        runs = _every_run(store)
        assert len(runs) == 1000
        assert {(run.state, run.attempt) for run in runs} == {("succeeded", 1)}
    finally:
        store.close()


def _every_run(store: SQLiteStore) -> list[Any]:
    from runce.domain.runs import RunFilter

    runs: list[Any] = []
    after = None
    while page := store.runs.page(RunFilter(), after, 300):
        runs.extend(page)
        after = (page[-1].created_at, page[-1].id)
    return runs


# --- waiting for work -------------------------------------------------------------------------

_LATE_ENQUEUER = """
import sys, time, uuid
from runce.stores.base import StoreSpec
from runce.stores.queue import NewRun
from runce.stores.sqlite import open_store

db = sys.argv[1]
queue = open_store(StoreSpec(type="sqlite", url="sqlite:///" + db)).runs
print("ready", flush=True)
sys.stdin.readline()
time.sleep(0.3)
queue.enqueue([NewRun(id=uuid.uuid4().hex, kind="k", input_json="{}", max_attempts=1)])
print(time.time(), flush=True)
"""


@pytest.mark.parametrize("file_exists", [True, False])
def test_wait_for_work_wakes_on_an_enqueue_by_another_process(
    make: Make, db_path: Path, file_exists: bool
) -> None:
    waiter = make().runs
    if file_exists:
        waiter.enqueue([new()])
    waiter.wait_for_work(0.01)
    child = _spawn(_LATE_ENQUEUER, str(db_path))
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        started = time.monotonic()
        waiter.wait_for_work(20)
        waited = time.monotonic() - started
        woke_at = time.time()
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert waited < 10, "wait_for_work slept through another process's enqueue"
    assert woke_at >= float(out.strip()) - 0.05, "woke before the enqueue committed"


def test_wait_for_work_wakes_at_once_for_this_store_s_own_enqueue(make: Make) -> None:
    queue = make().runs
    queue.enqueue([new()])
    queue.wait_for_work(0.01)
    timer = threading.Timer(0.1, queue.enqueue, args=([new()],))
    started = time.monotonic()
    timer.start()
    queue.wait_for_work(10)
    timer.join()
    assert time.monotonic() - started < 2


def test_a_commit_between_two_waits_is_not_slept_through(make: Make) -> None:
    waiter, writer = make().runs, make().runs
    writer.enqueue([new()])
    waiter.wait_for_work(0.01)
    waiter.wait_for_work(0.01)  # no news since: times out
    writer.enqueue([new()])  # while the waiter is busy elsewhere (say, claiming)
    started = time.monotonic()
    waiter.wait_for_work(10)
    assert time.monotonic() - started < 1


def test_waiting_idle_is_cheap(make: Make) -> None:
    queue = make().runs
    queue.enqueue([new()])
    queue.wait_for_work(0.01)
    cpu, wall = time.thread_time(), time.monotonic()
    queue.wait_for_work(2.5)
    assert time.monotonic() - wall >= 2.4
    # ~1000 polls in the first second, then ~50 a second: a few percent of one core at most.
    assert time.thread_time() - cpu < 0.5


def _seen(queue: Any, worker: str) -> None:
    """A commit that is no news of work: a worker's heartbeat."""
    now = queue.now()
    queue.worker_seen(WorkerInfo(worker, "h", 1, now, now, 1, ("k",)))


def test_commits_that_bring_no_work_wake_no_waiter(make: Make, db_path: Path) -> None:
    waiter, other = make().runs, make().runs  # each as if in a process of its own
    other.enqueue([new()])  # runce keeps the wake file from now on
    _seen(other, "w-0")
    waiter.wait_for_work(0.01)
    started = time.monotonic()
    _seen(other, "w-1")  # idle workers' heartbeats wake no idle worker
    other.claim("w-1", None, limit=5, lease=30)
    waiter.wait_for_work(1.0)
    assert time.monotonic() - started >= 0.9, "a commit that brought no work woke the waiter"
    timer = threading.Timer(0.2, other.enqueue, args=([new()],))
    started = time.monotonic()
    timer.start()
    waiter.wait_for_work(10)
    timer.join()
    assert time.monotonic() - started < 5, "an enqueue by another store did not wake the waiter"


def test_without_a_wake_file_every_commit_is_news(make: Make, db_path: Path) -> None:
    waiter, other = make().runs, make().runs
    other.enqueue([new()])
    db_path.with_name(db_path.name + "-wake").unlink()  # say, only older writers used it
    waiter.wait_for_work(0.01)
    timer = threading.Timer(0.2, _seen, args=(other, "w-1"))
    started = time.monotonic()
    timer.start()
    waiter.wait_for_work(10)
    timer.join()
    assert time.monotonic() - started < 5


def test_an_enqueue_in_the_callers_transaction_wakes_waiters_when_it_commits(
    make: Make, db_path: Path
) -> None:
    waiter, store = make().runs, make()
    store.runs.enqueue([new()])
    waiter.wait_for_work(0.01)
    conn = _callers_connection(db_path)
    try:
        [done] = store.runs.enqueue([new()], connection=conn)  # the wake file moves now
        waiter.wait_for_work(10)  # ... so this returns, though nothing is committed yet
        waited: list[float] = []

        def wait() -> None:
            started = time.monotonic()
            waiter.wait_for_work(10)  # the commit that follows is news too
            waited.append(time.monotonic() - started)

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.3)
        conn.execute("COMMIT")
        thread.join()
        assert waited[0] < 5, "the caller's commit did not wake the waiter"
    finally:
        conn.close()
    assert store.runs.get(done.run.id) is not None


# --- schema -----------------------------------------------------------------------------------


def test_a_file_at_schema_1_is_migrated_to_the_same_schema_as_a_fresh_one(
    make: Make, db_path: Path, tmp_path: Path
) -> None:
    assert MIGRATIONS.names[:2] == ("0001_once_tasks.sql", "0002_runs.sql")
    with sqlite3.connect(db_path) as conn:  # a file written by the runce before runs
        conn.executescript(MIGRATIONS.text("0001_once_tasks.sql") + "PRAGMA user_version = 1;")
    store = make()
    assert store.runs.get("anything") is None  # reads never migrate: no runs tables yet
    assert store.runs.workers() == []
    assert _user_version(db_path) == 1

    [done] = store.runs.enqueue([new()])  # the first write migrates
    assert _user_version(db_path) == MIGRATIONS.latest
    assert store.runs.get(done.run.id) == done.run
    row = finished(started("t.after-runs"))
    store.tracker.record(row, applied_for(row), None)
    assert set(store.tracker.applied()) == {"t.after-runs"}

    fresh = tmp_path / "fresh.db"
    with sqlite3.connect(fresh) as conn:
        conn.executescript(store.schema_sql())
    assert _master(fresh) == _master(db_path)
    assert _user_version(fresh) == _user_version(db_path)


def test_attempts_read_from_a_file_at_schema_7_have_no_traceback_until_it_is_upgraded(
    make: Make, db_path: Path
) -> None:
    older = [name for name in MIGRATIONS.names if int(name[:4]) <= 7]
    with sqlite3.connect(db_path) as conn:  # a file written by the runce before tracebacks
        conn.executescript("".join(map(MIGRATIONS.text, older)) + "PRAGMA user_version = 7;")
        conn.execute(
            "INSERT INTO runce_run_attempts (run_id, attempt, worker_id, finished_at, outcome,"
            " error) VALUES ('r1', 1, 'w1', '2026-01-02T03:04:05.000000+00:00', 'retry', 'E')"
        )
    store = make()
    [record] = store.runs.attempts("r1")  # reads never migrate
    assert (record.attempt, record.error, record.traceback) == (1, "E", None)
    assert _user_version(db_path) == 7

    store.runs.enqueue([new()])  # the first write migrates
    assert _user_version(db_path) == MIGRATIONS.latest
    [run] = store.runs.claim("w1", None, limit=1, lease=30)
    store.runs.complete([Outcome(run.fence, "failed", error="E", traceback="Traceback ...")])
    assert [a.traceback for a in store.runs.attempts(run.id)] == ["Traceback ..."]
    assert [a.traceback for a in store.runs.attempts("r1")] == [None]


def test_reads_on_a_missing_file_create_nothing(make: Make, tmp_path: Path) -> None:
    from runce.domain.runs import RunFilter

    queue = make().runs
    assert queue.get("x") is None
    assert queue.page(RunFilter(), None, 10) == []
    assert queue.attempts("x") == []
    assert queue.workers() == []
    queue.wait_for_work(0.01)
    assert abs((queue.now() - queue.now()).total_seconds()) < 1
    assert list(tmp_path.iterdir()) == []


def test_the_claim_follows_the_partial_claim_index(make: Make, db_path: Path) -> None:
    make().runs.enqueue([new()])
    with sqlite3.connect(db_path) as conn:
        from runce.stores.sqlite.queries import query

        params = {"worker_id": "w", "kinds": None, "limit": 5, "lease": "+1 seconds", "now": "x"}
        plan = " | ".join(
            row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {query('claim_runs')}", params)
        )
    assert "runce_runs_claim" in plan
    assert "TEMP B-TREE" not in plan


def test_the_counts_read_index_ranges_never_the_table(make: Make, db_path: Path) -> None:
    """The metrics' and the dashboard's counts: the kinds and their queued runs from the
    index of queued runs (covering), the running ones and the last hour's finished ones
    from their ranges; never a scan of runce_runs, whatever it holds."""
    make().runs.enqueue([new()])
    with sqlite3.connect(db_path) as conn:
        from runce.stores.sqlite.queries import query

        conn.execute("ANALYZE")
        params = {"now": "x", "since": "x", "limit": 10_001}
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {query('run_counts')}", params)]
    reads = [step for step in plan if "runce_runs" in step]
    assert reads, plan
    assert all("USING" in step and "INDEX" in step for step in reads), plan
    assert any("COVERING INDEX runce_runs_queued (kind=? AND state=?)" in s for s in reads), plan
    assert any("runce_runs_finished" in step for step in reads), plan


# --- what the database keeps ------------------------------------------------------------------


def test_times_are_sqlite_clock_text_and_json_is_text(make: Make, db_path: Path) -> None:
    queue = make().runs
    [done] = queue.enqueue([new(input_json='{"a":[1,2]}')])
    [run] = queue.claim("w1", None, limit=1, lease=30)
    queue.complete([Outcome(run.fence, "succeeded", result_json='{"ok":true}')])
    with sqlite3.connect(db_path) as conn:
        row = conn.execute(
            "SELECT input, result, created_at, finished_at, lease_expires_at, cancel_requested "
            "FROM runce_runs WHERE id = ?",
            (done.run.id,),
        ).fetchone()
    assert row[:2] == ('{"a":[1,2]}', '{"ok":true}')
    assert len(row[2]) == len("2025-01-01T00:00:00.000Z")
    assert row[2].endswith("Z")
    assert row[3] >= row[2]
    assert row[4] is None
    assert row[5] == 0


def test_driver_errors_become_store_errors(make: Make) -> None:
    queue = make().runs
    [done] = queue.enqueue([new()])
    with pytest.raises(StoreError, match="enqueue") as caught:
        queue.enqueue([new(id=done.run.id)])  # the same id, no idempotency key
    assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
    [run] = queue.claim("w1", None, limit=1, lease=30)
    with pytest.raises(StoreError, match="progress") as caught:
        queue.progress(run.fence, 101, None)  # the CHECK on progress
    assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)


def test_a_run_named_twice_in_one_batch_of_outcomes_is_applied_in_order(make: Make) -> None:
    queue = make().runs
    queue.enqueue([new()])
    [run] = queue.claim("w1", None, limit=1, lease=30)
    stale = Outcome(run.fence, "released")
    done = queue.complete([stale, Outcome(run.fence, "succeeded")])
    assert done[0] is not None
    after = run_after(run, stale, done[0])
    assert (after.state, after.attempt) == ("queued", 0)
    assert queue.get(run.id) == after
    assert done[1] is None  # the claim it names was handed back by the first


def test_retry_at_a_later_time_keeps_the_run_until_then(make: Make) -> None:
    queue = make().runs
    queue.enqueue([new(max_attempts=1)])
    [run] = queue.claim("w1", None, limit=1, lease=30)
    queue.complete([Outcome(run.fence, "failed", error="x")])
    later = queue.now() + timedelta(hours=1)
    retried = queue.retry(run.id, later)
    assert retried is not None
    assert retried.state == "queued"
    assert abs((retried.run_at - later).total_seconds()) < 0.002
    assert queue.claim("w1", None, limit=1, lease=30) == []


def test_stored_json_is_read_whole_whatever_surrounds_it() -> None:
    import json

    from runce.stores.sqlite.runrows import _decode_json

    assert _decode_json('{"a":[1,2.5]}') == {"a": [1, 2.5]}
    assert _decode_json(' {"a": 1} ') == {"a": 1}  # not written by runce, still read
    with pytest.raises(json.JSONDecodeError):
        _decode_json('{"a":1} trailing')
