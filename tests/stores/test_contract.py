"""The store contract: every backend passes this suite or is not done."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, timedelta

import pytest

from runce.domain.locks import Owner
from runce.errors import LockHeld, LockLost, StoreError, UnsupportedFeature
from runce.stores.base import Lock, Store, TaskTracker
from runce.stores.liveness import current_owner, this_machine
from tests.stores.conftest import StoreMaker
from tests.stores.records import applied_for, finished, started


def _close(a: object, b: object) -> bool:
    """Stores keep times to the millisecond."""
    assert isinstance(a, type(b))
    return abs(a - b) < timedelta(milliseconds=2)  # type: ignore[operator]


def test_a_store_fulfils_the_protocols(store: Store) -> None:
    assert isinstance(store, Store)
    assert isinstance(store.tracker, TaskTracker)
    assert isinstance(store.lock, Lock)
    assert store.description


def test_a_new_store_reads_as_empty(store: Store) -> None:
    assert store.tracker.applied() == {}
    assert store.tracker.history() == []
    assert store.tracker.open_attempts() == []
    assert store.lock.holder() is None


def test_a_finished_attempt_round_trips_with_its_applied_record(store: Store) -> None:
    attempt = started("2025-01-01.a")
    store.tracker.begin(attempt, None)
    assert [a.attempt_id for a in store.tracker.open_attempts()] == [attempt.attempt_id]

    done = finished(attempt)
    store.tracker.finish(done, applied_for(done), None)

    [row] = store.tracker.history()
    assert row.status == "succeeded"
    for name in ("attempt_id", "task_id", "title", "checksum", "applied_by", "owner", "host"):
        assert getattr(row, name) == getattr(done, name)
    assert row.pid == done.pid
    assert row.machine == done.machine
    assert row.duration_ms == 1500
    assert row.started_at.tzinfo is not None
    assert row.started_at.utcoffset() == timedelta(0)
    assert _close(row.started_at, done.started_at)
    assert row.finished_at is not None
    assert done.finished_at is not None
    assert _close(row.finished_at, done.finished_at)
    assert store.tracker.open_attempts() == []

    record = store.tracker.applied()["2025-01-01.a"]
    assert record.is_applied
    assert record.status == "success"
    assert record.checksum == done.checksum
    assert record.name == done.title
    assert record.attempt_id == done.attempt_id
    assert record.applied_at.tzinfo == UTC or record.applied_at.utcoffset() == timedelta(0)


def test_a_failure_keeps_its_error_and_is_not_applied(store: Store) -> None:
    attempt = started("t.fail")
    store.tracker.begin(attempt, None)
    done = finished(
        attempt,
        "failed",
        error_type="ValueError",
        error_message="boom",
        traceback="Traceback (most recent call last):\n  ...\nValueError: boom",
    )
    store.tracker.finish(done, applied_for(done, "failed"), None)

    [row] = store.tracker.history("t.fail")
    assert (row.status, row.error_type, row.error_message) == ("failed", "ValueError", "boom")
    assert row.traceback is not None
    assert row.traceback.endswith("ValueError: boom")
    record = store.tracker.applied()["t.fail"]
    assert record.status == "failed"
    assert not record.is_applied
    assert record.error == "boom"


def test_a_finished_attempt_is_never_finished_again(store: Store) -> None:
    attempt = started("t.once")
    store.tracker.begin(attempt, None)
    store.tracker.finish(finished(attempt), None, None)
    with pytest.raises(StoreError):
        store.tracker.finish(finished(attempt, "failed"), None, None)
    assert [row.status for row in store.tracker.history()] == ["succeeded"]


def test_finishing_without_an_applied_record_leaves_the_applied_state_alone(store: Store) -> None:
    attempt = started("t.env")
    store.tracker.begin(attempt, None)
    store.tracker.finish(finished(attempt, "skipped-by-env"), None, None)
    assert store.tracker.applied() == {}
    assert store.tracker.history()[0].status == "skipped-by-env"


def test_the_applied_record_is_the_last_outcome(store: Store) -> None:
    first = started("t.retry")
    store.tracker.begin(first, None)
    failed = finished(first, "failed", error_message="no")
    store.tracker.finish(failed, applied_for(failed, "failed"), None)
    second = started("t.retry")
    store.tracker.begin(second, None)
    ok = finished(second)
    store.tracker.finish(ok, applied_for(ok), None)

    assert store.tracker.applied()["t.retry"].attempt_id == second.attempt_id
    assert store.tracker.applied()["t.retry"].error is None
    assert [row.status for row in store.tracker.history("t.retry")] == ["failed", "succeeded"]


def test_record_appends_a_finished_row(store: Store) -> None:
    row = finished(started("t.base"), "baselined", note="recorded without running")
    store.tracker.record(row, applied_for(row), None)
    [stored] = store.tracker.history()
    assert (stored.status, stored.note) == ("baselined", "recorded without running")
    assert store.tracker.applied()["t.base"].is_applied


def test_history_is_oldest_first_and_filters_by_task(store: Store) -> None:
    for task_id in ("b", "a", "b"):
        row = finished(started(task_id))
        store.tracker.record(row, applied_for(row), None)
        time.sleep(0.003)
    assert [row.task_id for row in store.tracker.history()] == ["b", "a", "b"]
    assert len(store.tracker.history("b")) == 2
    assert store.tracker.history("nope") == []


def test_progress_is_stored_with_the_running_attempt(store: Store) -> None:
    attempt = started("t.long")
    store.tracker.begin(attempt, None)
    store.tracker.progress(attempt.attempt_id, 40, 100, None)
    [row] = store.tracker.open_attempts()
    assert (row.progress_done, row.progress_total) == (40, 100)
    store.tracker.progress(attempt.attempt_id, 41, None, None)
    [row] = store.tracker.open_attempts()
    assert (row.progress_done, row.progress_total) == (41, None)


def test_records_are_seen_by_another_store_object(maker: StoreMaker) -> None:
    writer, reader = maker.open(), maker.open()
    row = finished(started("t.shared"))
    writer.tracker.record(row, applied_for(row), None)
    assert set(reader.tracker.applied()) == {"t.shared"}


# --- the lock ----------------------------------------------------------------------------


def test_the_lock_is_taken_once(maker: StoreMaker) -> None:
    first, second = maker.open(), maker.open()
    lease = first.lock.try_acquire(current_owner("one"), ttl=30)
    assert lease is not None
    assert second.lock.try_acquire(current_owner("two"), ttl=30) is None

    holder = second.lock.holder()
    assert holder is not None
    assert holder.state == "live"
    assert holder.owner == "one"
    assert holder.token == lease.token or holder.token is None
    assert "one" in holder.describe() or holder.host in holder.describe()

    assert first.lock.renew(lease)
    first.lock.release(lease)
    assert first.lock.holder() is None
    assert not first.lock.renew(lease)
    again = second.lock.try_acquire(current_owner("two"), ttl=30)
    assert again is not None
    assert again.token != lease.token
    second.lock.release(again)


def test_threads_share_one_store_object(store: Store) -> None:
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(5):
                row = finished(started(f"t.{n}.{i}"))
                store.tracker.record(row, applied_for(row), None)
                store.tracker.applied()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.tracker.history()) == 30
    assert len(store.tracker.applied()) == 30


def test_only_one_of_many_racing_threads_gets_the_lock(maker: StoreMaker) -> None:
    stores = [maker.open() for _ in range(12)]
    barrier = threading.Barrier(len(stores))
    won: list[object] = []

    def race(store: Store) -> None:
        barrier.wait()
        lease = store.lock.try_acquire(current_owner(), ttl=30)
        if lease is not None:
            won.append(lease)

    threads = [threading.Thread(target=race, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1


def test_writes_under_a_lease_need_the_lease_to_be_current(maker: StoreMaker) -> None:
    store = maker.open()
    lease = store.lock.try_acquire(current_owner(), ttl=30)
    assert lease is not None
    attempt = started("t.fenced", token=lease.token)
    store.tracker.begin(attempt, lease)
    store.tracker.progress(attempt.attempt_id, 1, 2, lease)
    store.lock.release(lease)

    with pytest.raises(LockLost):
        store.tracker.finish(finished(attempt), applied_for(finished(attempt)), lease)
    with pytest.raises(LockLost):
        store.tracker.begin(started("t.other"), lease)
    with pytest.raises(LockLost):
        store.tracker.progress(attempt.attempt_id, 2, 2, lease)
    row = finished(started("t.rec"))
    with pytest.raises(LockLost):
        store.tracker.record(row, applied_for(row), lease)

    assert store.tracker.applied() == {}
    assert [(r.task_id, r.status) for r in store.tracker.history()] == [("t.fenced", "started")]


def test_a_live_holder_is_not_cleared_without_force(maker: StoreMaker) -> None:
    holder_store, other = maker.open(), maker.open()
    lease = holder_store.lock.try_acquire(current_owner("busy"), ttl=30)
    assert lease is not None
    with pytest.raises(LockHeld):
        other.lock.clear()
    assert holder_store.lock.renew(lease)
    if not maker.force_clears:
        return  # a kernel lock cannot be taken away from a live process
    cleared = other.lock.clear(force=True)
    assert cleared is not None
    assert cleared.owner == "busy"
    assert not holder_store.lock.renew(lease)
    assert other.lock.try_acquire(current_owner(), ttl=30) is not None


def test_an_expired_lease_is_free_and_its_holder_is_fenced_off(maker: StoreMaker) -> None:
    if not maker.leases_expire:
        pytest.skip("this store's lock is held by the kernel for as long as the process lives")
    first, second = maker.open(), maker.open()
    # Long enough for the two calls below on a busy machine (0.2 s was not, on MongoDB).
    ttl = 1.5
    lease = first.lock.try_acquire(_foreign_owner(), ttl=ttl)
    assert lease is not None
    attempt = started("t.slow", token=lease.token)
    first.tracker.begin(attempt, lease)
    assert second.lock.try_acquire(current_owner(), ttl=30) is None
    _wait_until_expired(second, 20 * ttl)
    taken = second.lock.try_acquire(current_owner("second"), ttl=30)
    assert taken is not None
    assert not first.lock.renew(lease)
    with pytest.raises(LockLost):
        first.tracker.finish(finished(attempt), applied_for(finished(attempt)), lease)
    first.lock.release(lease)  # not the current lease: changes nothing
    current = second.lock.holder()
    assert current is not None
    assert current.owner == "second"


def _wait_until_expired(store: Store, timeout: float) -> None:
    """Poll until the store calls its lock's holder expired (a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        holder = store.lock.holder()
        assert holder is not None
        if holder.state == "expired":
            return
        assert time.monotonic() < deadline, f"the lease never expired: {holder}"
        time.sleep(0.05)


