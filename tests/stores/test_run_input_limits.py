"""What no input may do to a queue, on every store with one: be stored when no store can
read it back, stop the other runs when a row is unreadable anyway, or be claimed out of the
order it was enqueued in."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from runce.domain.runs import RunFilter, Unreadable
from runce.errors import InvalidInput, UsageError
from runce.runs.jobs import Job, JobRegistry
from runce.runs.service import RunService
from runce.runs.worker import Worker, WorkerOptions
from runce.stores.queue import RunQueue
from runce.timeutil import UNREADABLE_TIME
from tests.stores.conftest import BACKENDS, StoreMaker
from tests.stores.test_queue_contract import QUEUE_BACKENDS


@pytest.fixture(params=QUEUE_BACKENDS)
def qmaker(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[StoreMaker]:
    from runce.stores import memory

    made = BACKENDS[request.param](request, tmp_path)
    yield made
    made.close_all()
    memory.reset()


@pytest.fixture
def queue(qmaker: StoreMaker) -> RunQueue:
    runs: RunQueue = qmaker.open().runs  # type: ignore[attr-defined]
    return runs


def _claim_all(queue: RunQueue, batch: int) -> list[Any]:
    inputs = []
    while claimed := queue.claim("w", None, batch, 60):
        inputs += [run.input for run in claimed]
    return inputs


def test_the_runs_of_one_enqueue_many_are_claimed_in_the_order_given(queue: RunQueue) -> None:
    service = RunService(queue)
    for _ in range(3):  # three batches in one millisecond or a few: each after the last
        service.enqueue_many("order.check", [{"n": n} for n in range(300)])
    claimed = _claim_all(queue, 7)
    assert claimed == [{"n": n} for n in range(300)] * 3


def _nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


BAD_ENQUEUES: dict[str, dict[str, Any]] = {
    "input surrogate": {"input": {"a": "\ud800"}},
    "input nul": {"input": {"a": "\x00"}},
    "input 1000 deep": {"input": _nested(1000)},
    "input 2^63": {"input": {"n": 2**63}},
    "input -2^63-1": {"input": [-(2**63) - 1]},
    "kind surrogate": {"kind": "k\ud800"},
    "kind empty": {"kind": ""},
    "project surrogate": {"project_id": "p\udfff"},
    "project nul": {"project_id": "p\x00"},
    "correlation surrogate": {"correlation_id": "c\ud800"},
    "key surrogate": {"idempotency_key": "k\ud800"},
    "priority 2^63": {"priority": 2**63},
    "max_attempts 1e20": {"max_attempts": 10**20},
    "max_attempts 0": {"max_attempts": 0},
    "run_at year 1": {"run_at": datetime(1, 1, 1, tzinfo=UTC)},
    "run_at year 9999 east": {
        "run_at": datetime(9999, 12, 31, 23, tzinfo=timezone(-timedelta(hours=5)))
    },
}


@pytest.mark.parametrize("bad", sorted(BAD_ENQUEUES))
def test_an_enqueue_no_store_can_keep_is_refused_with_a_sentence_and_stores_nothing(
    queue: RunQueue, bad: str
) -> None:
    service = RunService(queue)
    call = {"kind": "limits.check", "input": None, **BAD_ENQUEUES[bad]}
    kind = call.pop("kind")
    with pytest.raises((InvalidInput, UsageError)) as caught:
        service.enqueue(kind, **call)
    message = str(caught.value)
    assert "\n" not in message
    message.encode()  # printable wherever it is shown: no lone surrogate in the sentence
    key = call.pop("idempotency_key", None)
    with pytest.raises((InvalidInput, UsageError)):  # a batch stores none of its runs
        service.enqueue_many(kind, [1, call.pop("input")], idempotency_keys=[None, key], **call)
    assert service.page().runs == []
    good = service.enqueue("limits.check", {"a": "\u00e9"})
    assert [run.id for run in queue.claim("w", None, 10, 60)] == [good.id]


def test_the_edges_of_every_limit_are_kept_on_every_store(queue: RunQueue) -> None:
    service = RunService(queue)
    edge = {"max": 2**63 - 1, "min": -(2**63), "deep": _nested(63)}
    run = service.enqueue(
        "k" * 200,
        edge,
        priority=1_000_000,
        max_attempts=1000,
        run_at=datetime(1970, 1, 1, tzinfo=UTC),
        project_id="p" * 200,
    )
    [claimed] = queue.claim("w", None, 10, 60)
    assert claimed.id == run.id
    assert claimed.input == edge
    assert (claimed.priority, claimed.max_attempts) == (1_000_000, 1000)


# -- one unreadable row, written around runce ----------------------------------------------------


def _sqlite_write(qmaker: StoreMaker, sql: str, *params: Any) -> None:
    """Change runs with SQLite's own tools, as a hand edit would."""
    path = Path(qmaker.spec.base_dir or ".") / ".runce" / "runce.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(sql, params)


