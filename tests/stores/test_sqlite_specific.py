"""What only the SQLite store does: its file, its schema, real processes racing on one file,
and transactional tasks. The shared behaviour is in the contract suite (test_contract.py)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from runce.domain.locks import Lease, Owner
from runce.errors import ConfigError, LockLost, SchemaError, StoreUnavailable
from runce.stores.base import StoreSpec
from runce.stores.liveness import current_owner
from runce.stores.sqlite import SQLiteStore, open_store
from runce.stores.sqlite.connection import Database, DatabaseBusy
from runce.stores.sqlite.queries import MIGRATIONS, split_statements
from runce.timeutil import UNREADABLE_TIME
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
def make(tmp_path: Path, opened: list[SQLiteStore]) -> Make:
    """Opens SQLite stores under tmp_path: make(url, **StoreSpec fields)."""

    def make(url: str | None = "sqlite:///.runce/runce.db", **changes: Any) -> SQLiteStore:
        store = open_store(StoreSpec(type="sqlite", url=url, base_dir=tmp_path, **changes))
        opened.append(store)
        return store

    return make


def _record(store: SQLiteStore, task_id: str) -> None:
    row = finished(started(task_id))
    store.tracker.record(row, applied_for(row), None)


def _master(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
        return [tuple(row) for row in rows]


def _user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        return version


# --- where the file is ---------------------------------------------------------------------


def test_urls_and_the_path_option_resolve_against_the_base_dir(make: Make, tmp_path: Path) -> None:
    assert make().description == f"sqlite:///{tmp_path}/.runce/runce.db"
    assert make(None).description == f"sqlite:///{tmp_path}/.runce/runce.db"
    assert make("sqlite:///data/x.db").description == f"sqlite:///{tmp_path}/data/x.db"
    assert make(f"sqlite:///{tmp_path}/abs.db").description == f"sqlite:///{tmp_path}/abs.db"
    by_option = make(None, options={"path": "opt/y.db"})
    assert by_option.description == f"sqlite:///{tmp_path}/opt/y.db"


@pytest.mark.parametrize("url", ["sqlite://host/x.db", "sqlite:///", "postgresql:///x"])
def test_a_url_that_names_no_file_is_a_config_error(make: Make, url: str) -> None:
    with pytest.raises(ConfigError, match="sqlite"):
        make(url)


def test_an_unknown_option_is_a_config_error(make: Make) -> None:
    with pytest.raises(ConfigError, match="colour"):
        make(None, options={"path": "x.db", "colour": "red"})


# --- reads never create ----------------------------------------------------------------------


def test_reads_on_a_missing_file_create_nothing(make: Make, tmp_path: Path) -> None:
    store = make()
    assert store.tracker.applied() == {}
    assert store.tracker.history() == []
    assert store.tracker.history("x") == []
    assert store.tracker.open_attempts() == []
    assert store.lock.holder() is None
    status = store.schema_status()
    assert (status.current, status.latest) == (0, MIGRATIONS.latest)
    assert status.pending == tuple(MIGRATIONS.names)
    assert list(tmp_path.iterdir()) == []


def test_the_first_write_creates_the_directory_and_migrates(make: Make, tmp_path: Path) -> None:
    store = make()
    _record(store, "t.first")
    path = tmp_path / ".runce" / "runce.db"
    assert _user_version(path) == MIGRATIONS.latest
    assert store.schema_status().up_to_date
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_with_no_schema_reads_as_empty(make: Make, tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    store = make("sqlite:///empty.db")
    assert store.tracker.applied() == {}
    assert store.schema_status().current == 0


# --- unusable paths -----------------------------------------------------------------------


def test_a_path_under_a_regular_file_is_unavailable(make: Make, tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("not a directory")
    store = make("sqlite:///plain/sub/runce.db")
    with pytest.raises(StoreUnavailable, match=str(tmp_path / "plain")) as caught:
        _record(store, "t.x")
    assert isinstance(caught.value.__cause__, OSError)
    assert store.tracker.applied() == {}  # a read finds no file there: empty, no error


def test_a_path_that_is_a_directory_is_unavailable(make: Make, tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    store = make("sqlite:///dir.db")
    with pytest.raises(StoreUnavailable, match="is a directory"):
        _record(store, "t.x")
    with pytest.raises(StoreUnavailable, match="is a directory"):
        store.tracker.applied()


def test_a_file_that_is_not_a_database_is_unavailable(make: Make, tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite at all" * 100)
    store = make("sqlite:///junk.db")
    with pytest.raises(StoreUnavailable, match=r"junk\.db") as caught:
        store.tracker.applied()
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    with pytest.raises(StoreUnavailable, match=r"junk\.db"):
        _record(store, "t.x")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_unavailable(make: Make, tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        store = make("sqlite:///ro/runce.db")
        with pytest.raises(StoreUnavailable, match=str(locked / "runce.db")):
            _record(store, "t.x")
    finally:
        locked.chmod(0o755)


# --- schema versions ----------------------------------------------------------------------


def test_a_schema_newer_than_this_runce_is_refused(make: Make, tmp_path: Path) -> None:
    store = make()
    _record(store, "t.old")
    path = tmp_path / ".runce" / "runce.db"
    newer = MIGRATIONS.latest + 1
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {newer}")

    other = make()
    for action in (
        other.tracker.applied,
        other.schema_status,
        other.upgrade,
        lambda: _record(other, "t.new"),
        lambda: other.lock.try_acquire(current_owner(), ttl=5),
    ):
        with pytest.raises(SchemaError) as caught:
            action()
        message = str(caught.value)
        assert str(path) in message
        assert str(newer) in message
        assert str(MIGRATIONS.latest) in message


def test_without_auto_migrate_a_write_asks_for_an_upgrade(make: Make, tmp_path: Path) -> None:
    store = make(auto_migrate=False)
    with pytest.raises(SchemaError, match="runce db upgrade"):
        _record(store, "t.x")
    assert list(tmp_path.iterdir()) == []  # refused before creating anything
    assert store.upgrade() == list(MIGRATIONS.names)
    assert store.upgrade() == []
    _record(store, "t.x")
    assert set(store.tracker.applied()) == {"t.x"}


def test_schema_status_before_and_after_upgrade(make: Make) -> None:
    store = make()
    before = store.schema_status()
    assert not before.up_to_date
    assert (before.current, before.applied) == (0, ())
    assert store.upgrade() == list(MIGRATIONS.names)
    after = store.schema_status()
    assert after.up_to_date
    assert (after.current, after.applied, after.pending) == (
        MIGRATIONS.latest,
        tuple(MIGRATIONS.names),
        (),
    )


def test_schema_sql_builds_the_same_schema_as_the_migrations(make: Make, tmp_path: Path) -> None:
    store = make()
    store.upgrade()
    script = store.schema_sql()
    for name in MIGRATIONS.names:
        assert f"-- {name}" in script
    by_hand = tmp_path / "by_hand.db"
    with sqlite3.connect(by_hand) as conn:
        conn.executescript(script)
    migrated = tmp_path / ".runce" / "runce.db"
    assert _master(by_hand) == _master(migrated)
    assert _user_version(by_hand) == _user_version(migrated) == MIGRATIONS.latest


def test_split_statements_keeps_a_trigger_whole() -> None:
    script = (
        "-- header; with a semicolon\n"
        "CREATE TABLE a (x);\n"
        "CREATE TRIGGER t BEFORE DELETE ON a BEGIN SELECT RAISE(ABORT, 'no'); END;\n"
        "-- trailing comment\n"
    )
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER")
    assert statements[1].endswith("END;")


def test_the_database_refuses_to_rewrite_or_delete_history(make: Make, tmp_path: Path) -> None:
    store = make()
    _record(store, "t.kept")
    with sqlite3.connect(tmp_path / ".runce" / "runce.db") as conn:
        with pytest.raises(sqlite3.IntegrityError, match="never changed"):
            conn.execute("UPDATE runce_history SET status = 'failed'")
        with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
            conn.execute("DELETE FROM runce_history")


# --- many writers -------------------------------------------------------------------------

_FIRST_WRITER = """
import pathlib, sys, time
from runce.stores.base import Lease, StoreSpec
from runce.stores.liveness import current_owner
from runce.stores.sqlite import open_store
from tests.stores.records import applied_for, finished, started

