"""Transactional jobs on the stores (R-4): the SQL stores record a run's success in the
transaction of its work, fenced by its attempt; the others fail such a run with one
sentence. (Killed and fenced-out workers as real processes: tests/acceptance.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import runce
from runce.domain.runs import Fence, NewRun, Run
from runce.errors import UsageError
from runce.runs.jobs import Job, JobRegistry
from runce.runs.worker import TRANSACTIONAL_NEEDS_SQL, Worker, WorkerOptions
from runce.stores import memory
from runce.stores.base import Store
from runce.stores.queue import RunQueue, TransactionalRunQueue
from tests.stores.conftest import BACKENDS, StoreMaker


@pytest.fixture(params=[name for name in ("sqlite", "postgres") if name in BACKENDS])
def made(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreMaker]:
    maker = BACKENDS[request.param](request, tmp_path)
    yield maker
    maker.close_all()


def _queue(store: Store) -> Any:
    return store.runs  # type: ignore[attr-defined]


def _table(maker: StoreMaker) -> str:
    # In runce's schema on PostgreSQL: dropped with it after the test.
    schema = maker.spec.schema
    return f"{schema}.probe" if maker.spec.type == "postgresql" and schema else "probe"


def _claimed(queue: RunQueue) -> Run:
    queue.enqueue([NewRun(id=uuid.uuid4().hex, kind="tx.probe", input_json="{}", max_attempts=3)])
    (run,) = queue.claim("w1", ["tx.probe"], 1, 30.0)
    return run


def _rows(queue: TransactionalRunQueue, table: str, fence: Fence) -> int:
    """Counted through a transaction that then fails its fence (and so changes nothing)."""
    found: list[int] = []

    def count(conn: Any) -> str:
        found.append(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        return "null"

    assert queue.succeed_in_transaction(Fence(fence.run_id, 0, "nobody"), count) is None
    return found[0]


def _inserting(table: str, fail: bool = False) -> Any:
    def work(conn: Any) -> str:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (n INTEGER)")
        conn.execute(f"INSERT INTO {table} (n) VALUES (1)")
        if fail:
            raise RuntimeError("the job failed after its insert")
        return '{"inserted":1}'

    return work


def test_the_work_and_the_success_commit_together(made: StoreMaker) -> None:
    queue = _queue(made.open())
    assert isinstance(queue, TransactionalRunQueue)
    run = _claimed(queue)
    table = _table(made)
    landed = queue.succeed_in_transaction(run.fence, _inserting(table))
    assert landed is not None
    after = queue.get(run.id)
    assert (after.state, after.result) == ("succeeded", {"inserted": 1})
    assert _rows(queue, table, run.fence) == 1


def test_a_lost_fence_rolls_the_work_back(made: StoreMaker) -> None:
    queue = _queue(made.open())
    run = _claimed(queue)
    table = _table(made)
    queue.succeed_in_transaction(run.fence, _inserting(table))  # the table, and one row
    second = _claimed(queue)
    stale = Fence(second.id, second.attempt + 1, second.claimed_by or "")
    assert queue.succeed_in_transaction(stale, _inserting(table)) is None
    assert queue.get(second.id).state == "running"
    assert _rows(queue, table, run.fence) == 1


def test_a_failing_job_rolls_its_work_back(made: StoreMaker) -> None:
    queue = _queue(made.open())
    run = _claimed(queue)
    table = _table(made)
    queue.succeed_in_transaction(run.fence, _inserting(table))
    second = _claimed(queue)
    with pytest.raises(RuntimeError, match="after its insert"):
        queue.succeed_in_transaction(second.fence, _inserting(table, fail=True))
    assert queue.get(second.id).state == "running"
    assert _rows(queue, table, run.fence) == 1


def _drain(store: Store, fn: Any) -> Run:
    jobs = JobRegistry()
    kind = f"tx.{uuid.uuid4().hex[:8]}"
    jobs.register(Job(kind, fn, 1, None, transactional=True))
    queue = _queue(store)
    (done,) = queue.enqueue([NewRun(uuid.uuid4().hex, kind, "{}", max_attempts=1)])
    Worker(queue, WorkerOptions(drain=True, poll=0.05), jobs=jobs).run()
    found: Run = queue.get(done.run.id)
    return found


def test_ctx_db_refuses_to_end_the_transaction(made: StoreMaker) -> None:
    def commits(params: Any, ctx: Any) -> None:
        ctx.db.execute("SELECT 1")
        ctx.db.commit()

    run = _drain(made.open(), commits)
    assert run.state == "failed"
    assert "ctx.db.commit() is refused" in (run.error or "")


def test_a_transactional_job_fails_its_run_on_a_store_without_sql(tmp_path: Path) -> None:
    made = BACKENDS["memory"](None, tmp_path)  # type: ignore[arg-type]
    try:
        run = _drain(made.open(), lambda params, ctx: None)
    finally:
        made.close_all()
        memory.reset()
    assert run.state == "failed"
    assert run.error == TRANSACTIONAL_NEEDS_SQL


def test_ctx_db_is_only_for_transactional_jobs_and_not_async() -> None:
    with pytest.raises(UsageError, match="transactional=True needs a plain function"):

        @runce.job(f"tx.{uuid.uuid4().hex[:8]}", transactional=True)
        async def not_plain(params: Any, ctx: Any) -> None:
            return None


def test_a_transactional_job_may_report_progress_and_use_the_store(made: StoreMaker) -> None:
    # Its transaction holds a connection (and on SQLite the write lock) for the whole run:
    # progress and the store's other calls must neither wait for it nor deadlock.
    def busy(params: Any, ctx: Any) -> dict[str, int]:
        ctx.progress(50, "half")
        ctx.db.execute("SELECT 1")
        return {"done": 1}

    run = _drain(made.open(), busy)
    assert (run.state, run.result) == ("succeeded", {"done": 1})


def test_now_and_plain_jobs_get_no_ctx_db(made: StoreMaker) -> None:
    @runce.job(f"tx.{uuid.uuid4().hex[:8]}", transactional=True)
    def archive(params: Any, ctx: Any) -> None:
        return None

    with pytest.raises(UsageError, match=r"\.now\(\) gives no ctx\.db"):
        archive.now({})

    jobs = JobRegistry()
    plain = Job(f"plain.{uuid.uuid4().hex[:8]}", lambda params, ctx: ctx.db, 1, None)
    jobs.register(plain)
    queue = _queue(made.open())
    (done,) = queue.enqueue([NewRun(uuid.uuid4().hex, plain.kind, "{}", max_attempts=1)])
    Worker(queue, WorkerOptions(drain=True, poll=0.05), jobs=jobs).run()
    error = queue.get(done.run.id).error or ""
    assert "ctx.db is given only to jobs declared with transactional=True" in error


def test_subscribers_hear_of_the_success_with_its_result(made: StoreMaker) -> None:
    from runce.runs.events import EventBus

    bus = EventBus()
    heard: list[Any] = []
    bus.subscribe("run.succeeded", heard.append)
    jobs = JobRegistry()
    kind = f"tx.{uuid.uuid4().hex[:8]}"
    jobs.register(Job(kind, lambda params, ctx: {"n": 3}, 1, None, transactional=True))
    queue = _queue(made.open())
    queue.enqueue([NewRun(uuid.uuid4().hex, kind, "{}", max_attempts=1)])
    Worker(queue, WorkerOptions(drain=True, poll=0.05), jobs=jobs, bus=bus).run()
    (event,) = heard
    assert (event.run.state, event.run.result) == ("succeeded", {"n": 3})