def _postgres_write(qmaker: StoreMaker, sql: str, *params: Any) -> None:
    """The same on PostgreSQL; ``{runs}`` names the store's runs table."""
    import psycopg

    with psycopg.connect(qmaker.spec.url, autocommit=True) as conn:
        conn.execute(sql.format(runs=f"{qmaker.spec.schema}.runs"), params)  # type: ignore[arg-type]


def _mongo_write(qmaker: StoreMaker, run_id: str, fields: dict[str, Any]) -> None:
    """The same on MongoDB: ``$set`` these fields of one run's document."""
    import pymongo

    with pymongo.MongoClient(qmaker.spec.url) as client:
        runs = client.get_default_database()[qmaker.open().runs._conn.location.runs]  # type: ignore[attr-defined]
        runs.update_one({"_id": run_id}, {"$set": fields})


def _recording(queue: RunQueue, kind: str) -> tuple[RunService, list[Any]]:
    """A service whose one job, ``kind``, records the input of each run it is given."""
    jobs = JobRegistry()
    seen: list[Any] = []
    jobs.register(Job(kind, seen.append))
    return RunService(queue, jobs=jobs), seen


def _drain(service: RunService) -> Any:
    options = WorkerOptions(lease=30, poll=0.05, drain=True, max_time=60, shutdown_timeout=5)
    return Worker(service.queue, options, jobs=service.jobs).run()


def _spoil(qmaker: StoreMaker, backend: str, run_id: str) -> str:
    """Make one run's row unreadable with the database's own tools; say how."""
    if backend == "sqlite":
        # What SQLite's JSON functions made of "\ud800": bytes that are not UTF-8.
        _sqlite_write(
            qmaker,
            "UPDATE runce_runs SET input = CAST(x'7b2261223a22eda080227d' AS TEXT), "
            "correlation_id = CAST(x'63ff' AS TEXT) WHERE id = ?",
            run_id,
        )
        return "its text is not UTF-8"
    if backend == "postgres":
        deep = "[" * 5000 + "]" * 5000  # JSONB keeps it; Python's decoder cannot read it
        _postgres_write(qmaker, "UPDATE {runs} SET input = %s::jsonb WHERE id = %s", deep, run_id)
        return "nested too deeply"
    if backend == "mongo":
        import bson

        # The server refuses text that is not UTF-8; a value JSON has no form for it keeps.
        _mongo_write(qmaker, run_id, {"input": {"at": bson.ObjectId()}})
        return "it holds a value of type ObjectId, which is not JSON"
    pytest.skip(f"the {backend} store keeps no row runce cannot read back")


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    # Python's default recursion limit, which a tool run earlier in the process (mypy, for
    # one) may have raised: the deep row above is unreadable under the default.
    raised = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        yield str(request.node.callspec.params["qmaker"])
    finally:
        sys.setrecursionlimit(raised)


def test_one_unreadable_row_stops_no_list_cancel_or_claim_of_the_others(
    qmaker: StoreMaker, queue: RunQueue, backend: str
) -> None:
    service = RunService(queue)
    before = service.enqueue("rows.check", {"n": 1})
    bad = service.enqueue("rows.check", {"n": 2}, correlation_id="c")
    after = service.enqueue_many("rows.check", [{"n": 3}, {"n": 4}])
    why = _spoil(qmaker, backend, bad.id)

    listed = {run.id: run for run in service.page(limit=10).runs}
    assert set(listed) == {before.id, bad.id, *(run.id for run in after)}
    marker = listed[bad.id].input
    assert isinstance(marker, Unreadable)
    assert why in marker.reason
    assert str(marker).startswith("<unreadable: ")
    assert isinstance(service.get(bad.id).input, Unreadable)
    assert service.cancel(after[1].id).state == "canceled"

    claimed = {run.id: run for run in queue.claim("w", None, 10, 60)}
    assert set(claimed) == {before.id, bad.id, after[0].id}
    assert isinstance(claimed[bad.id].input, Unreadable)
    assert claimed[before.id].input == {"n": 1}


def test_a_worker_fails_the_run_of_an_unreadable_row_and_runs_the_others(
    qmaker: StoreMaker, queue: RunQueue, backend: str
) -> None:
    service, seen = _recording(queue, "rows.work")
    runs = service.enqueue_many("rows.work", [{"n": n} for n in range(5)])
    _spoil(qmaker, backend, runs[2].id)
    summary = _drain(service)

    assert sorted(item["n"] for item in seen) == [0, 1, 3, 4]
    assert (summary.succeeded, summary.failed) == (4, 1)
    failed = service.get(runs[2].id)
    assert failed.state == "failed"
    assert failed.error is not None
    assert "its stored input cannot be read: " in failed.error
    assert all(service.get(run.id).state == "succeeded" for i, run in enumerate(runs) if i != 2)


