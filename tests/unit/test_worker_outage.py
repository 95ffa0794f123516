"""The worker while its store does not answer: backoff, one log line per change, stopping on
time; and runs whose lease may have run out are never started."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, field_validator

from runce.errors import StoreUnavailable
from runce.runs.backoff import Backoff, Outage
from runce.runs.jobs import Job, JobRegistry
from runce.runs.service import RunService
from runce.runs.worker import LEASE_MARGIN, Worker, WorkerOptions
from runce.stores import memory

STORE_CALLS = ("exchange", "claim", "complete", "heartbeat", "reclaim", "worker_seen", "progress")


class _Switchable:
    """The memory queue, with a switch that makes every call of the worker's fail (as a
    database refusing connections does), counting the calls made while it is off."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.down = False
        self.hang = threading.Event()  # set: every call waits until it is cleared (or 30 s)
        self.calls_while_down = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in STORE_CALLS:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            deadline = time.monotonic() + 30
            while self.hang.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
            if self.down:
                self.calls_while_down += 1
                raise StoreUnavailable("could not connect to the store (simulated): refused")
            return attribute(*args, **kwargs)

        return call


@pytest.fixture
def store() -> Iterator[memory.MemoryStore]:
    yield memory.MemoryStore(uuid.uuid4().hex)
    memory.reset()


def _until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


# -- the schedule ---------------------------------------------------------------------------


def test_the_backoff_ceiling_doubles_up_to_thirty_seconds() -> None:
    backoff = Backoff(rng=lambda low, high: high)  # always the longest wait
    waits = [backoff.failed() for _ in range(12)]
    assert waits == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30, 30, 30]
    backoff.reset()
    assert backoff.failed() == 0.5


def test_the_backoff_jitter_is_full_and_a_long_outage_costs_one_try_per_thirty_seconds() -> None:
    backoff = Backoff()
    waits = [backoff.failed() for _ in range(2000)]
    assert all(0 <= wait <= 30 for wait in waits)
    assert all(wait <= 0.5 * 2**i for i, wait in enumerate(waits[:6]))
    settled = waits[10:]
    assert 13 < sum(settled) / len(settled) < 17  # uniform on [0, 30]: 15 on average
    assert max(settled) > 27
    assert min(settled) < 3
    assert backoff.failures == 2000
    assert backoff.ceiling() == 30


def test_an_outage_is_said_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    outage = Outage(Backoff(rng=lambda low, high: high), clock=lambda: now[0])
    assert outage.ready()
    assert not outage.down
    assert outage.wait() == 0
    with caplog.at_level(logging.DEBUG, logger="runce.worker"):
        for _ in range(5):
            outage.failed(StoreUnavailable("refused"))
        assert outage.down
        assert not outage.ready()
        assert outage.wait() == 8.0  # 0.5, 1, 2, 4, then 8 after the fifth failure
        now[0] += 8.0
        assert outage.ready()
        outage.answered()
        outage.answered()
    said = [r.getMessage() for r in caplog.records]
    assert said[:2] == [
        "worker.error: refused (trying again)",
        "store unreachable: refused; retrying with backoff",
    ]
    assert said[2].startswith("store reachable again after 8.0 s")
    assert len(said) == 3
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="runce.worker"):
        outage.failed(StoreUnavailable("broken connection"))
        assert outage.wait() == 0.5  # a new outage starts the schedule again
        outage.answered()
    # One failure, then an answer: a connection replaced, no outage.
    assert [r.getMessage() for r in caplog.records] == [
        "worker.error: broken connection (trying again)"
    ]


# -- stopping while the store is out ----------------------------------------------------------


def _slow_job(started: list[str], release: threading.Event) -> Job:
    def slow(params: Any, ctx: Any) -> str:
        started.append(ctx.run.id)
        release.wait(30)  # ignores cancel: stopping must not wait for it past the deadline
        return "done"

    return Job("slow", slow)


def _outage_worker(
    store: memory.MemoryStore, jobs: JobRegistry, **options: Any
) -> tuple[Worker, _Switchable, RunService]:
    queue = _Switchable(store.runs)
    settings = {"concurrency": 2, "lease": 30.0, "poll": 0.05, "shutdown_timeout": 1.0, **options}
    worker = Worker(queue, WorkerOptions(**settings), jobs=jobs)  # type: ignore[arg-type]
    return worker, queue, RunService(store.runs, jobs=jobs)


