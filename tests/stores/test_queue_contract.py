"""The run-queue contract: every store with runs passes this suite or is not done."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from runce.domain.runs import (
    COUNT_WINDOW,
    ClaimRequest,
    Fence,
    NewRun,
    Outcome,
    Run,
    RunFilter,
    WorkerInfo,
    run_after,
)
from runce.stores.base import Store
from runce.stores.queue import RunQueue
from tests.stores.conftest import BACKENDS, StoreMaker

# Stores with a run queue (the file store has none, by design); a store joins this list
# when its queue lands, and from then on must pass every test here.
WITH_QUEUES = ("memory", "sqlite", "postgres", "mongo")
QUEUE_BACKENDS = [name for name in WITH_QUEUES if name in BACKENDS]


@pytest.fixture(params=QUEUE_BACKENDS)
def qmaker(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[StoreMaker]:
    from runce.stores import memory

    made = BACKENDS[request.param](request, tmp_path)
    if made.open().runs is None:
        made.close_all()
        pytest.fail(f"the {request.param} store has no run queue")
    yield made
    made.close_all()
    memory.reset()


@pytest.fixture
def queue(qmaker: StoreMaker) -> RunQueue:
    return _runs(qmaker.open())


def _runs(store: Store) -> RunQueue:
    runs: RunQueue = store.runs  # type: ignore[attr-defined]
    return runs


def new(kind: str = "email.send", payload: Any = None, **fields: Any) -> NewRun:
    data = {"to": "a@example.com"} if payload is None else payload
    return NewRun(
        id=fields.pop("id", uuid.uuid4().hex),
        kind=kind,
        input_json=json.dumps(data, sort_keys=True, separators=(",", ":")),
        max_attempts=fields.pop("max_attempts", 3),
        **fields,
    )


def _close(a: Any, b: Any, slack: float = 2.0) -> bool:
    return abs((a - b).total_seconds()) < slack


# --- enqueue ----------------------------------------------------------------------------------


def test_enqueue_stores_a_queued_run(queue: RunQueue) -> None:
    payload = {"to": "ä@example.com", "n": [1, 2.5, None, True], "deep": {"x": "y"}}
    [done] = queue.enqueue([new(payload=payload, priority=5, project_id="p1", correlation_id="c1")])
    assert done.created
    run = done.run
    assert (run.state, run.attempt, run.max_attempts, run.priority) == ("queued", 0, 3, 5)
    assert run.input == payload
    assert (run.project_id, run.correlation_id, run.idempotency_key) == ("p1", "c1", None)
    assert run.created_at.utcoffset() == timedelta(0)
    assert _close(run.run_at, queue.now())
    assert queue.get(run.id) == run
    assert queue.get("nope") is None


def test_the_same_idempotency_key_returns_the_same_run(queue: RunQueue) -> None:
    [first] = queue.enqueue([new(idempotency_key="k1")])
    [again, other] = queue.enqueue([new(idempotency_key="k1"), new(idempotency_key="k2")])
    assert first.created
    assert not again.created
    assert again.run.id == first.run.id
    assert other.created
    assert other.run.id != first.run.id


def test_one_batch_keeps_its_order_and_dedupes_within_itself(queue: RunQueue) -> None:
    batch = [new(idempotency_key="same"), new(), new(idempotency_key="same")]
    results = queue.enqueue(batch)
    assert [r.created for r in results] == [True, True, False]
    assert results[2].run.id == results[0].run.id
    assert results[1].run.id == batch[1].id


# --- claim ------------------------------------------------------------------------------------


def test_claim_takes_due_runs_by_priority_then_run_at(queue: RunQueue) -> None:
    now = queue.now()
    low = new(priority=0, run_at=now - timedelta(seconds=30))
    high = new(priority=9, run_at=now - timedelta(seconds=1))
    older = new(priority=0, run_at=now - timedelta(seconds=60))
    future = new(priority=99, run_at=now + timedelta(hours=1))
    other_kind = new(kind="report.build", priority=50)
    queue.enqueue([low, high, older, future, other_kind])

    claimed = queue.claim("w1", ["email.send"], limit=2, lease=30)
    assert [r.id for r in claimed] == [high.id, older.id]
    run = claimed[0]
    assert (run.state, run.attempt, run.claimed_by) == ("running", 1, "w1")
    assert run.lease_expires_at is not None
    assert _close(run.lease_expires_at, queue.now() + timedelta(seconds=30))
    assert run.started_at is not None
    assert queue.get(run.id) == run

    assert [r.id for r in queue.claim("w1", ["email.send"], limit=10, lease=30)] == [low.id]
    assert [r.id for r in queue.claim("w2", None, limit=10, lease=30)] == [other_kind.id]
    assert queue.claim("w2", None, limit=10, lease=30) == []


def test_racing_claimers_never_share_a_run(qmaker: StoreMaker) -> None:
    _runs(qmaker.open()).enqueue([new() for _ in range(300)])
    queues = [_runs(qmaker.open()) for _ in range(6)]
    claimed: list[str] = []
    mutex = threading.Lock()
    barrier = threading.Barrier(len(queues))

    def work(q: RunQueue, name: str) -> None:
        barrier.wait()
        while batch := q.claim(name, None, limit=7, lease=30):
            with mutex:
                claimed.extend(r.id for r in batch)

    threads = [threading.Thread(target=work, args=(q, f"w{i}")) for i, q in enumerate(queues)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = Counter(claimed)
    assert len(counts) == 300
    assert set(counts.values()) == {1}


# --- heartbeat, progress, complete -----------------------------------------------------------


def _claim_one(queue: RunQueue, worker: str = "w1", **fields: Any) -> Any:
    queue.enqueue([new(**fields)])
    [run] = queue.claim(worker, None, limit=1, lease=30)
    return run


def _complete(queue: RunQueue, claimed: Run, outcome: Outcome) -> Run | None:
    """Apply one outcome; the run after it, rebuilt from what landed, checked against the
    store: the Landed a store answers with must give the run exactly as stored."""
    [landed] = queue.complete([outcome])
    if landed is None:
        return None
    after = run_after(claimed, outcome, landed)
    assert queue.get(claimed.id) == after
    return after


def test_heartbeat_extends_the_lease_and_reports_cancel_and_loss(queue: RunQueue) -> None:
    run = _claim_one(queue)
    stranger = Fence(run.id, run.attempt, "someone-else")
    assert queue.heartbeat([stranger], lease=120) == {run.id: "lost"}
    beats = queue.heartbeat([run.fence, Fence("missing", 1, "w1")], lease=120)
    assert beats == {run.id: "ok", "missing": "lost"}
    after = queue.get(run.id)
    assert after is not None
    assert after.lease_expires_at is not None
    assert _close(after.lease_expires_at, queue.now() + timedelta(seconds=120))

    queue.cancel(run.id)
    assert queue.heartbeat([run.fence], lease=30) == {run.id: "cancel"}


def test_progress_is_fenced(queue: RunQueue) -> None:
    run = _claim_one(queue)
    assert queue.progress(run.fence, 40, "halfway there")
    current = queue.get(run.id)
    assert current is not None
    assert (current.progress, current.progress_message) == (40, "halfway there")
    assert not queue.progress(Fence(run.id, run.attempt + 1, "w1"), 50, None)


def test_success_stores_the_result_once(queue: RunQueue) -> None:
    run = _claim_one(queue)
    done = _complete(
        queue,
        run,
        Outcome(run.fence, "succeeded", result_json='{"sent":true}', output_ref="s3://bucket/out"),
    )
    assert done is not None
    assert (done.state, done.result, done.output_ref) == (
        "succeeded",
        {"sent": True},
        "s3://bucket/out",
    )
    assert done.finished_at is not None
    assert queue.get(run.id) == done
    assert queue.complete([Outcome(run.fence, "failed", error="late")]) == [None]
    assert queue.attempts(run.id) == []


def test_a_retry_spends_the_attempt_and_waits(queue: RunQueue) -> None:
    run = _claim_one(queue)
    delay = 1.0  # long enough for the claim below to come first on a busy machine
    later = queue.now() + timedelta(seconds=delay)
    after = _complete(queue, run, Outcome(run.fence, "retry", error="smtp down", run_at=later))
    assert after is not None
    assert (after.state, after.attempt, after.error) == ("queued", 1, "smtp down")
    assert after.claimed_by is None
    assert queue.claim("w1", None, limit=1, lease=30) == []
    deadline = time.monotonic() + 20 * delay
    while not (claimed := queue.claim("w2", None, limit=1, lease=30)):
        assert time.monotonic() < deadline, "the retry never came due"
        time.sleep(0.05)
    assert queue.now() >= later
    [again] = claimed
    assert (again.id, again.attempt, again.claimed_by) == (run.id, 2, "w2")
    [record] = queue.attempts(run.id)
    assert (record.attempt, record.worker_id, record.outcome, record.error) == (
        1,
        "w1",
        "retry",
        "smtp down",
    )


def test_a_final_failure_and_a_cooperative_cancel_finish_the_run(queue: RunQueue) -> None:
    failing = _claim_one(queue)
    failed = _complete(queue, failing, Outcome(failing.fence, "failed", error="boom"))
    assert failed is not None
    assert (failed.state, failed.error) == ("failed", "boom")
    assert failed.finished_at is not None

    stopping = _claim_one(queue)
    queue.cancel(stopping.id)
    canceled = _complete(queue, stopping, Outcome(stopping.fence, "canceled", error="canceled"))
    assert canceled is not None
    assert canceled.state == "canceled"
    assert canceled.cancel_requested
    assert [a.outcome for a in queue.attempts(stopping.id)] == ["canceled"]


def test_a_released_run_goes_back_without_spending_its_attempt(queue: RunQueue) -> None:
    run = _claim_one(queue)
    back = _complete(queue, run, Outcome(run.fence, "released"))
    assert back is not None
    assert (back.state, back.attempt, back.claimed_by) == ("queued", 0, None)
    [again] = queue.claim("w2", None, limit=1, lease=30)
    assert again.attempt == 1


def test_many_outcomes_in_one_call(queue: RunQueue) -> None:
    queue.enqueue([new() for _ in range(5)])
    runs = queue.claim("w1", None, limit=5, lease=30)
    outcomes = [Outcome(r.fence, "succeeded", result_json=str(i)) for i, r in enumerate(runs)]
    outcomes.append(Outcome(Fence("missing", 1, "w1"), "succeeded"))
    done = queue.complete(outcomes)
    assert done[-1] is None
    after = [run_after(r, o, d) for r, o, d in zip(runs, outcomes, done[:-1], strict=False) if d]
    assert [a.result for a in after] == [0, 1, 2, 3, 4]
    assert after == [queue.get(r.id) for r in runs]


# --- cancel, retry, reclaim -------------------------------------------------------------------


def test_cancel_a_queued_run_at_once(queue: RunQueue) -> None:
    [queued] = queue.enqueue([new()])
    canceled = queue.cancel(queued.run.id)
    assert canceled is not None
    assert canceled.state == "canceled"
    assert canceled.finished_at is not None
    assert queue.claim("w1", None, limit=5, lease=30) == []
    assert queue.cancel("missing") is None


def test_cancel_and_retry_leave_other_states_alone(queue: RunQueue) -> None:
    run = _claim_one(queue)
    queue.complete([Outcome(run.fence, "succeeded")])
    unchanged = queue.cancel(run.id)
    assert unchanged is not None
    assert (unchanged.state, unchanged.cancel_requested) == ("succeeded", False)
    retried = queue.retry(run.id)
    assert retried is not None
    assert retried.state == "succeeded"


def test_retry_gives_a_failed_run_one_more_attempt(queue: RunQueue) -> None:
    run = _claim_one(queue, max_attempts=1)
    queue.complete([Outcome(run.fence, "failed", error="bad")])
    retried = queue.retry(run.id)
    assert retried is not None
    assert (retried.state, retried.max_attempts, retried.finished_at) == ("queued", 2, None)
    [again] = queue.claim("w1", None, limit=1, lease=30)
    assert again.attempt == 2


def _a_traceback(where: str) -> str:
    frame = '  File "/srv/app/jobs.py", line {n}, in {where}\n    step_{n}()\n'
    lines = [frame.format(n=n, where=where) for n in range(300)]
    return "Traceback (most recent call last):\n" + "".join(lines) + f"RuntimeError: {where} ✗\n"


def test_a_failed_attempt_keeps_its_traceback(queue: RunQueue) -> None:
    stack = _a_traceback("charge")  # multi-line, non-ASCII, some 15 KiB
    run = _claim_one(queue, max_attempts=1)
    failed = _complete(queue, run, Outcome(run.fence, "failed", error="boom", traceback=stack))
    assert failed is not None
    assert failed.error == "boom"  # the run keeps the error; the attempt has its traceback
    [record] = queue.attempts(run.id)
    assert (record.outcome, record.error, record.traceback) == ("failed", "boom", stack)

    stopping = _claim_one(queue)
    queue.cancel(stopping.id)
    queue.complete([Outcome(stopping.fence, "canceled", error="canceled")])
    assert [a.traceback for a in queue.attempts(stopping.id)] == [None]


def test_a_retried_run_keeps_each_attempts_own_traceback(queue: RunQueue) -> None:
    first, second = _a_traceback("first"), _a_traceback("second")
    run = _claim_one(queue, max_attempts=2)
    retry = Outcome(run.fence, "retry", error="one", run_at=queue.now(), traceback=first)
    queue.complete([retry])
    [again] = queue.claim("w2", None, limit=1, lease=30)
    # In one batch with an outcome of another run, which has none.
    other = _claim_one(queue)
    queue.complete(
        [
            Outcome(again.fence, "failed", error="two", traceback=second),
            Outcome(other.fence, "failed", error="three"),
        ]
    )
    records = queue.attempts(run.id)
    assert [(a.attempt, a.worker_id, a.error, a.traceback) for a in records] == [
        (1, "w1", "one", first),
        (2, "w2", "two", second),
    ]
    assert [a.traceback for a in queue.attempts(other.id)] == [None]


def test_reclaim_returns_expired_leases_or_fails_spent_runs(queue: RunQueue) -> None:
    queue.enqueue([new(max_attempts=2), new(max_attempts=1)])
    twice, once = sorted(queue.claim("w1", None, limit=2, lease=0.2), key=lambda r: -r.max_attempts)
    time.sleep(0.35)
    changed = {r.id: r for r in queue.reclaim()}
    assert changed[twice.id].state == "queued"
    assert changed[twice.id].attempt == 1
    assert changed[once.id].state == "failed"
    assert "lease" in (changed[once.id].error or "")
    assert [a.outcome for a in queue.attempts(twice.id)] == ["lease-expired"]
    assert queue.reclaim() == []
    # the worker that lost the lease can no longer write the outcome
    assert queue.complete([Outcome(twice.fence, "succeeded")]) == [None]
    [again] = queue.claim("w2", None, limit=1, lease=30)
    assert (again.id, again.attempt) == (twice.id, 2)


# --- reading and upkeep -----------------------------------------------------------------------


def test_pages_are_newest_first_filtered_and_stable(queue: RunQueue) -> None:
    for i in range(7):
        queue.enqueue([new(kind="a" if i % 2 else "b", project_id=f"p{i % 3}")])
        time.sleep(0.003)
    everything = queue.page(RunFilter(), None, 100)
    assert len(everything) == 7
    assert [r.created_at for r in everything] == sorted(
        (r.created_at for r in everything), reverse=True
    )
    first = queue.page(RunFilter(), None, 3)
    queue.enqueue([new()])  # a new run must not shift the next page
    second = queue.page(RunFilter(), (first[-1].created_at, first[-1].id), 3)
    assert [r.id for r in first + second] == [r.id for r in everything[:6]]

    assert {r.kind for r in queue.page(RunFilter(kind="a"), None, 100)} == {"a"}
    assert {r.project_id for r in queue.page(RunFilter(project_id="p1"), None, 100)} == {"p1"}
    assert queue.page(RunFilter(state="running"), None, 100) == []
    middle = everything[3].created_at
    assert all(r.created_at >= middle for r in queue.page(RunFilter(since=middle), None, 100))
    assert all(r.created_at < middle for r in queue.page(RunFilter(before=middle), None, 100))


def test_pages_find_runs_by_ids_idempotency_key_and_correlation_id(queue: RunQueue) -> None:
    keyed = queue.enqueue([new(idempotency_key="order-7", correlation_id="req-1")])[0].run
    other = queue.enqueue([new(correlation_id="req-1")])[0].run
    queue.enqueue([new(correlation_id="req-2")])
    by_key = queue.page(RunFilter(idempotency_key="order-7"), None, 10)
    assert [r.id for r in by_key] == [keyed.id]
    by_correlation = queue.page(RunFilter(correlation_id="req-1"), None, 10)
    assert {r.id for r in by_correlation} == {keyed.id, other.id}
    assert queue.page(RunFilter(correlation_id="req-9"), None, 10) == []
    by_ids = queue.page(RunFilter(ids=(other.id, keyed.id, "no-such-run")), None, 10)
    assert {r.id for r in by_ids} == {other.id, keyed.id}
    assert queue.page(RunFilter(ids=()), None, 10) == []


def test_pages_of_several_projects_hold_their_runs_and_no_others(queue: RunQueue) -> None:
    made: dict[str | None, list[str]] = {}
    for i in range(12):
        project = ("shop", "blog", "news", None)[i % 4]
        run = queue.enqueue([new(kind="a" if i % 3 else "b", project_id=project)])[0].run
        made.setdefault(project, []).append(run.id)
        time.sleep(0.003)
    both = queue.page(RunFilter(project_ids=("shop", "blog")), None, 100)
    assert {r.id for r in both} == set(made["shop"] + made["blog"])
    assert [r.created_at for r in both] == sorted((r.created_at for r in both), reverse=True)
    first = queue.page(RunFilter(project_ids=("shop", "blog")), None, 4)
    rest = queue.page(
        RunFilter(project_ids=("shop", "blog")), (first[-1].created_at, first[-1].id), 4
    )
    assert [r.id for r in first + rest] == [r.id for r in both]
    oldest = queue.page(RunFilter(project_ids=("blog", "shop"), order="oldest"), None, 100)
    assert [r.id for r in oldest] == [r.id for r in reversed(both)]
    kind_a = queue.page(RunFilter(kind="a", project_ids=("shop", "blog")), None, 100)
    assert {r.id for r in kind_a} == {r.id for r in both if r.kind == "a"}
    one = queue.page(RunFilter(project_ids=("news",)), None, 100)
    assert {r.id for r in one} == set(made["news"])
    within = RunFilter(project_id="blog", project_ids=("shop", "blog"))
    assert {r.id for r in queue.page(within, None, 100)} == set(made["blog"])
    outside = RunFilter(project_id="news", project_ids=("shop", "blog"))
    assert queue.page(outside, None, 100) == []
    assert queue.page(RunFilter(project_ids=()), None, 100) == []
    by_ids = RunFilter(ids=(made["news"][0], made["shop"][0]), project_ids=("shop", "blog"))
    assert [r.id for r in queue.page(by_ids, None, 10)] == [made["shop"][0]]


def test_stats_count_active_runs_and_what_finished_since(queue: RunQueue) -> None:
    before = queue.now() - timedelta(seconds=5)
    assert queue.stats(before).active == {}
    queue.enqueue([new(kind="a"), new(kind="a"), new(kind="b")])
    queue.enqueue([new(kind="a", run_at=queue.now() + timedelta(hours=1))])

    def take(kind: str) -> Run:
        queue.enqueue([new(kind=kind, max_attempts=1)])
        [run] = queue.claim("w1", [kind], limit=1, lease=30)
        return run

    queue.complete([Outcome(take("b").fence, "succeeded")])
    queue.complete([Outcome(take("c").fence, "failed", error="boom")])
    take("d")
    stats = queue.stats(before)
    assert dict(stats.active) == {("queued", "a"): 3, ("queued", "b"): 1, ("running", "d"): 1}
    assert dict(stats.finished) == {("succeeded", "b"): 1, ("failed", "c"): 1}
    assert stats.capped == frozenset()
    queued = queue.page(RunFilter(state="queued"), None, 10)
    due = [r.run_at for r in queued if r.run_at <= stats.now]
    assert stats.oldest_queued == min(due)
    assert _close(stats.now, queue.now())
    later = queue.stats(queue.now() + timedelta(seconds=5))
    assert dict(later.finished) == {}

    capped = queue.stats(before, cap=2)  # queued runs are counted up to the cap per kind
    assert {k: n for k, n in capped.active.items() if k[0] == "queued"} == {
        ("queued", "a"): 2,
        ("queued", "b"): 1,
    }
    assert capped.capped == {"queued"}
    capped_finished = queue.stats(before, cap=1)
    assert sum(capped_finished.finished.values()) == 1
    assert "succeeded" in capped_finished.capped


def test_prune_deletes_old_finished_runs_and_frees_their_keys(queue: RunQueue) -> None:
    done = _claim_one(queue, idempotency_key="once")
    queue.complete([Outcome(done.fence, "succeeded")])
    failed = _claim_one(queue)
    queue.complete([Outcome(failed.fence, "retry", error="x", run_at=queue.now())])
    [failed] = queue.claim("w1", None, limit=1, lease=30)
    queue.complete([Outcome(failed.fence, "failed", error="y")])
    [waiting] = queue.enqueue([new()])

    future = queue.now() + timedelta(seconds=5)
    assert queue.prune(succeeded_before=future, failed_before=queue.now() - timedelta(days=1)) == 1
    assert queue.get(done.id) is None
    assert queue.prune(succeeded_before=future, failed_before=future) == 1
    assert queue.attempts(failed.id) == []
    assert queue.get(waiting.run.id) is not None
    [reused] = queue.enqueue([new(idempotency_key="once")])
    assert reused.created


def test_wait_for_work_wakes_on_an_enqueue_elsewhere(qmaker: StoreMaker) -> None:
    waiter, writer = _runs(qmaker.open()), _runs(qmaker.open())
    waiter.wait_for_work(0.01)  # any set-up (a LISTEN) happens on the first call
    timer = threading.Timer(0.2, writer.enqueue, args=([new()],))
    started = time.monotonic()
    timer.start()
    waiter.wait_for_work(10)
    timer.join()
    assert time.monotonic() - started < 5, "wait_for_work slept through an enqueue"


def test_workers_are_recorded(queue: RunQueue) -> None:
    now = queue.now()
    info = WorkerInfo(
        id="w-1", host="h", pid=7, started_at=now, last_seen=now, concurrency=4, kinds=("a", "b")
    )
    queue.worker_seen(info)
    later = now + timedelta(seconds=5)
    queue.worker_seen(replace(info, last_seen=later, state="stopping"))
    [seen] = queue.workers()
    assert (seen.id, seen.pid, seen.concurrency, seen.kinds, seen.state) == (
        "w-1",
        7,
        4,
        ("a", "b"),
        "stopping",
    )
    assert _close(seen.last_seen, later, 0.01)


def test_exchange_acknowledges_then_claims(queue: RunQueue) -> None:
    queue.enqueue([new() for _ in range(3)])
    first = queue.claim("w1", None, limit=2, lease=30)
    outcomes = [Outcome(r.fence, "succeeded") for r in first]
    done, claimed = queue.exchange(outcomes, ClaimRequest("w1", None, 5, 30))
    after = [run_after(r, o, d) for r, o, d in zip(first, outcomes, done, strict=True) if d]
    assert [a.state for a in after] == ["succeeded", "succeeded"]
    assert after == [queue.get(r.id) for r in first]
    assert len(claimed) == 1
    assert claimed[0].id not in {r.id for r in first}
    assert queue.exchange([], None) == ([], [])
    assert queue.exchange([Outcome(claimed[0].fence, "failed", error="x")], None)[1] == []


@pytest.mark.parametrize("kind", ["succeeded", "failed", "retry", "canceled", "released"])
def test_what_landed_gives_the_run_as_stored(queue: RunQueue, kind: str) -> None:
    """Progress and a cancel asked while the attempt ran are in what an outcome returns."""
    run = _claim_one(queue, max_attempts=2)
    assert queue.progress(run.fence, 60, "most of it")
    queue.cancel(run.id)
    retry_at = queue.now() + timedelta(seconds=30) if kind == "retry" else None
    result = '{"n":[1,2.5]}' if kind == "succeeded" else None
    outcome = Outcome(run.fence, kind, result_json=result, error="e", run_at=retry_at)  # type: ignore[arg-type]
    after = _complete(queue, run, outcome)
    assert after is not None
    assert (after.progress, after.progress_message, after.cancel_requested) == (
        60,
        "most of it",
        True,
    )


def test_exchange_answers_for_each_outcome_in_order(queue: RunQueue) -> None:
    queue.enqueue([new() for _ in range(3)])
    runs = queue.claim("w1", None, limit=3, lease=30)
    outcomes = [
        Outcome(runs[0].fence, "failed", error="x"),
        Outcome(Fence(runs[1].id, runs[1].attempt, "someone-else"), "succeeded"),
        Outcome(runs[2].fence, "retry", error="y", run_at=queue.now()),
    ]
    done, _ = queue.exchange(outcomes, ClaimRequest("w1", None, 5, 30))
    assert done[1] is None
    assert [run_after(runs[i], outcomes[i], done[i]).state for i in (0, 2)] == [  # type: ignore[arg-type]
        "failed",
        "queued",
    ]


# --- metrics and tracing ------------------------------------------------------------------------


def test_run_counts_count_every_kind_and_state_in_one_read(queue: RunQueue) -> None:
    empty = queue.run_counts()
    assert (dict(empty.counts), dict(empty.oldest_due)) == ({}, {})
    assert _close(empty.now, queue.now())
    later = queue.now() + timedelta(hours=1)
    queue.enqueue([new("a") for _ in range(4)] + [new("b"), new("a", run_at=later)])
    first = queue.enqueue([new("c")])[0].run
    claimed = queue.claim("w1", ["a"], limit=3, lease=30)
    queue.complete([Outcome(claimed[0].fence, "succeeded"), Outcome(claimed[1].fence, "failed")])
    queue.cancel(first.id)
    counts = queue.run_counts()
    assert dict(counts.counts) == {
        ("a", "queued"): 2,  # one of them due only in an hour
        ("a", "running"): 1,
        ("a", "succeeded"): 1,
        ("a", "failed"): 1,
        ("b", "queued"): 1,
        ("c", "canceled"): 1,
    }
    assert set(counts.oldest_due) == {"a", "b"}
    runs = {r.id: r for r in queue.page(RunFilter(state="queued"), None, 10)}
    due_a = min(r.run_at for r in runs.values() if r.kind == "a" and r.run_at <= counts.now)
    assert counts.oldest_due["a"] == due_a
    assert counts.oldest_due["b"] <= counts.now


def test_run_counts_finished_runs_since_a_moment_by_default_the_last_hour(
    queue: RunQueue,
) -> None:
    claimed = [_claim_one(queue, kind="a") for _ in range(2)]
    queue.complete([Outcome(claimed[0].fence, "succeeded")])
    queue.complete([Outcome(claimed[1].fence, "failed", error="x")])
    counts = queue.run_counts()
    assert dict(counts.counts) == {("a", "succeeded"): 1, ("a", "failed"): 1}
    assert _close(counts.since, counts.now - timedelta(seconds=COUNT_WINDOW))
    assert counts.capped == frozenset()
    later = queue.now() + timedelta(seconds=5)
    assert dict(queue.run_counts(since=later).counts) == {}
    assert queue.run_counts(since=later).since == later


def test_run_counts_stop_at_the_cap_per_kind_for_queued_runs_and_in_all_otherwise(
    queue: RunQueue,
) -> None:
    running = [_claim_one(queue, kind=kind) for kind in ("c", "c", "d")]
    done = [_claim_one(queue, kind=kind) for kind in ("e", "e", "e", "f")]
    queue.complete([Outcome(run.fence, "succeeded") for run in done])
    assert len(running) == 3
    queue.enqueue([new("a") for _ in range(5)] + [new("b") for _ in range(2)])
    counts = queue.run_counts(cap=2)
    assert counts.counts[("a", "queued")] == 2  # 5 queued: a lower bound
    assert counts.counts[("b", "queued")] == 2  # exactly 2
    assert sum(n for (_, state), n in counts.counts.items() if state == "running") == 2
    assert sum(n for (_, state), n in counts.counts.items() if state == "succeeded") == 2
    assert counts.capped == {"queued", "running", "succeeded", "failed", "canceled"}
    assert set(counts.oldest_due) == {"a", "b"}  # the oldest due run is exact, capped or not
    whole = queue.run_counts(cap=5)
    assert dict(whole.counts) == {
        ("a", "queued"): 5,
        ("b", "queued"): 2,
        ("c", "running"): 2,
        ("d", "running"): 1,
        ("e", "succeeded"): 3,
        ("f", "succeeded"): 1,
    }
    assert whole.capped == frozenset()


def test_the_oldest_due_run_is_the_one_due_first_not_the_one_enqueued_first(
    queue: RunQueue,
) -> None:
    now = queue.now()
    queue.enqueue([new("a", run_at=now - timedelta(minutes=1))])
    queue.enqueue([new("a", run_at=now + timedelta(hours=1))])  # not due
    [late] = queue.enqueue([new("a", run_at=now - timedelta(minutes=10))])
    queue.enqueue([new("b", run_at=now + timedelta(hours=1))])
    due = queue.get(late.run.id).run_at  # type: ignore[union-attr]
    assert dict(queue.run_counts().oldest_due) == {"a": due}
    assert queue.stats(now - timedelta(hours=1)).oldest_queued == due


def test_a_trace_context_is_kept_with_the_run_and_handed_to_its_claim(queue: RunQueue) -> None:
    context = {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01", "tracestate": "k=v"}
    [traced] = queue.enqueue([new(trace_context=context)])
    [plain] = queue.enqueue([new()])
    assert traced.run.trace_context == context
    assert queue.get(traced.run.id).trace_context == context  # type: ignore[union-attr]
    assert queue.get(plain.run.id).trace_context is None  # type: ignore[union-attr]
    claimed = {r.id: r for r in queue.claim("w1", None, limit=2, lease=30)}
    assert claimed[traced.run.id].trace_context == context
    assert claimed[plain.run.id].trace_context is None
    # Claimed along with an acknowledgement (a busy worker's round trip), the same.
    parent_only = {"traceparent": context["traceparent"]}
    [later] = queue.enqueue([new(trace_context=context)])
    [later_parent_only] = queue.enqueue([new(trace_context=parent_only)])
    _, more = queue.exchange(
        [Outcome(claimed[plain.run.id].fence, "released")], ClaimRequest("w1", None, 5, 30)
    )
    found = {r.id: r.trace_context for r in more}
    assert found.pop(plain.run.id, None) is None  # some stores claim it again at once
    assert found == {later.run.id: context, later_parent_only.run.id: parent_only}