def _spoil_trace_context(qmaker: StoreMaker, backend: str, run_id: str) -> None:
    """Write one run's trace context around runce: not JSON, not a table, not texts."""
    if backend == "sqlite":
        _sqlite_write(
            qmaker, "UPDATE runce_runs SET trace_context = '{not json' WHERE id = ?", run_id
        )
    elif backend == "postgres":
        _postgres_write(qmaker, "UPDATE {runs} SET trace_context = '[1, 2]' WHERE id = %s", run_id)
    elif backend == "mongo":
        _mongo_write(qmaker, run_id, {"traceContext": "00-not-a-table"})
    else:
        pytest.skip(f"the {backend} store keeps what it was given")


def test_a_trace_context_written_around_runce_loses_its_trace_not_its_run(
    qmaker: StoreMaker, queue: RunQueue, backend: str
) -> None:
    service, seen = _recording(queue, "rows.traced")
    context = {"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"}
    runs = [
        service.enqueue_results("rows.traced", [{"n": n}], trace_context=context)[0].run
        for n in range(3)
    ]
    _spoil_trace_context(qmaker, backend, runs[1].id)

    listed = {run.id: run for run in service.page(limit=10).runs}
    assert listed[runs[1].id].trace_context is None
    kept = listed[runs[0].id].trace_context  # its enqueue's span, where one was recorded
    assert kept is not None
    assert kept["traceparent"].split("-")[1] == "ab" * 16
    assert service.get(runs[1].id).trace_context is None
    assert _drain(service).succeeded == 3
    assert sorted(item["n"] for item in seen) == [0, 1, 2]


# A hand edit of one run (SQLite's columns, MongoDB's fields) and what that run reads as.
_HAND_EDITS = {
    "time": (
        "created_at = 'yesterday', updated_at = 42",
        {"createdAt": "yesterday"},
        lambda run: run.created_at == UNREADABLE_TIME,
    ),
    "count": (
        "priority = 'high', attempt = 'x'",
        {"priority": "high", "attempt": "x", "maxAttempts": None},
        lambda run: (run.priority, run.attempt) == (0, 0),
    ),
}


@pytest.mark.parametrize("edit", list(_HAND_EDITS))
def test_a_time_or_count_written_around_runce_reads_as_its_default_and_stops_nothing(
    qmaker: StoreMaker, queue: RunQueue, backend: str, edit: str
) -> None:
    columns, fields, reads_as_default = _HAND_EDITS[edit]
    service, seen = _recording(queue, "rows.edited")
    runs = service.enqueue_many("rows.edited", [{"n": n} for n in range(3)])
    if backend == "sqlite":
        _sqlite_write(qmaker, f"UPDATE runce_runs SET {columns} WHERE id = ?", runs[1].id)
    elif backend == "mongo":
        _mongo_write(qmaker, runs[1].id, fields)
    else:
        pytest.skip(f"the {backend} store keeps only times and whole numbers there")

    listed = {run.id: run for run in service.page(limit=10).runs}
    assert reads_as_default(listed[runs[1].id])
    assert listed[runs[0].id] == service.get(runs[0].id)
    assert (listed[runs[0].id].created_at, listed[runs[0].id].priority) == (
        runs[0].created_at,
        runs[0].priority,
    )
    assert _drain(service).succeeded == 3
    assert sorted(item["n"] for item in seen) == [0, 1, 2]


def test_a_result_no_store_can_keep_fails_its_run_with_a_sentence(queue: RunQueue) -> None:
    jobs = JobRegistry()
    jobs.register(Job("results.check", lambda params: params["give"]))
    service = RunService(queue, jobs=jobs)
    huge = service.enqueue("results.check", {"give": {"n": 2**62}}, max_attempts=1)
    fine = service.enqueue("results.check", {"give": {"a": "\u00e9"}}, max_attempts=1)
    # A job may compute what no input could hold: 2^64, or a lone surrogate.
    jobs.register(Job("results.bad", lambda params: [2**64, "\ud800"][params]))
    bad = service.enqueue_many("results.bad", [0, 1], max_attempts=1)
    options = WorkerOptions(lease=30, poll=0.05, drain=True, max_time=60, shutdown_timeout=5)
    Worker(queue, options, jobs=jobs).run()

    assert service.get(huge.id).result == {"n": 2**62}
    assert service.get(fine.id).result == {"a": "\u00e9"}
    for run, says in zip(bad, ["signed 64-bit", "lone surrogate"], strict=True):
        failed = service.get(run.id)
        assert failed.state == "failed"
        assert failed.error is not None
        assert says in failed.error


def test_reads_asked_about_text_no_store_can_take_are_refused_with_a_sentence(
    queue: RunQueue,
) -> None:
    service = RunService(queue)
    run = service.enqueue("lookups.check", 1)
    for call in (
        lambda: service.get("x\udcff"),
        lambda: service.cancel("x\ud800"),
        lambda: service.retry("x\x00"),
        lambda: service.attempts("x\udcff"),
        lambda: service.page(RunFilter(project_id="p\udcff")),
        lambda: service.page(RunFilter(kind="k\x00")),
    ):
        with pytest.raises(UsageError, match="is not valid text"):
            call()
    assert [found.id for found in service.page().runs] == [run.id]