db, go, name = sys.argv[1:4]
store = open_store(StoreSpec(type="sqlite", url="sqlite:///" + db))
print("ready", flush=True)
while not pathlib.Path(go).exists():
    time.sleep(0.001)
row = finished(started("t." + name))
store.tracker.record(row, applied_for(row), None)
lease = store.lock.try_acquire(current_owner(name), ttl=60)
print("won" if lease else "lost", flush=True)
sys.stdin.read()  # stay alive, so the winner's lease is not free for being dead
"""


@pytest.mark.slow
def test_thirty_processes_writing_first_at_once_all_succeed(tmp_path: Path) -> None:
    db, go = tmp_path / "deep" / "race.db", tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _FIRST_WRITER, str(db), str(go), str(n)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(30)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        go.touch()
        outcomes = [child.stdout.readline().strip() for child in children if child.stdout]
        for child in children:
            _, err = child.communicate("", timeout=90)
            assert child.returncode == 0, err
    finally:
        for child in children:  # a failed assertion must not leave 30 processes waiting
            if child.poll() is None:
                child.kill()
                child.wait()

    assert sorted(outcomes) == ["lost"] * 29 + ["won"]
    store = open_store(StoreSpec(type="sqlite", url=f"sqlite:///{db}"))
    try:
        assert len(store.tracker.applied()) == 30
        assert len(store.tracker.history()) == 30
        assert store.schema_status().up_to_date
    finally:
        store.close()


def _hold_write_lock(path: Path, seconds: float, taken: threading.Event) -> None:
    """Another connection's write transaction, open for ``seconds``."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        taken.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_a_write_waits_for_another_writers_lock_and_goes_on_once_it_is_free(make: Make) -> None:
    store = make()
    _record(store, "t.before")  # the file and its schema exist
    taken = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(store.path, 0.3, taken))
    holder.start()
    try:
        assert taken.wait(5)
        began = time.monotonic()
        _record(store, "t.waited")
        waited = time.monotonic() - began
    finally:
        holder.join()
    assert waited >= 0.25  # it waited for the lock rather than failing or skipping it
    assert set(store.tracker.applied()) == {"t.before", "t.waited"}