def test_a_lease_held_by_a_dead_process_on_this_machine_is_free(maker: StoreMaker) -> None:
    if not maker.leases_expire:
        pytest.skip("a kernel lock dies with its process; the real-process tests cover it")
    store = maker.open()
    dead = _dead_owner()
    assert store.lock.try_acquire(dead, ttl=300) is not None
    holder = store.lock.holder()
    assert holder is not None
    assert holder.state == "dead"
    assert store.lock.try_acquire(current_owner(), ttl=30) is not None


def test_an_expired_holder_can_be_cleared(maker: StoreMaker) -> None:
    if not maker.leases_expire:
        pytest.skip("this store's lock is held by the kernel for as long as the process lives")
    store = maker.open()
    assert store.lock.try_acquire(_foreign_owner(), ttl=0.1) is not None
    _wait_until_expired(store, 100 * 0.1)
    cleared = store.lock.clear()
    assert cleared is not None
    assert cleared.state == "expired"
    assert store.lock.holder() is None


# --- transactional tasks ------------------------------------------------------------------


def test_a_transaction_commits_its_records_or_none(store: Store) -> None:
    if not store.supports_transactions:
        with pytest.raises(UnsupportedFeature):
            store.tracker.transaction(None).__enter__()
        return
    lease = store.lock.try_acquire(current_owner(), ttl=30)
    assert lease is not None
    good = started("t.tx.good", token=lease.token)
    store.tracker.begin(good, lease)
    with store.tracker.transaction(lease) as tx:
        assert tx.handle is not None
        tx.finish(finished(good), applied_for(finished(good)))
    assert store.tracker.applied()["t.tx.good"].is_applied

    bad = started("t.tx.bad", token=lease.token)
    store.tracker.begin(bad, lease)

    def fail_inside() -> None:
        with store.tracker.transaction(lease) as tx:
            tx.finish(finished(bad), applied_for(finished(bad)))
            raise RuntimeError("the task failed after writing")

    with pytest.raises(RuntimeError):
        fail_inside()
    assert "t.tx.bad" not in store.tracker.applied()
    assert [a.task_id for a in store.tracker.open_attempts()] == ["t.tx.bad"]


# --- helpers -------------------------------------------------------------------------------


def _dead_owner() -> Owner:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    me = current_owner("ghost")
    return replace(me, pid=int(child.stdout))


def _foreign_owner() -> Owner:
    """An owner on another machine, whose liveness this process cannot test."""
    me = current_owner("elsewhere")
    return replace(me, host="other-host", machine="other-host/boot/1", pid=1)


def test_the_foreign_owner_is_not_this_machine() -> None:
    assert _foreign_owner().machine != this_machine()
