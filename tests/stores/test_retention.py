"""Retention on every store with runs: prunes in batches (each its own short transaction)
while claims go on, and of many workers one prunes per tick of the retention schedule."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runce.domain.runs import Outcome
from runce.runs.retention import RETENTION_SCHEDULE, Retention
from runce.runs.service import RunService
from runce.stores.queue import RunQueue
from tests.stores.conftest import BACKENDS, StoreMaker
from tests.stores.test_queue_contract import QUEUE_BACKENDS, new
from tests.stores.test_scheduler import Clock

# The stores a deployment shares between workers (memory is one process's).
SHARED = [name for name in ("sqlite", "postgres", "mongo") if name in BACKENDS]


@pytest.fixture(params=QUEUE_BACKENDS)
def maker(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[StoreMaker]:
    from runce.stores import memory

    made = BACKENDS[request.param](request, tmp_path)
    made.name = request.param  # type: ignore[attr-defined]
    yield made
    made.close_all()
    memory.reset()


@pytest.fixture(params=SHARED)
def shared(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[StoreMaker]:
    made = BACKENDS[request.param](request, tmp_path)
    made.name = request.param  # type: ignore[attr-defined]
    yield made
    made.close_all()


def _queue(maker: StoreMaker) -> RunQueue:
    runs: RunQueue = maker.open().runs  # type: ignore[attr-defined]
    return runs


def _finish_all_queued(maker: StoreMaker, finished_at: datetime) -> None:
    """Mark every queued run succeeded at ``finished_at``, in the database itself (making
    thousands of old finished runs through claims would take the test most of its time)."""
    name = maker.name  # type: ignore[attr-defined]
    if name == "postgres":
        import psycopg

        with psycopg.connect(maker.spec.url, autocommit=True) as conn:
            conn.execute(
                f"UPDATE {maker.spec.schema}.runs SET state = 'succeeded', attempt = 1, "
                "started_at = %(at)s, finished_at = %(at)s, updated_at = %(at)s "
                "WHERE state = 'queued'",
                {"at": finished_at},
            )
    elif name == "sqlite":
        import sqlite3

        from runce.timeutil import to_iso

        path = maker.spec.base_dir / ".runce" / "runce.db"
        with sqlite3.connect(path) as conn:
            at = to_iso(finished_at)
            conn.execute(
                "UPDATE runce_runs SET state = 'succeeded', attempt = 1, started_at = ?, "
                "finished_at = ?, updated_at = ? WHERE state = 'queued'",
                (at, at, at),
            )
        conn.close()
    elif name == "mongo":
        import pymongo

        with pymongo.MongoClient(maker.spec.url) as client:
            database = client.get_default_database()
            database["runce.runs"].update_many(
                {"state": "queued"},
                {"$set": {"state": "succeeded", "attempt": 1, "finishedAt": finished_at}},
            )
    else:
        raise AssertionError(name)


def _fill(maker: StoreMaker, count: int, age: timedelta = timedelta(days=2)) -> None:
    """``count`` runs that succeeded ``age`` ago."""
    queue = _queue(maker)
    for start in range(0, count, 1000):
        queue.enqueue([new("old.run") for _ in range(min(1000, count - start))])
    _finish_all_queued(maker, queue.now() - age)


def test_a_prune_batch_deletes_at_most_its_limit_longest_finished_first(
    maker: StoreMaker,
) -> None:
    queue = _queue(maker)
    ids = []
    for _ in range(5):
        [done] = queue.enqueue([new()])
        [claimed] = queue.claim("w1", None, limit=1, lease=30)
        queue.complete([Outcome(claimed.fence, "retry", error="x", run_at=queue.now())])
        [claimed] = queue.claim("w1", None, limit=1, lease=30)
        queue.complete([Outcome(claimed.fence, "failed", error="y")])
        ids.append(done.run.id)
        time.sleep(0.002)  # distinct finishing times, on every store's precision
    [waiting] = queue.enqueue([new()])
    future = queue.now() + timedelta(seconds=5)

    assert queue.prune(future, future, limit=2) == 2
    assert [queue.get(i) is None for i in ids] == [True, True, False, False, False]
    assert queue.attempts(ids[0]) == []
    assert queue.attempts(ids[2]) != []
    assert queue.prune(future, future, limit=2) == 2
    assert queue.prune(future, future, limit=2) == 1
    assert queue.prune(future, future, limit=2) == 0
    assert queue.get(waiting.run.id) is not None


def test_the_service_prunes_in_batches_until_one_comes_back_short(maker: StoreMaker) -> None:
    if maker.name == "memory":  # type: ignore[attr-defined]
        pytest.skip("made in the database itself; memory has the batch test above")
    _fill(maker, 250)
    queue = _queue(maker)
    [recent] = queue.enqueue([new()])
    batches: list[int] = []
    original = queue.prune

    def counted(succeeded: datetime, failed: datetime, limit: int | None = None) -> int:
        gone = original(succeeded, failed, limit)
        batches.append(gone)
        return gone

    queue.prune = counted  # type: ignore[method-assign]
    assert RunService(queue).prune(86400.0, 86400.0, batch=100) == 250
    assert batches == [100, 100, 50]
    assert queue.get(recent.run.id) is not None


def test_claims_keep_working_while_a_prune_of_many_runs_runs(shared: StoreMaker) -> None:
    """A prune of tens of thousands of runs is many short transactions: a worker's claim
    and acknowledgement go on between them rather than waiting for the whole prune."""
    # SecantusDB (the MongoDB-wire server of the tests) is slower than a real MongoDB.
    many, batch = {"mongo": (1_000, 50), "sqlite": (10_000, 250)}.get(
        shared.name,  # type: ignore[attr-defined]
        (30_000, 250),
    )
    _fill(shared, many)
    pruner, worker = _queue(shared), _queue(shared)
    batches: list[float] = []  # when each batch ended
    rounds: list[float] = []  # when each claim-and-acknowledge round ended
    done = threading.Event()
    original = pruner.prune

    def timed(succeeded: datetime, failed: datetime, limit: int | None = None) -> int:
        gone = original(succeeded, failed, limit)
        batches.append(time.monotonic())
        return gone

    pruner.prune = timed  # type: ignore[method-assign]
    result: list[int] = []

    def prune() -> None:
        try:
            result.append(RunService(pruner).prune(86400.0, 86400.0, batch=batch))
        finally:
            done.set()

    thread = threading.Thread(target=prune)
    thread.start()
    claimed_ids = []
    while not done.is_set():
        [queued] = worker.enqueue([new("fresh.run")])
        [claimed] = worker.claim("w1", ["fresh.run"], limit=1, lease=30)
        [landed] = worker.complete([Outcome(claimed.fence, "succeeded")])
        assert claimed.id == queued.run.id
        assert landed is not None
        claimed_ids.append(claimed.id)
        rounds.append(time.monotonic())
    thread.join()

    assert result == [many]
    assert len(batches) == many // batch + 1
    during = [t for t in rounds if batches[0] < t < batches[-2]]
    assert len(during) >= 3, (len(rounds), len(batches))
    # Every run the worker finished meanwhile is still there (they are not old enough).
    assert all(worker.get(i) is not None for i in claimed_ids[:50])


def test_one_worker_prunes_per_tick(shared: StoreMaker) -> None:
    """Several workers look at the retention schedule at every tick: one moves it on and
    prunes, the others find it moved; every tick is pruned on once."""
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    _fill(shared, 300)
    workers = []
    for _ in range(4):
        store: Any = shared.open()
        retention = Retention(
            store.schedules,
            RunService(store.runs),
            succeeded_after=86400.0,
            failed_after=86400.0,
            expression="* * * * * *",  # every second of the test's clock
            batch=100,
            clock=clock,
        )
        retention.sync()
        workers.append(retention)
    ticks = 5
    for _ in range(ticks):
        clock.advance(1.0)
        gate = threading.Barrier(len(workers))

        def look(retention: Retention, gate: threading.Barrier = gate) -> None:
            gate.wait()
            retention.tick()

        threads = [threading.Thread(target=look, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    won = [pruned for w in workers for pruned in w.won]
    assert len(won) == ticks
    assert max(Counter(p.tick for p in won).values()) == 1
    assert sum(p.runs for p in won) == 300
    stored = workers[0].store.get(RETENTION_SCHEDULE)
    assert stored is not None
    assert stored.next_run_at == clock() + timedelta(seconds=1)


def test_the_retention_schedule_switched_off_prunes_nothing(shared: StoreMaker) -> None:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    _fill(shared, 10)
    store: Any = shared.open()
    retention = Retention(
        store.schedules,
        RunService(store.runs),
        succeeded_after=86400.0,
        failed_after=86400.0,
        expression="* * * * * *",
        clock=clock,
    )
    retention.sync()
    store.schedules.set_enabled(RETENTION_SCHEDULE, False)
    clock.advance(2.0)
    retention.tick()
    assert retention.won == []
    store.schedules.set_enabled(RETENTION_SCHEDULE, True)
    retention.tick()
    assert [p.runs for p in retention.won] == [10]


def test_runs_inside_their_retention_are_kept(shared: StoreMaker) -> None:
    _fill(shared, 20, age=timedelta(hours=1))
    queue = _queue(shared)
    service = RunService(queue)
    assert service.prune(86400.0, 86400.0, batch=7) == 0
    assert service.prune(1800.0, 86400.0, batch=7) == 20