def test_a_write_lock_never_freed_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "runce.db"
    db = Database(path, auto_migrate=True, busy_timeout=0.05, retry_for=0.3)
    db.write(lambda conn: None, what="create the file")
    taken = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, 1.5, taken))
    holder.start()
    try:
        assert taken.wait(5)
        began = time.monotonic()
        with pytest.raises(DatabaseBusy, match=f"{path} stayed locked by another connection"):
            db.write(lambda conn: None, what="write")
        assert 0.3 <= time.monotonic() - began < 1.5  # gave up after retry_for, not later
    finally:
        holder.join()
        db.close()


# --- the lock -----------------------------------------------------------------------------

_HOLDER = """
import sys, time
from runce.stores.base import Lease, StoreSpec
from runce.stores.liveness import current_owner
from runce.stores.sqlite import open_store

store = open_store(StoreSpec(type="sqlite", url="sqlite:///" + sys.argv[1]))
lease = store.lock.try_acquire(current_owner("doomed"), ttl=300)
print("held" if lease else "missed", flush=True)
time.sleep(300)
"""


@pytest.mark.slow
def test_a_lock_held_by_a_killed_process_on_this_machine_is_free_at_once(
    make: Make, tmp_path: Path
) -> None:
    db = tmp_path / "lock.db"
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(db)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        store = make(f"sqlite:///{db}")
        holder = store.lock.holder()
        assert holder is not None
        assert (holder.state, holder.pid, holder.owner) == ("live", child.pid, "doomed")
        assert store.lock.try_acquire(current_owner(), ttl=30) is None
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    holder = store.lock.holder()
    assert holder is not None
    assert holder.state == "dead"
    started_at = time.monotonic()
    assert store.lock.try_acquire(current_owner("heir"), ttl=30) is not None
    assert time.monotonic() - started_at < 2


def test_a_lease_past_its_ttl_is_free(make: Make) -> None:
    first, second = make(), make()
    foreign = Owner(label="far", host="elsewhere", pid=1, machine="elsewhere/b/1")
    ttl = 1.0  # long enough for the next call on a busy machine
    lease = first.lock.try_acquire(foreign, ttl=ttl)
    assert lease is not None
    assert second.lock.try_acquire(current_owner(), ttl=30) is None
    deadline = time.monotonic() + 20 * ttl
    while (holder := second.lock.holder()) is not None and holder.state != "expired":
        assert time.monotonic() < deadline, holder
        time.sleep(0.05)
    assert holder is not None
    assert second.lock.try_acquire(current_owner("next"), ttl=30) is not None
    assert not first.lock.renew(lease)


def test_a_lease_lives_on_sqlite_clock_with_millisecond_text(make: Make, tmp_path: Path) -> None:
    store = make()
    lease = store.lock.try_acquire(current_owner(), ttl=30)
    assert lease is not None
    with sqlite3.connect(tmp_path / ".runce" / "runce.db") as conn:
        acquired, until = conn.execute("SELECT acquired_at, lease_until FROM runce_lock").fetchone()
    assert len(acquired) == len("2025-01-01T00:00:00.000Z")
    assert acquired.endswith("Z")
    assert until > acquired


# --- transactional tasks --------------------------------------------------------------------


def _leased(store: SQLiteStore, ttl: float = 30) -> Lease:
    lease = store.lock.try_acquire(current_owner(), ttl=ttl)
    assert lease is not None
    return lease