def _run_in_thread(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("second_signal", [False, True])
def test_a_worker_holding_runs_stops_on_time_while_the_store_refuses(
    store: memory.MemoryStore, caplog: pytest.LogCaptureFixture, second_signal: bool
) -> None:
    jobs = JobRegistry()
    started: list[str] = []
    release = threading.Event()
    jobs.register(_slow_job(started, release))
    shutdown = 30.0 if second_signal else 1.0
    worker, queue, service = _outage_worker(store, jobs, shutdown_timeout=shutdown)
    runs = service.enqueue_many("slow", [1, 2, 3, 4])
    with caplog.at_level(logging.INFO, logger="runce.worker"):
        thread = _run_in_thread(worker)
        try:
            _until(lambda: len(started) == 2, 15, "the jobs never started")
            queue.down = True
            _until(
                lambda: any("unreachable" in r.getMessage() for r in caplog.records),
                30,
                "the outage was never said",
            )
            asked = time.monotonic()
            worker.stop()
            if second_signal:
                time.sleep(0.2)
                asked = time.monotonic()
                worker.stop()
            thread.join(shutdown + 15)  # generous: the assertion below measures
            took = time.monotonic() - asked
        finally:
            release.set()
    assert not thread.is_alive(), "the worker never stopped while the store was out"
    assert took < (1.0 if second_signal else shutdown + 2.0), took
    unreachable = [r for r in caplog.records if "store unreachable" in r.getMessage()]
    assert len(unreachable) == 1
    assert any("without the store" in r.getMessage() for r in caplog.records)
    # Nothing was recorded: the runs stay running until their leases expire.
    assert {service.get(r.id).state for r in runs[:2]} == {"running"}


def test_a_worker_holding_nothing_stops_at_once_while_the_store_keeps_it_waiting(
    store: memory.MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    # A store that refused, then takes calls and never answers (a server behind a dead
    # link): with no run to finish, the shutdown timeout is not waited out.
    jobs = JobRegistry()
    jobs.register(Job("echo", lambda params: params))
    worker, queue, _ = _outage_worker(store, jobs, shutdown_timeout=30.0)
    queue.down = True
    with caplog.at_level(logging.INFO, logger="runce.worker"):
        thread = _run_in_thread(worker)
        try:
            _until(lambda: worker._outage.down, 15, "the outage was never noticed")
            queue.hang.set()
            time.sleep(1.0)  # past the first waits of the backoff: the next call hangs
            asked = time.monotonic()
            worker.stop()
            thread.join(40)
            took = time.monotonic() - asked
        finally:
            queue.down = False
            queue.hang.clear()
            left = worker._done.wait(10)  # the abandoned loop ends when its call returns
    assert left
    assert not thread.is_alive()
    assert took < 0.5 + 1.5, took  # GRACE, and room for a busy machine; not 30 s
    assert any("kept a call waiting" in r.getMessage() for r in caplog.records)


def test_a_worker_tries_an_unreachable_store_with_backoff_not_in_a_loop(
    store: memory.MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = JobRegistry()
    jobs.register(Job("echo", lambda params: params))
    worker, queue, service = _outage_worker(store, jobs, lease=0.6)  # heartbeats every 0.2 s
    queue.down = True
    with caplog.at_level(logging.DEBUG, logger="runce.worker"):
        thread = _run_in_thread(worker)
        time.sleep(3.0)
        calls = queue.calls_while_down
        queue.down = False
        run = service.enqueue("echo", 7)
        assert service.wait(run.id, timeout=30).state == "succeeded"  # back within the cap
        worker.stop()
        thread.join(10)
    # Waits of up to 0.5, 1, 2 s (and the first try at once): a handful of tries, not the
    # dozens a loop at the poll interval, or the heartbeat's, would make.
    assert 1 <= calls <= 6, calls
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("store unreachable" in line for line in said) == 1, said
    assert sum("store reachable again" in line for line in said) == 1, said


def test_max_time_stops_a_draining_worker_while_the_store_refuses(
    store: memory.MemoryStore,
) -> None:
    jobs = JobRegistry()
    jobs.register(Job("echo", lambda params: params))
    worker, queue, service = _outage_worker(store, jobs, drain=True, max_time=1.0)
    service.enqueue("echo", 1)
    queue.down = True
    began = time.monotonic()
    thread = _run_in_thread(worker)
    thread.join(20)
    assert not thread.is_alive()
    assert time.monotonic() - began < 1.0 + 1.0 + 2.0  # max_time + shutdown_timeout + 2 s


# -- runs whose lease may have run out --------------------------------------------------------


class _SlowInput(BaseModel):
    """An input model whose validation holds the handler up past a short lease."""

    n: int

    @field_validator("n")
    @classmethod
    def slowly(cls, value: int) -> int:
        time.sleep(SHORT_LEASE * LEASE_MARGIN + 0.1)
        return value


SHORT_LEASE = 0.5
_called: list[object] = []


def _slow_input_job(params: _SlowInput) -> None:
    _called.append(params)


def test_a_run_is_not_started_when_its_lease_ran_out_after_it_was_taken_up(
    store: memory.MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    # The check before a job starts is made at the last moment: here the handler is held
    # up (by its input's validation, as a pause of the process would) after it took the run
    # up, past the run's lease.
    _called.clear()
    jobs = JobRegistry()
    jobs.register(Job("late.job", _slow_input_job))
    service = RunService(store.runs, jobs=jobs)
    service.enqueue("late.job", {"n": 1})
    worker = Worker(store.runs, WorkerOptions(lease=SHORT_LEASE), jobs=jobs)
    [claimed] = store.runs.claim(worker.id, None, 1, SHORT_LEASE)
    worker._dispatch([claimed], time.monotonic())
    [slot] = worker._slots.values()
    assert worker._begin(slot)
    with caplog.at_level(logging.WARNING, logger="runce.worker"):
        assert worker._execute(slot) is None
    assert _called == []
    assert (slot.state, worker.summary.lost) == ("lost", 1)
    [said] = [r.getMessage() for r in caplog.records]
    assert "not started" in said
    assert claimed.id in said


def test_an_async_run_is_not_started_when_its_lease_ran_out_before_the_loop_got_to_it(
    store: memory.MemoryStore,
) -> None:
    calls: list[object] = []
    lease = 0.5

    async def record(params: Any) -> None:
        calls.append(params)

    jobs = JobRegistry()
    jobs.register(Job("late.async", record))
    service = RunService(store.runs, jobs=jobs)
    service.enqueue("late.async", 1)
    worker = Worker(store.runs, WorkerOptions(lease=lease), jobs=jobs)
    worker._start_event_loop()
    try:
        [claimed] = store.runs.claim(worker.id, None, 1, lease)
        worker._dispatch([claimed], time.monotonic())
        [slot] = worker._slots.values()
        assert worker._begin(slot)
        assert worker._loop is not None
        # The event loop is busy past the lease before it gets to the job.
        worker._loop.call_soon_threadsafe(time.sleep, lease * LEASE_MARGIN + 0.1)
        assert worker._execute(slot) is None
    finally:
        worker._shutdown_threads()
    assert calls == []
    assert slot.state == "lost"


def test_a_running_job_whose_lease_could_not_be_renewed_is_told_to_stop(
    store: memory.MemoryStore,
) -> None:
    jobs = JobRegistry()
    seen: list[bool] = []
    stop_seen = threading.Event()

    def patient(params: Any, ctx: Any) -> str:
        deadline = time.monotonic() + 30
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(ctx.cancelled)
        stop_seen.set()
        return "stopped"

    jobs.register(Job("patient", patient))
    worker, queue, service = _outage_worker(store, jobs, lease=1.0)
    run = service.enqueue("patient", 1)
    thread = _run_in_thread(worker)
    try:
        _until(lambda: service.get(run.id).state == "running", 15, "never started")
        queue.down = True  # no heartbeat lands: after a lease, the run may be someone else's
        assert stop_seen.wait(30)
    finally:
        worker.stop()
        thread.join(15)
    assert seen == [True]
    assert worker.summary.lost == 1


class _UnreachableScheduler:
    def __init__(self) -> None:
        self.tries = 0

    def sync(self) -> None:
        self.tries += 1
        raise StoreUnavailable("could not read the schedules (simulated): refused")


def test_the_scheduler_says_once_that_it_cannot_reach_the_store(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from runce.runs.events import Event, EventBus
    from runce.runs.scheduler import SchedulerLoop

    bus = EventBus()
    errors: list[Event] = []
    bus.subscribe("worker.error", errors.append)
    scheduler = _UnreachableScheduler()
    loop = SchedulerLoop(scheduler, bus=bus, max_wait=0.01)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="runce"):
        loop.start(drain=False)
        _until(lambda: scheduler.tries >= 4, 30, "the scheduler stopped trying")
        loop.stop()
    said = [r.getMessage() for r in caplog.records if "scheduler failed" in r.getMessage()]
    assert len(said) == 1
    assert len(errors) == scheduler.tries  # every failure is still an event
