"""What only the file store does: its line format, torn-line repair, and flock-based locking
across real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runce.errors import (
    ConfigError,
    LockHeld,
    LockLost,
    SchemaError,
    StoreError,
    StoreUnavailable,
    UnsupportedFeature,
)
from runce.stores.base import StoreSpec
from runce.stores.file import FileStore, open_store
from runce.stores.liveness import current_owner
from tests.stores.records import applied_for, finished, started


@pytest.fixture
def data_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "applied.jsonl"


@pytest.fixture
def opened(data_path: Path) -> Iterator[list[FileStore]]:
    stores: list[FileStore] = []
    yield stores
    for store in stores:
        store.close()


def _open(opened: list[FileStore], path: Path) -> FileStore:
    store = open_store(StoreSpec(type="file", url=f"file://{path}"))
    opened.append(store)
    return store


@pytest.fixture
def store(opened: list[FileStore], data_path: Path) -> FileStore:
    return _open(opened, data_path)


def _record(store: FileStore, task_id: str) -> None:
    row = finished(started(task_id))
    store.tracker.record(row, applied_for(row), None)


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- where the file is ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "relative"),
    [
        ("file://data/applied.jsonl", "data/applied.jsonl"),
        ("file:applied.jsonl", "applied.jsonl"),
        ("file:./x/../applied.jsonl", "applied.jsonl"),
        ("file://my%20data/applied.jsonl", "my data/applied.jsonl"),
    ],
)
def test_relative_urls_are_relative_to_the_base_dir(
    tmp_path: Path, url: str, relative: str
) -> None:
    store = open_store(StoreSpec(type="file", url=url, base_dir=tmp_path))
    assert store.path == tmp_path / relative
    assert store.description == f"file://{tmp_path / relative}"


def test_an_absolute_url_and_the_table_form_name_the_file(tmp_path: Path) -> None:
    absolute = open_store(StoreSpec(type="file", url=f"file://{tmp_path}/a.jsonl"))
    assert absolute.description == f"file://{tmp_path}/a.jsonl"
    table = open_store(
        StoreSpec(type="file", options={"path": "t/applied.jsonl"}, base_dir=tmp_path)
    )
    assert table.path == tmp_path / "t" / "applied.jsonl"


def test_a_store_without_a_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a path"):
        open_store(StoreSpec(type="file", base_dir=tmp_path))


# --- the line format ------------------------------------------------------------------------


def test_every_write_is_one_versioned_event_line(store: FileStore, data_path: Path) -> None:
    attempt = started("t.a")
    store.tracker.begin(attempt, None)
    store.tracker.progress(attempt.attempt_id, 1, 3, None)
    done = finished(attempt)
    store.tracker.finish(done, applied_for(done), None)

    lines = _lines(data_path)
    assert [(line["v"], line["event"]) for line in lines] == [
        (1, "begin"),
        (1, "progress"),
        (1, "finish"),
    ]
    assert str(lines[0]["started_at"]).endswith("Z")  # ISO-8601 UTC text
    assert isinstance(lines[2]["applied"], dict)
    assert lines[2]["applied"]["id"] == "t.a"


def test_a_torn_last_line_is_ignored_and_cut_by_the_next_append(
    store: FileStore, data_path: Path
) -> None:
    _record(store, "t.kept")
    intact = data_path.read_bytes()
    with data_path.open("ab") as handle:
        handle.write(b'{"v":1,"event":"record","attempt_id":"half')  # the crash

    assert list(store.tracker.applied()) == ["t.kept"]
    fresh = open_store(StoreSpec(type="file", url=f"file://{data_path}"))
    assert list(fresh.tracker.applied()) == ["t.kept"]

    _record(store, "t.next")
    text = data_path.read_bytes()
    assert text.startswith(intact)
    assert b"half" not in text
    assert [line["task_id"] for line in _lines(data_path)] == ["t.kept", "t.next"]


def test_an_unparsable_last_line_with_its_newline_is_torn_too(
    store: FileStore, data_path: Path
) -> None:
    _record(store, "t.kept")
    with data_path.open("ab") as handle:
        handle.write(b"\x00\x00\x00\n")  # zeros left by a crash before the data reached disk
    assert list(store.tracker.applied()) == ["t.kept"]
    _record(store, "t.next")
    assert [line["task_id"] for line in _lines(data_path)] == ["t.kept", "t.next"]


def test_a_corrupt_line_before_the_last_names_the_file_and_line(
    store: FileStore, data_path: Path, opened: list[FileStore]
) -> None:
    _record(store, "t.one")
    _record(store, "t.two")
    lines = data_path.read_text().splitlines(keepends=True)
    data_path.write_text(lines[0] + "{oops\n" + lines[1])

    fresh = _open(opened, data_path)
    with pytest.raises(StoreError, match=rf"{data_path} line 2 is not valid JSON"):
        fresh.tracker.applied()
    with pytest.raises(StoreError, match="line 2"):
        _record(fresh, "t.three")  # nothing is appended to a corrupt file
    assert len(data_path.read_text().splitlines()) == 3


def test_a_line_that_is_json_but_not_a_record_is_reported(
    store: FileStore, data_path: Path
) -> None:
    data_path.parent.mkdir(parents=True)
    data_path.write_text('{"v":1,"event":"finish","attempt_id":"nope"}\n{"v":1}\n')
    with pytest.raises(StoreError, match="line 1 is not a valid runce record"):
        store.tracker.history()


def test_a_newer_format_is_refused(store: FileStore, data_path: Path) -> None:
    data_path.parent.mkdir(parents=True)
    data_path.write_text('{"v":3,"event":"teleport"}\n')
    with pytest.raises(SchemaError, match="newer runce"):
        store.tracker.applied()


def test_an_attempt_is_begun_only_once(store: FileStore) -> None:
    attempt = started("t.dup")
    store.tracker.begin(attempt, None)
    with pytest.raises(StoreError, match="already recorded"):
        store.tracker.begin(attempt, None)
    with pytest.raises(StoreError, match="not a started attempt"):
        store.tracker.progress("missing", 1, 1, None)
    assert len(store.tracker.history()) == 1


def test_a_reader_follows_appends_and_a_file_rewritten_by_hand(
    store: FileStore, data_path: Path, opened: list[FileStore]
) -> None:
    reader = _open(opened, data_path)
    _record(store, "t.a")
    assert list(reader.tracker.applied()) == ["t.a"]
    _record(store, "t.b")
    assert list(reader.tracker.applied()) == ["t.a", "t.b"]

    first_line = data_path.read_text().splitlines(keepends=True)[0]
    replacement = data_path.with_name("new.jsonl")
    replacement.write_text(first_line)
    replacement.replace(data_path)
    assert list(reader.tracker.applied()) == ["t.a"]


# --- reading creates nothing, writing creates what it needs ---------------------------------


def test_reads_of_a_missing_file_create_nothing(store: FileStore, tmp_path: Path) -> None:
    assert store.tracker.applied() == {}
    assert store.tracker.history() == []
    assert store.tracker.open_attempts() == []
    assert store.lock.holder() is None
    assert store.lock.clear() is None
    assert store.schema_status().up_to_date
    assert store.upgrade() == []
    assert store.schema_sql().startswith("--")
    assert list(tmp_path.iterdir()) == []


def test_the_first_write_creates_the_directories(store: FileStore, data_path: Path) -> None:
    _record(store, "t.first")
    assert data_path.is_file()


def test_an_unwritable_path_is_unavailable_and_named(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    path = blocker / "applied.jsonl"
    store = open_store(StoreSpec(type="file", url=f"file://{path}"))

    with pytest.raises(StoreUnavailable, match=str(path)) as caught:
        _record(store, "t.x")
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(StoreUnavailable, match=str(path)):
        store.lock.try_acquire(current_owner(), ttl=30)
    with pytest.raises(StoreUnavailable, match=f"cannot read the file store at {path}"):
        store.tracker.applied()


def test_transactional_tasks_are_refused_with_the_stores_that_can(store: FileStore) -> None:
    assert not store.supports_transactions
    with pytest.raises(UnsupportedFeature, match="sqlite or postgresql"):
        store.tracker.transaction(None)


# --- the lock within one process ------------------------------------------------------------


def test_a_write_without_a_lease_does_not_wait_for_the_lock_holder(
    store: FileStore, opened: list[FileStore], data_path: Path
) -> None:
    other = _open(opened, data_path)
    lease = store.lock.try_acquire(current_owner("runner"), ttl=30)
    assert lease is not None
    _record(other, "t.unleased")  # another store object, same process: no deadlock
    _record(store, "t.by-holder")  # the holder itself, with and without its lease
    row = finished(started("t.leased", token=lease.token))
    store.tracker.record(row, applied_for(row), lease)
    with pytest.raises(LockLost):
        other.tracker.record(row, applied_for(row), lease)  # the lease is not other's
    assert sorted(store.tracker.applied()) == ["t.by-holder", "t.leased", "t.unleased"]


def test_a_deleted_lock_file_loses_the_lease(store: FileStore, data_path: Path) -> None:
    lease = store.lock.try_acquire(current_owner(), ttl=30)
    assert lease is not None
    Path(f"{data_path}.lock").unlink()
    assert not store.lock.renew(lease)
    with pytest.raises(LockLost):
        store.tracker.begin(started("t.x"), lease)
    assert store.tracker.history() == []


def test_closing_the_store_frees_the_lock(
    store: FileStore, opened: list[FileStore], data_path: Path
) -> None:
    assert store.lock.try_acquire(current_owner(), ttl=30) is not None
    store.close()
    other = _open(opened, data_path)
    assert other.lock.holder() is None
    assert other.lock.try_acquire(current_owner(), ttl=30) is not None


def test_holder_probes_do_not_make_a_free_lock_look_taken(
    store: FileStore, opened: list[FileStore], data_path: Path
) -> None:
    watcher = _open(opened, data_path)
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            watcher.lock.holder()

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        for _ in range(100):
            lease = store.lock.try_acquire(current_owner(), ttl=30)
            assert lease is not None
            store.lock.release(lease)
    finally:
        stop.set()
        thread.join()


# --- real processes -------------------------------------------------------------------------

_HOLDER = textwrap.dedent(
    """
    import sys, time
    from runce.stores.base import StoreSpec
    from runce.stores.file import open_store
    from runce.stores.liveness import current_owner
    store = open_store(StoreSpec(type="file", url="file://" + sys.argv[1]))
    lease = store.lock.try_acquire(current_owner("child-runner"), ttl=30)
    print("locked" if lease else "busy", flush=True)
    time.sleep(120)
    """
)

_APPENDER = textwrap.dedent(
    """
    import sys, time, uuid
    from pathlib import Path
    from runce.stores.base import AppliedRecord, Attempt, StoreSpec
    from runce.stores.file import open_store
    from runce.timeutil import utcnow
    path, worker, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    store = open_store(StoreSpec(type="file", url="file://" + path))
    while not go.exists():
        time.sleep(0.001)
    for n in range(count):
        now = utcnow()
        row = Attempt(
            attempt_id=uuid.uuid4().hex, task_id=f"w{worker}.{n}", title="t",
            checksum="sha256:00", status="baselined", started_at=now, applied_by="cli",
            owner="o", host="h", pid=0, machine="m", runce_version="0",
            finished_at=now, duration_ms=0, note="x" * 3000,
        )
        applied = AppliedRecord(
            id=row.task_id, name="t", checksum="sha256:00", applied_at=now,
            duration_ms=0, status="success", attempt_id=row.attempt_id,
        )
        store.tracker.record(row, applied, None)
    """
)


@pytest.fixture
def lock_holder_process(data_path: Path) -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(data_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        yield child
    finally:
        child.kill()
        child.wait()


@pytest.mark.slow
def test_a_process_holding_the_lock_is_shown_and_not_cleared(
    store: FileStore, lock_holder_process: subprocess.Popen[str]
) -> None:
    holder = store.lock.holder()
    assert holder is not None
    assert (holder.state, holder.owner, holder.pid) == (
        "live",
        "child-runner",
        lock_holder_process.pid,
    )
    assert store.lock.try_acquire(current_owner(), ttl=30) is None
    with pytest.raises(LockHeld, match="child-runner"):
        store.lock.clear()
    with pytest.raises(LockHeld, match=rf"pid {lock_holder_process.pid}\) exits"):
        store.lock.clear(force=True)


@pytest.mark.slow
def test_a_killed_holder_leaves_the_lock_free_at_once(
    store: FileStore, lock_holder_process: subprocess.Popen[str]
) -> None:
    assert store.lock.try_acquire(current_owner(), ttl=30) is None
    os.kill(lock_holder_process.pid, signal.SIGKILL)
    lock_holder_process.wait()

    assert store.lock.holder() is None
    lease = store.lock.try_acquire(current_owner("next"), ttl=30)
    assert lease is not None
    holder = store.lock.holder()
    assert holder is not None
    assert (holder.owner, holder.pid, holder.token) == ("next", os.getpid(), lease.token)


@pytest.mark.slow
def test_concurrent_processes_append_whole_lines(
    store: FileStore, data_path: Path, tmp_path: Path
) -> None:
    workers, count = 8, 40
    go = tmp_path / "go"
    data_path.parent.mkdir(parents=True)
    data_path.write_bytes(b'{"v":1,"event":"rec')  # a torn tail every appender races to cut
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _APPENDER, str(data_path), str(w), str(count), str(go)]
        )
        for w in range(workers)
    ]
    go.touch()
    assert [child.wait(timeout=100) for child in children] == [0] * workers

    lines = _lines(data_path)
    assert len(lines) == workers * count
    assert all(line["event"] == "record" and line["v"] == 1 for line in lines)
    history = store.tracker.history()
    assert len({row.attempt_id for row in history}) == workers * count
    assert len(store.tracker.applied()) == workers * count