def test_a_transaction_commits_the_task_data_with_the_records(make: Make, tmp_path: Path) -> None:
    store = make()
    lease = _leased(store)
    attempt = started("t.tx", token=lease.token)
    store.tracker.begin(attempt, lease)
    with store.tracker.transaction(lease) as tx:
        assert isinstance(tx.handle, sqlite3.Connection)
        assert tx.handle.in_transaction
        tx.handle.execute("CREATE TABLE things (name TEXT)")
        tx.handle.execute("INSERT INTO things VALUES ('made')")
        assert tx.handle.execute("SELECT name FROM things").fetchall() == [("made",)]
        tx.finish(finished(attempt), applied_for(finished(attempt)))
        # Nothing is visible to anyone else before the commit.
        assert store.tracker.applied() == {}

    assert store.tracker.applied()["t.tx"].is_applied
    assert store.tracker.open_attempts() == []
    with sqlite3.connect(tmp_path / ".runce" / "runce.db") as conn:
        assert conn.execute("SELECT name FROM things").fetchall() == [("made",)]


def test_an_exception_in_a_transaction_rolls_back_data_and_records(
    make: Make, tmp_path: Path
) -> None:
    store = make()
    lease = _leased(store)
    attempt = started("t.tx.bad", token=lease.token)
    store.tracker.begin(attempt, lease)
    # The block stands for the task: several statements, then its failure.
    with pytest.raises(ZeroDivisionError), store.tracker.transaction(lease) as tx:  # noqa: PT012
        tx.handle.execute("CREATE TABLE half_done (x)")
        tx.finish(finished(attempt), applied_for(finished(attempt)))
        _ = 1 / 0

    assert store.tracker.applied() == {}
    assert [a.attempt_id for a in store.tracker.open_attempts()] == [attempt.attempt_id]
    with sqlite3.connect(tmp_path / ".runce" / "runce.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in tables
    assert store.lock.renew(lease)  # the lease outlives the failed task


def test_renewal_during_a_transaction_answers_at_once_and_commit_extends(make: Make) -> None:
    store = make()
    ttl = 2.0  # the holder is read within a ttl of the commit, even on a busy machine
    lease = _leased(store, ttl=ttl)
    answers: list[tuple[bool, float]] = []

    def renew() -> None:
        began = time.monotonic()
        answers.append((store.lock.renew(lease), time.monotonic() - began))

    with store.tracker.transaction(lease):
        store.tracker.progress("any", 1, 2, lease)  # would wait for the task's own write lock
        keeper = threading.Thread(target=renew)
        keeper.start()
        keeper.join(timeout=5)
        time.sleep(ttl + 0.2)  # past the ttl: only the commit's extension keeps it live

    [(renewed, took)] = answers
    assert renewed
    assert took < ttl  # answered at once, not after the busy file's timeout
    holder = store.lock.holder()
    assert holder is not None
    assert holder.state == "live"


def test_a_transaction_on_a_lost_lease_raises_and_writes_nothing(make: Make) -> None:
    store, other = make(), make()
    lease = _leased(store)
    other.lock.clear(force=True)
    with pytest.raises(LockLost), store.tracker.transaction(lease) as tx:
        tx.handle.execute("CREATE TABLE never (x)")
    assert store.tracker.applied() == {}


def test_synchronous_normal_is_opt_in(make: Make) -> None:
    durable = make()
    _record(durable, "t1")
    quicker = make(options={"synchronous": "NORMAL"})
    _record(quicker, "t2")
    levels = {}
    for name, store in (("default", durable), ("normal", quicker)):
        conn = store._db.connect()
        levels[name] = conn.execute("PRAGMA synchronous").fetchone()[0]
        conn.close()
    assert levels == {"default": 2, "normal": 1}  # FULL: every commit on disk first
    assert set(quicker.tracker.applied()) == {"t1", "t2"}
    with pytest.raises(ConfigError, match="'full' or 'normal'"):
        make(options={"synchronous": "off"})


def test_a_task_time_written_around_runce_reads_as_the_epoch(make: Make, tmp_path: Path) -> None:
    store = make()
    for task_id in ("t.one", "t.two"):
        _record(store, task_id)
    with closing(sqlite3.connect(tmp_path / ".runce" / "runce.db")) as conn, conn:
        conn.execute("UPDATE runce_applied SET applied_at = 'garbage' WHERE id = 't.one'")
    applied = store.tracker.applied()
    assert applied["t.one"].applied_at == UNREADABLE_TIME
    assert applied["t.two"].applied_at != UNREADABLE_TIME
    assert len(store.tracker.history()) == 2
