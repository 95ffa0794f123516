"""The worker in-process, on the memory store: outcomes, retries, cancel, timeouts, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runce.domain.runs import NewRun, Run
from runce.errors import IdempotencyConflict, IllegalTransition, NonRetryable, UnknownRun
from runce.runs.events import Event, EventBus
from runce.runs.jobs import Job, JobRegistry
from runce.runs.service import RunService, backoff_delay
from runce.runs.worker import Worker, WorkerOptions
from runce.stores import memory


@pytest.fixture
def jobs() -> JobRegistry:
    return JobRegistry()


@pytest.fixture
def store() -> Iterator[memory.MemoryStore]:
    yield memory.MemoryStore(uuid.uuid4().hex)
    memory.reset()


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def service(store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus) -> RunService:
    return RunService(store.runs, jobs=jobs, bus=bus)


def _worker(store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, **options: Any) -> Worker:
    settings = {
        "concurrency": 4,
        "lease": 5.0,
        "poll": 0.05,
        "backoff_base": 0.01,
        "shutdown_timeout": 2.0,
        **options,
    }
    return Worker(
        store.runs, WorkerOptions(**settings), jobs=jobs, bus=bus, services=lambda: {"db": "fake"}
    )


def _register(jobs: JobRegistry, kind: str, fn: Callable[..., Any], **options: Any) -> None:
    jobs.register(Job(kind, fn, **options))


def _drain(store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, **options: Any) -> Any:
    return _worker(store, jobs, bus, drain=True, max_time=20, **options).run()


def test_runs_are_executed_and_their_results_stored(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    seen: list[tuple[Any, str, int]] = []

    def double(params: dict[str, int], ctx: Any) -> dict[str, int]:
        seen.append((ctx.services, ctx.run.kind, ctx.run.attempt))
        return {"twice": params["n"] * 2}

    async def shout(params: str) -> str:
        await asyncio.sleep(0)
        return params.upper()

    _register(jobs, "math.double", double)
    _register(jobs, "text.shout", shout)
    numbers = service.enqueue_many("math.double", [{"n": i} for i in range(20)])
    word = service.enqueue("text.shout", "hi")

    summary = _drain(store, jobs, bus)
    assert summary.succeeded == 21
    assert [service.get(r.id).result for r in numbers] == [{"twice": 2 * i} for i in range(20)]
    assert service.get(word.id).result == "HI"
    assert seen[0] == ({"db": "fake"}, "math.double", 1)


def test_a_failing_job_is_retried_with_growing_delays_then_succeeds(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    calls: list[int] = []

    def flaky(params: Any, ctx: Any) -> str:
        calls.append(ctx.run.attempt)
        if ctx.run.attempt < 3:
            raise ConnectionError(f"try {ctx.run.attempt}")
        return "ok"

    _register(jobs, "flaky", flaky)
    delays: list[float] = []
    bus.subscribe(
        "run.retrying", lambda e: delays.append((e.run.run_at - e.run.updated_at).total_seconds())
    )
    run = service.enqueue("flaky", None, max_attempts=3)

    worker = _worker(store, jobs, bus, backoff_base=0.05, max_time=20)
    thread = threading.Thread(target=worker.run)
    thread.start()
    done = service.wait(run.id, timeout=15)
    worker.stop()
    thread.join()

    assert (done.state, done.attempt, done.result) == ("succeeded", 3, "ok")
    assert calls == [1, 2, 3]
    assert len(delays) == 2
    assert delays[0] < delays[1], "each retry waits longer than the one before"
    assert [a.outcome for a in service.attempts(run.id)] == ["retry", "retry"]


def test_a_job_out_of_attempts_fails_with_the_last_error(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    def broken(params: Any, ctx: Any) -> None:
        raise ValueError(f"broken on attempt {ctx.run.attempt}")

    _register(jobs, "broken", broken)
    run = service.enqueue("broken", {}, max_attempts=2)
    worker = _worker(store, jobs, bus, max_time=20)
    thread = threading.Thread(target=worker.run)
    thread.start()
    done = service.wait(run.id, timeout=15)
    worker.stop()
    thread.join()
    assert (done.state, done.attempt) == ("failed", 2)
    assert done.error == "ValueError: broken on attempt 2"


def test_non_retryable_fails_at_once(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    def refuse(params: Any) -> None:
        raise NonRetryable("the customer is gone")

    _register(jobs, "refuse", refuse)
    run = service.enqueue("refuse", {}, max_attempts=5)
    _drain(store, jobs, bus)
    done = service.get(run.id)
    assert (done.state, done.attempt) == ("failed", 1)
    assert "the customer is gone" in (done.error or "")


def test_a_result_that_is_not_json_fails_the_run(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    _register(jobs, "weird", lambda params: object())
    run = service.enqueue("weird", {})
    _drain(store, jobs, bus)
    done = service.get(run.id)
    assert done.state == "failed"
    assert "result is not JSON" in (done.error or "")


def test_a_canceled_queued_run_never_starts(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    started: list[str] = []
    _register(jobs, "never", lambda params: started.append("x"))
    run = service.enqueue("never", {})
    assert service.cancel(run.id).state == "canceled"
    _drain(store, jobs, bus)
    assert started == []
    with pytest.raises(IllegalTransition, match="canceled; it cannot be canceled"):
        service.cancel(run.id)


def _start_long(
    store: memory.MemoryStore,
    jobs: JobRegistry,
    bus: EventBus,
    fn: Callable[..., Any],
    service: RunService,
    **options: Any,
) -> tuple[Run, Worker, threading.Thread, threading.Event]:
    running = threading.Event()

    def wrapped(params: Any, ctx: Any) -> Any:
        running.set()
        return fn(params, ctx)

    _register(jobs, "long", wrapped)
    run = service.enqueue("long", {})
    worker = _worker(store, jobs, bus, **options)
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert running.wait(10)
    return run, worker, thread, running


def test_a_running_job_that_checks_cancelled_stops_and_ends_canceled(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    def cooperative(params: Any, ctx: Any) -> str:
        deadline = time.monotonic() + 10
        while not ctx.cancelled:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return "stopped early"

    # Heartbeats (every lease/3) carry the cancel; a lease a busy machine cannot miss.
    run, worker, thread, _ = _start_long(store, jobs, bus, cooperative, service, lease=1.5)
    asked = service.cancel(run.id)
    assert (asked.state, asked.cancel_requested) == ("running", True)
    done = service.wait(run.id, timeout=10)
    worker.stop()
    thread.join()
    assert done.state == "canceled"
    again = service.retry(run.id)
    assert (again.state, again.max_attempts) == ("queued", 2)


def test_a_job_that_ignores_a_cancel_ends_succeeded_with_the_request_shown(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    release = threading.Event()

    def stubborn(params: Any, ctx: Any) -> str:
        release.wait(10)
        return "done anyway"

    run, worker, thread, _ = _start_long(store, jobs, bus, stubborn, service)
    service.cancel(run.id)
    release.set()
    done = service.wait(run.id, timeout=10)
    worker.stop()
    thread.join()
    assert (done.state, done.cancel_requested, done.result) == ("succeeded", True, "done anyway")
    with pytest.raises(IllegalTransition, match="succeeded; it cannot be canceled"):
        service.cancel(run.id)
    assert service.get(run.id).state == "succeeded"


def test_a_sync_job_past_its_timeout_is_abandoned_and_its_late_result_dropped(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    release = threading.Event()

    def slow(params: Any, ctx: Any) -> str:
        if ctx.run.attempt == 1:
            release.wait(10)
            return "too late"
        return "second try"

    _register(jobs, "slow", slow, timeout=0.2)
    run = service.enqueue("slow", {}, max_attempts=2)
    worker = _worker(store, jobs, bus, max_time=20)
    thread = threading.Thread(target=worker.run)
    thread.start()
    done = service.wait(run.id, timeout=15)
    release.set()
    worker.stop()
    thread.join()
    assert (done.state, done.attempt, done.result) == ("succeeded", 2, "second try")
    [first] = service.attempts(run.id)
    assert "timeout of 0.2s" in (first.error or "")


def test_an_async_job_past_its_timeout_is_cancelled(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    async def sleepy(params: Any) -> None:
        await asyncio.sleep(30)

    _register(jobs, "sleepy", sleepy, timeout=0.1)
    run = service.enqueue("sleepy", {}, max_attempts=1)
    started = time.monotonic()
    _drain(store, jobs, bus)
    assert time.monotonic() - started < 10
    done = service.get(run.id)
    assert done.state == "failed"
    assert "Timeout" in (done.error or "")


def test_stopping_hands_unfinished_runs_back_without_spending_an_attempt(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    release = threading.Event()

    def stuck(params: Any, ctx: Any) -> None:
        release.wait(10)

    run, worker, thread, _ = _start_long(store, jobs, bus, stuck, service, shutdown_timeout=0.2)
    worker.stop()
    thread.join(10)
    release.set()
    assert not thread.is_alive()
    back = service.get(run.id)
    assert (back.state, back.attempt, back.claimed_by) == ("queued", 0, None)
    assert worker.summary.released == 1


def test_stopping_lets_short_jobs_finish(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    def short(params: Any, ctx: Any) -> str:
        time.sleep(0.2)
        return "finished"

    run, worker, thread, _ = _start_long(store, jobs, bus, short, service, shutdown_timeout=5)
    worker.stop()
    thread.join(10)
    assert service.get(run.id).state == "succeeded"


def test_progress_is_stored_and_announced(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    seen: list[int] = []
    bus.subscribe("run.progress", lambda e: seen.append(e.run.progress))

    def steps(params: Any, ctx: Any) -> None:
        ctx.progress(30, "a third")
        ctx.progress(31, "too soon: skipped")
        ctx.progress(100, "done")

    _register(jobs, "steps", steps)
    run = service.enqueue("steps", {})
    _drain(store, jobs, bus)
    done = service.get(run.id)
    assert (done.progress, done.progress_message) == (100, "done")
    assert seen == [30, 100]


def test_events_follow_the_run(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    names: list[str] = []
    bus.subscribe("*", lambda e: names.append(e.name))
    bus.subscribe("run.failed", lambda e: (_ for _ in ()).throw(RuntimeError("bad subscriber")))
    _register(jobs, "ok", lambda params: 1)
    _register(jobs, "no", lambda params: (_ for _ in ()).throw(NonRetryable("no")))
    service.enqueue("ok", {})
    service.enqueue("no", {})
    _drain(store, jobs, bus)
    assert names.count("run.enqueued") == 2
    assert names.count("run.started") == 2
    assert names.count("run.succeeded") == 1
    assert names.count("run.failed") == 1
    with pytest.raises(ValueError, match="unknown event"):
        bus.subscribe("run.exploded", lambda e: None)


def test_idempotent_enqueue_and_conflicts(service: RunService) -> None:
    first = service.enqueue("mail", {"to": "a"}, idempotency_key="order-1")
    again = service.enqueue("mail", {"to": "a"}, idempotency_key="order-1")
    assert again.id == first.id
    with pytest.raises(IdempotencyConflict, match="order-1"):
        service.enqueue("mail", {"to": "b"}, idempotency_key="order-1")
    with pytest.raises(UnknownRun):
        service.get("missing")


def test_one_key_is_one_kind_input_and_project_the_options_are_the_first_calls(
    service: RunService,
) -> None:
    first = service.enqueue("mail", {"to": "a"}, idempotency_key="k", project_id="shop")
    later = datetime.now(UTC) + timedelta(minutes=10)
    again = service.enqueue(
        "mail",
        {"to": "a"},
        idempotency_key="k",
        project_id="shop",
        run_at=later,
        priority=9,
        max_attempts=7,
        correlation_id="retry-2",
    )
    assert again == first  # the first call's run, unchanged
    for project in (None, "blog"):
        with pytest.raises(IdempotencyConflict, match="'k' was already used") as other:
            service.enqueue("mail", {"to": "a"}, idempotency_key="k", project_id=project)
        assert first.id not in str(other.value)  # another project's run is not named


def test_drain_reclaims_expired_leases_first(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    _register(jobs, "again", lambda params, ctx: ctx.run.attempt)
    run = service.enqueue("again", {})
    store.runs.claim("a-dead-worker", None, limit=1, lease=0.05)
    time.sleep(0.1)
    summary = _drain(store, jobs, bus)
    assert summary.reclaimed == 1
    done = service.get(run.id)
    assert (done.state, done.result) == ("succeeded", 2)


def test_a_worker_claims_only_the_kinds_it_has(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    _register(jobs, "mine", lambda params: "mine")
    theirs = service.enqueue("theirs", {})
    _drain(store, jobs, bus)
    assert service.get(theirs.id).state == "queued"


def test_backoff_doubles_with_jitter() -> None:
    import random

    rng = random.Random(7)
    for attempt in range(1, 6):
        span = 60 * 2 ** (attempt - 1)
        delay = backoff_delay(attempt, 60, rng)
        assert span / 2 <= delay <= span


def test_event_objects_carry_the_run(service: RunService, bus: EventBus) -> None:
    got: list[Event] = []
    bus.subscribe("run.enqueued", got.append)
    run = service.enqueue("x", {"a": 1})
    assert got[0].run.id == run.id


class _Flaky:
    """The memory queue, unreachable for its first few exchanges and heartbeats."""

    def __init__(self, inner: Any, failures: int) -> None:
        self._inner = inner
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def exchange(self, outcomes: Any, claim: Any) -> Any:
        from runce.errors import StoreUnavailable

        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable("could not reach the database (simulated)")
        return self._inner.exchange(outcomes, claim)


class _ClaimFirst:
    """The memory queue with PostgreSQL's exchange: one statement whose claim sees the runs
    as they were before the outcomes it carries (a run handed back is not claimed again by
    the same exchange)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def exchange(self, outcomes: Any, claim: Any) -> Any:
        claimed = (
            []
            if claim is None
            else self._inner.claim(claim.worker_id, claim.kinds, claim.limit, claim.lease)
        )
        done = self._inner.complete(outcomes) if outcomes else []
        return done, claimed


def test_a_draining_worker_runs_a_retry_due_at_once_before_it_stops(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    # The retry goes back to the queue in the same exchange as a claim that cannot see it
    # (as on PostgreSQL): that claim coming back empty must not end the drain.
    tries: list[int] = []

    def fails_once(params: Any) -> str:
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("first try fails")
        return "ok"

    _register(jobs, "fails.once", fails_once)
    run = service.enqueue("fails.once", {})
    options = WorkerOptions(concurrency=1, poll=0.02, backoff_base=0.0, drain=True, max_time=20)
    summary = Worker(_ClaimFirst(store.runs), options, jobs=jobs, bus=bus).run()  # type: ignore[arg-type]
    assert service.get(run.id).state == "succeeded"
    assert (summary.retried, summary.succeeded) == (1, 1)


def test_a_draining_worker_that_cannot_reach_the_store_does_not_call_it_drained(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    _register(jobs, "echo", lambda params: params)
    runs = service.enqueue_many("echo", list(range(5)))
    flaky = _Flaky(store.runs, failures=2)
    options = WorkerOptions(concurrency=2, poll=0.02, drain=True, max_time=20)
    summary = Worker(flaky, options, jobs=jobs, bus=bus).run()  # type: ignore[arg-type]
    assert [service.get(r.id).state for r in runs] == ["succeeded"] * 5
    assert summary.succeeded == 5


def test_a_worker_rides_out_a_database_outage(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    errors: list[Event] = []
    bus.subscribe("worker.error", errors.append)
    _register(jobs, "echo", lambda params: params)
    runs = service.enqueue_many("echo", list(range(10)))
    flaky = _Flaky(store.runs, failures=3)
    worker = Worker(flaky, WorkerOptions(poll=0.05, max_time=20), jobs=jobs, bus=bus)  # type: ignore[arg-type]
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        finished = [service.wait(r.id, timeout=15) for r in runs]
    finally:
        worker.stop()
        thread.join()
    assert [r.state for r in finished] == ["succeeded"] * 10
    assert [r.result for r in finished] == list(range(10))
    assert len(errors) == 3
    assert "simulated" in str(errors[0].error)


def test_an_outcome_whose_lease_was_lost_is_dropped_and_logged(
    store: memory.MemoryStore,
    jobs: JobRegistry,
    bus: EventBus,
    service: RunService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from runce.domain.runs import Outcome

    _register(jobs, "x", lambda params: 1)
    run = service.enqueue("x", {})
    [claimed] = store.runs.claim("w-old", None, limit=1, lease=30)
    worker = _worker(store, jobs, bus)
    with caplog.at_level("WARNING", logger="runce.worker"):
        worker._acknowledged([Outcome(claimed.fence, "succeeded")], [None])
    assert worker.summary.lost == 1
    assert any("run.lost" in r.getMessage() for r in caplog.records)
    assert service.get(run.id).state == "running"


def test_a_claim_alone_keeps_the_outcomes_held_back_for_a_fuller_batch(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    from runce.domain.runs import Outcome

    _register(jobs, "x", lambda params: 1)
    service.enqueue_many("x", [{}, {}, {}])
    worker = _worker(store, jobs, bus, concurrency=4)
    claimed = store.runs.claim(worker.id, None, limit=2, lease=30)
    worker._dispatch(claimed, time.monotonic())
    for slot in worker._slots.values():
        assert worker._begin(slot)
    worker._finished.append(Outcome(claimed[0].fence, "succeeded"))
    held = worker._take_unsent(time.monotonic())
    assert held == [], "one of two running: held back for a fuller batch"
    worker._exchange(held, want=1)
    assert len(worker._unsent) == 1, "the held outcome must survive a claim-only exchange"
    worker._exchange(worker._unsent, want=0)
    assert service.get(claimed[0].id).state == "succeeded"


def test_a_busy_worker_claims_again_without_waiting_for_new_work(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    # Nothing announces more work here: a worker that waited for its poll interval after
    # acknowledging a batch would get through a few runs per 30 s poll and hit max_time.
    _register(jobs, "quick", lambda params: params)
    service.enqueue_many("quick", list(range(300)))
    summary = _worker(store, jobs, bus, concurrency=4, poll=30.0, drain=True, max_time=10).run()
    assert summary.succeeded == 300
    assert summary.seconds < 10


def test_a_job_context_made_by_hand_needs_its_run() -> None:
    import threading

    from runce.runs.context import JobContext, RunInfo

    info = RunInfo("r1", "k", 1, 3)
    cancel = threading.Event()
    ctx = JobContext(run=info, _cancel=cancel)
    assert (ctx.run, ctx.services, ctx.cancelled) == (info, None, False)
    cancel.set()
    assert ctx.cancelled
    assert ctx.log.extra == {"run_id": "r1", "kind": "k"}
    assert "r1" in repr(ctx)
    ctx.progress(50)  # without a writer: nothing to store
    with pytest.raises(TypeError, match="needs the run"):
        JobContext()


def test_a_run_that_waited_past_its_lease_is_dropped_not_started() -> None:
    store = memory.MemoryStore(uuid.uuid4().hex)
    jobs = JobRegistry()
    calls: list[object] = []
    jobs.register(Job("late.job", calls.append))
    store.runs.enqueue([NewRun(id="r1", kind="late.job", input_json="1", max_attempts=3)])
    worker = Worker(store.runs, WorkerOptions(lease=1.0), jobs=jobs)
    [claimed] = store.runs.claim(worker.id, None, 1, 1.0)
    worker._dispatch([claimed], time.monotonic() - 0.9)  # a slow store: 90% of the lease gone
    [slot] = worker._slots.values()
    assert not worker._begin(slot)
    assert (slot.state, worker.summary.lost, calls) == ("lost", 1, [])
    memory.reset()


def test_runs_claimed_ahead_go_back_when_jobs_turn_slow(
    store: memory.MemoryStore, jobs: JobRegistry, bus: EventBus, service: RunService
) -> None:
    _register(jobs, "x", lambda params: 1)
    service.enqueue_many("x", [{}] * 12)
    assert _worker(store, jobs, bus)._batch == 100  # a queue that names no claim_batch
    worker = _worker(store, jobs, bus, concurrency=2, batch=10)
    worker._avg_seconds = 0.0  # quick jobs: a batch ahead
    assert worker._want() == 12
    worker._dispatch(store.runs.claim(worker.id, None, limit=12, lease=30), time.monotonic())
    first = next(iter(worker._slots.values()))
    assert worker._begin(first)
    worker._release_surplus()
    assert not worker._finished, "quick jobs keep what they claimed ahead"

    worker._avg_seconds = 1.0  # the jobs turned slow
    worker._release_surplus()
    assert [o.kind for o in worker._finished] == ["released"] * 9  # 1 running + 2 waiting stay
    worker._exchange(worker._take_unsent(time.monotonic()), want=0)
    assert len(store.runs.claim("w-other", None, limit=20, lease=30)) == 9
    assert worker._held == 3
