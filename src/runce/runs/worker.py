"""The worker (docs/runs.md#the-worker): claims runs in batches, runs their jobs,
acknowledges in batches.

Threads, and what each one owns:

* the **main loop** (a thread of its own) is the only one that talks to the queue about
  claims: it acknowledges finished runs and claims new ones in one ``exchange``, renews
  leases every lease/3, reclaims expired leases, enforces timeouts and stops the worker;
  while the store fails, it tries again on a capped exponential backoff (``backoff.py``);
* the **caller's thread** (in :meth:`Worker.run`) watches it: it acts on ``max_time``, and
  returns by the stop deadline even if a store call holds the main loop up;
* **handler threads** (``concurrency`` of them, daemons) run sync jobs, and wait for async
  jobs running on the **event-loop thread**; each hands its outcome back on a deque;
* the **waiter thread** sits in ``queue.wait_for_work`` (LISTEN/NOTIFY on PostgreSQL; on
  SQLite and MongoDB no query either) and wakes the main loop when new work may be due;
  only while the last claim came back short, as a worker whose claims come back full
  claims again anyway once it has room.

Every write about a claimed run is fenced by (run id, attempt, worker id): a run whose
lease was lost is dropped, and its late outcome changes nothing.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import queue as queue_module
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Literal, Protocol

from runce import logformat, tracing
from runce.domain.runs import (
    ClaimRequest,
    KindLimit,
    Landed,
    Outcome,
    OutcomeKind,
    Run,
    WorkerInfo,
    landed_of,
    run_after,
)
from runce.errors import InvalidInput, NonRetryable, RunceError, StoreError
from runce.errortext import describe
from runce.runs.backoff import Backoff, Outage
from runce.runs.context import JobContext
from runce.runs.events import Event, EventBus, events
from runce.runs.jobs import Job, JobRegistry, registry
from runce.runs.redact import Redactor, scrub
from runce.runs.service import backoff_delay, canonical_json, cap_error, traceback_of
from runce.stores.queue import RunQueue, TransactionalRunQueue
from runce.timeutil import utcnow
from runce.transaction import TaskConnection

log = logging.getLogger("runce.worker")

SlotState = Literal["waiting", "running", "done", "released", "lost"]
TELL_WAIT = 5.0  # seconds a stopping worker waits for the log lines of its last outcomes
GRACE = 0.5  # seconds past its stop deadline that run() waits for a store call to return
QUICK_JOB = 0.005  # seconds: jobs quicker than this on average are claimed a batch ahead
DEFAULT_BATCH = 100  # for queues that say nothing (a claim there may be a round trip per run)
MAX_RETRY_DELAY = 30 * 86400.0  # seconds: the longest a retry waits, whatever the attempt
# An idle worker on a store that wakes it for new work (PostgreSQL's LISTEN/NOTIFY, SQLite's
# watched files, MongoDB's change stream) looks for runs that became due on their own
# (run_at, retries) every this many polls.
IDLE_POLLS = 2


@dataclass
class WorkerOptions:
    concurrency: int = 5
    kinds: Sequence[str] | None = None  # None: every registered job
    lease: float = 30.0
    poll: float = 1.0
    backoff_base: float = 60.0
    shutdown_timeout: float = 30.0
    drain: bool = False
    max_time: float | None = None
    # Most runs claimed in one statement, and how far a worker of quick jobs claims ahead.
    # None: the queue's claim_batch (each exchange is a commit, an fsync: the SQL stores
    # claim 500 in one statement), else DEFAULT_BATCH.
    batch: int | None = None
    flush_interval: float = 0.05  # acknowledgements wait at most this long


@dataclass
class WorkerSummary:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    canceled: int = 0
    released: int = 0
    lost: int = 0
    reclaimed: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


_HELD = frozenset({"waiting", "running"})  # the states that take room in the worker
# A claimed run is started only if less than this share of its lease has surely passed.
LEASE_MARGIN = 0.8


class _LateStart(Exception):
    """A run's lease may have run out by the time its job would start: it is not started."""


class _Slot:
    """One claimed run while this worker holds it. Made for every run, so kept small: its
    cancel flag is a plain attribute (the job's context reads it through :meth:`is_set`),
    not a :class:`threading.Event` (nothing waits on it)."""

    __slots__ = (
        "cancel",
        "cancel_asked",
        "error",
        "job",
        "renewed",
        "run",
        "started",
        "state",
        "took",
        "unheard",
    )

    def __init__(self, run: Run, job: Job[Any, Any], renewed: float) -> None:
        self.run = run
        self.job = job
        # time.monotonic() when the request that last set the lease was sent: the lease
        # holds at least until renewed + lease, whatever the store's clock says.
        self.renewed = renewed
        self.state: SlotState = "waiting"
        self.cancel = False  # stop: a cancel was asked, the run was released, lost or late
        self.cancel_asked = False  # a heartbeat said someone asked to cancel this run
        self.started: float | None = None
        self.took: float | None = None  # seconds the job ran, once it returned
        self.error: BaseException | None = None  # what a failed attempt raised
        # A transactional job's result whose success write or commit failed: the store may
        # have committed it all the same (the connection was lost before its answer).
        self.unheard: str | None = None

    def is_set(self) -> bool:
        return self.cancel


# A landed outcome to log and count: the outcome, its run, seconds its job ran, its error.
_Told = tuple[Outcome, Run, float, BaseException | None]


class AttemptObserver(Protocol):
    """Told of every attempt whose outcome landed (the worker's metrics)."""

    def attempt_done(self, run: Run, outcome: OutcomeKind, seconds: float) -> None: ...


class Companion(Protocol):
    """Something that runs beside a worker while it runs (its cron scheduler)."""

    def start(self, drain: bool) -> None: ...

    def stop(self) -> None: ...


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    """Runs jobs from one queue until stopped (or, with ``drain``, until nothing is due)."""

    def __init__(
        self,
        queue: RunQueue,
        options: WorkerOptions | None = None,
        *,
        jobs: JobRegistry = registry,
        bus: EventBus = events,
        services: Callable[[], Any] = lambda: None,
        worker_id: str | None = None,
        companions: Sequence[Companion] = (),
    ) -> None:
        self.queue = queue
        self.companions = tuple(companions)
        self.options = options or WorkerOptions()
        self.jobs = jobs
        self.bus = bus
        self.services = services
        self.id = worker_id or default_worker_id()
        self.summary = WorkerSummary()
        self.kinds = self._kinds()
        # Flow control: the limits of this worker's kinds, sent with every claim so that
        # the store enforces them (every worker of a kind must declare the same limits).
        self._limits = tuple(
            KindLimit(
                job.kind,
                job.concurrency,
                None if job.rate is None else job.rate[0],
                None if job.rate is None else job.rate[1],
            )
            for job in map(self.jobs.get, self.kinds)
            if job is not None and (job.concurrency is not None or job.rate is not None)
        )
        self._limits_checked = -1e9  # when --drain last asked whether limited runs are due
        preferred: int = getattr(queue, "claim_batch", DEFAULT_BATCH)
        self._batch = self.options.batch or preferred
        self._mutex = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._held = 0  # slots waiting or running (kept with the states, under the mutex)
        self._running = 0
        self._timeouts = any(
            job.timeout is not None and not job.is_async
            for job in map(self.jobs.get, self.kinds)
            if job
        )
        self._finished: collections.deque[Outcome] = collections.deque()
        self._unsent: list[Outcome] = []
        self._oldest_unsent: float | None = None
        self._tasks: queue_module.SimpleQueue[_Slot | None] = queue_module.SimpleQueue()
        # Landed outcomes to log and count, for the announcer thread (None: stop).
        self._tell: queue_module.SimpleQueue[list[_Told] | None] = queue_module.SimpleQueue()
        self._teller: threading.Thread | None = None
        self._wake = threading.Event()
        self._listen = threading.Event()  # the last claim came back short: wait for news
        self._listen.set()
        self._stopping = threading.Event()
        self._stop_deadline: float | None = None
        self._stop_asked = 0.0  # when stop() was first called (time.monotonic())
        self._quit = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._spare_threads = 0
        self._avg_seconds = 1.0  # handler time, smoothed: decides how far to claim ahead
        self._last: dict[str, float] = {}
        self._started_at = utcnow()
        self.observer: AttemptObserver | None = None
        self._tracer: tracing.AttemptTracer | None = None  # when spans are recorded (by run())
        self._began = time.monotonic()
        self._outage = Outage()  # the store stopped answering: when to try it again
        self._done = threading.Event()  # the main loop has ended
        self._nudge = threading.Event()  # wakes the caller's thread: stop asked, or done
        self._abandoned = False  # stopped while the main loop waited on the store
        self._wakes = bool(getattr(queue, "wakes_for_new_work", False))
        self._idle = False  # the last look found nothing due and nothing is held

    @property
    def busy(self) -> int:
        """Runs this worker is running now (of ``options.concurrency`` handlers)."""
        return self._running

    # -- public ---------------------------------------------------------------------------------

    def run(self) -> WorkerSummary:
        """Work until stopped (or drained); returns by the stop deadline whatever the store
        does: the main loop runs on a thread of its own, which this one watches."""
        began = self._began = time.monotonic()
        self._tracer = tracing.attempt_tracer()
        self._start_threads()
        failure: list[BaseException] = []
        loop = threading.Thread(
            target=self._main, args=(failure,), name="runce-worker", daemon=True
        )
        loop.start()
        try:
            self._supervise()
        except BaseException:
            self.stop()
            self.stop()  # interrupted (KeyboardInterrupt without a handler): hand back now
            self._done.wait(GRACE)
            raise
        finally:
            self.summary.seconds = round(time.monotonic() - began, 3)
        if failure:
            raise failure[0]
        return self.summary

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming; finish running jobs within ``timeout`` (default ``shutdown_timeout``),
        then hand back what is left. Safe from a signal handler."""
        if not self._stopping.is_set():
            wait = self.options.shutdown_timeout if timeout is None else timeout
            self._stop_asked = time.monotonic()
            self._stop_deadline = self._stop_asked + wait
            self._stopping.set()
        else:
            self._stop_deadline = time.monotonic()  # asked twice: stop now
        self._wake.set()
        self._nudge.set()

    # -- the main loop's thread, and the caller's that watches it ----------------------------------

    def _main(self, failure: list[BaseException]) -> None:
        try:
            self._seen("running")
            try:
                for companion in self.companions:
                    companion.start(self.options.drain)
                self._loop_until_stopped()
            finally:
                for companion in self.companions:
                    companion.stop()
                self._shutdown_threads()
                self._seen("stopped")
        except BaseException as exc:  # handed to the caller of run()
            failure.append(exc)
        finally:
            self._done.set()
            self._nudge.set()

    def _supervise(self) -> None:
        """Wait for the main loop; stop it at ``max_time``; and should a store call hold it
        up past the stop deadline (a server that accepts and never answers), stop without
        it."""
        while not self._done.is_set():
            stopping = self._stopping.is_set()
            wait = self._until_stop()
            self._nudge.wait(min(GRACE, wait + GRACE) if stopping else wait)
            self._nudge.clear()
            now = time.monotonic()
            if self._max_time_passed(now, self._began):
                self.stop()
            if self._stopping.is_set() and not self._done.is_set() and self._stuck(now):
                self._abandon()
                return

    def _stuck(self, now: float) -> bool:
        """Whether a stopping worker should leave its main loop in the store call it waits
        on: past the stop deadline; or sooner, when the store is down and no run is held
        (nothing is left to finish, and the store may not answer for a long while)."""
        deadline = self._stop_deadline
        if deadline is not None and now >= deadline + GRACE:
            return True
        with self._mutex:
            held = len(self._slots)
        return self._outage.down and not held and now >= self._stop_asked + GRACE

    def _abandon(self) -> None:
        """The main loop is stuck in a store call: leave it (it makes no further call)."""
        self._abandoned = True
        self._quit.set()
        with self._mutex:
            held = len(self._slots)
        log.warning(
            "worker.stopped while the store kept a call waiting%s",
            f": {held} run(s) held; their leases will expire and they will be reclaimed"
            if held
            else "",
        )

    # -- the main loop ----------------------------------------------------------------------------

    def _loop_until_stopped(self) -> None:
        self._reclaim()
        idle_claims = 0
        while not self._abandoned:
            now = time.monotonic()
            if self._stopping.is_set() and self._stopped(now):
                return
            want = self._want()
            sent = self._take_unsent(now)
            if sent or want:
                claimed, conclusive = self._exchange(sent, want)
                idle_claims = idle_claims + 1 if want and not claimed and conclusive else 0
                self._idle = idle_claims > 0 and not sent and not self._held
            if self.options.drain and self._drained(idle_claims):
                return
            self._housekeeping(now)
            self._sleep()

    def _stopped(self, now: float) -> bool:
        self._release(lambda slot: slot.state == "waiting")
        late = self._stop_deadline is not None and now >= self._stop_deadline
        if late:
            self._release(lambda slot: slot.state == "running")
        with self._mutex:
            busy = bool(self._slots)
        if not busy and not self._finished and not self._unsent:
            return True
        if late and self._outage.down:
            self._give_up()  # the store is not back in time: stop anyway, as promised
            return True
        return False

    def _give_up(self) -> None:
        """Stop without telling the store what became of the runs held: each stays running
        until its lease expires, and is then reclaimed like a crashed worker's."""
        with self._mutex:
            held = len(self._slots)
            self._slots.clear()
        unsent = len(self._finished) + len(self._unsent)
        log.warning(
            "worker.stopped without the store: %d run(s) held, %d outcome(s) not recorded; "
            "their leases will expire and they will be reclaimed",
            held,
            unsent,
        )

    def _drained(self, idle_claims: int) -> bool:
        with self._mutex:
            busy = bool(self._slots)
        drained = not busy and idle_claims > 0 and not self._finished and not self._unsent
        if drained and self._limits:
            # An empty claim may only mean that limits hold due runs back (other workers'
            # slots, a rate): drained once no run of a limited kind is due at all, asked
            # (one aggregate read) at most once a second.
            now = time.monotonic()
            if now - self._limits_checked < 1.0:
                return False
            self._limits_checked = now
            due = self.queue.run_counts().oldest_due
            return not any(limit.kind in due for limit in self._limits)
        return drained

    def _max_time_passed(self, now: float, began: float) -> bool:
        """Whether ``--max-time`` is up (measured from ``began``), and not yet acted on."""
        limit = self.options.max_time
        return limit is not None and now - began >= limit and not self._stopping.is_set()

    def _want(self) -> int:
        """How many runs to claim now: none until half the room ahead is free."""
        if self._stopping.is_set():
            return 0
        room = self._room()
        # Finished runs still waiting for their acknowledgement do not count: it goes out in
        # the same exchange as this claim.
        held = self._held
        free = room - held
        return free if free >= max(1, room // 2) or held == 0 else 0

    def _room(self) -> int:
        """How many runs to hold: the concurrency, and a batch ahead when jobs are quick."""
        ahead = self._batch if self._quick() else 0
        return self.options.concurrency + ahead

    def _quick(self) -> bool:
        return self._avg_seconds < QUICK_JOB

    def _release_surplus(self) -> None:
        """Jobs turned slow: hand back the runs claimed ahead, beyond one per handler, so
        that other workers can take them instead of waiting behind this one."""
        if self._quick() or self._held - self._running <= self.options.concurrency:
            return
        with self._mutex:
            waiting = [slot for slot in self._slots.values() if slot.state == "waiting"]
        surplus = set(waiting[self.options.concurrency :])  # the last claimed go back
        self._release(lambda slot: slot in surplus and slot.state == "waiting")

    def _take_unsent(self, now: float) -> list[Outcome]:
        """Acknowledgements go out in batches, flushed within ``flush_interval``."""
        while self._finished:
            self._unsent.append(self._finished.popleft())
            if self._oldest_unsent is None:
                self._oldest_unsent = now
        if not self._unsent:
            return []
        running = self._running
        waited = now - (self._oldest_unsent or now)
        if running and waited < self.options.flush_interval and len(self._unsent) < running:
            return []
        return self._unsent

    def _exchange(self, sent: list[Outcome], want: int) -> tuple[int, bool]:
        """Send outcomes and claim ``want`` runs in one exchange: how many were claimed, and
        whether an empty claim means that nothing is due. It does not when the store failed,
        nor when an outcome of the exchange put a run back in the queue due now (handed
        back, or retried without delay): the claim may not have seen it."""
        if not self._may_call_store():
            return 0, False
        request = (
            ClaimRequest(
                self.id,
                self.kinds,
                min(want, self._batch),
                self.options.lease,
                self._limits,
            )
            if want
            else None
        )
        asked_at = time.monotonic()
        try:
            done, claimed = self.queue.exchange(sent, request)
        except StoreError as exc:
            self._store_failed(exc)
            return 0, False
        self._outage.answered()
        if request is not None:
            if len(claimed) < request.limit:
                self._listen.set()
            else:
                self._listen.clear()
        if sent:  # a claim alone must not forget outcomes held back for a fuller batch
            self._unsent = []
            self._oldest_unsent = None
        self._acknowledged(sent, done)
        self._dispatch(claimed, asked_at)
        requeued = any(
            landed is not None
            and outcome.kind in ("released", "retry")
            and landed.run_at <= landed.at
            for outcome, landed in zip(sent, done, strict=True)
        )
        return len(claimed), not requeued

    def _sleep(self) -> None:
        if self._outage.down:
            timeout = self._outage.wait()
        elif self._unsent:
            timeout = self.options.flush_interval
        elif self._idle and self._wakes:  # new work wakes it: fewer looks while idle
            timeout = self.options.poll * IDLE_POLLS
        else:
            timeout = self.options.poll
        self._wake.wait(min(timeout, self._until_stop(timeout)))
        self._wake.clear()

    def _until_stop(self, otherwise: float | None = None) -> float:
        """Seconds until the worker must act on ``max_time`` or its stop deadline: however
        long the store keeps it waiting, it stops on time (``otherwise``, default the poll,
        when neither is set)."""
        now = time.monotonic()
        if self._stopping.is_set():
            deadline = self._stop_deadline
        elif self.options.max_time is not None:
            deadline = self._began + self.options.max_time
        else:
            return self.options.poll if otherwise is None else otherwise
        return max(0.0, (deadline or now) - now)

    # -- claims and acknowledgements -------------------------------------------------------------

    def _dispatch(self, claimed: list[Run], asked_at: float) -> None:
        self.summary.claimed += len(claimed)
        slots = []
        for run in claimed:
            job = self.jobs.get(run.kind)
            if job is None:  # a kind this worker claimed but cannot run: should not happen
                continue
            slots.append(_Slot(run, job, asked_at))
        with self._mutex:
            for slot in slots:
                self._slots[slot.run.id] = slot
            self._held += len(slots)
        for slot in slots:
            self._tasks.put(slot)

    def _acknowledged(self, sent: list[Outcome], done: list[Landed | None]) -> None:
        told: list[_Told] = []
        for outcome, landed in zip(sent, done, strict=True):
            with self._mutex:
                slot = self._slots.pop(outcome.fence.run_id, None)
            if landed is None:
                if slot is not None and self._committed_unheard(outcome, slot, told):
                    continue
                self.summary.lost += 1
                log.warning(
                    "run.lost id=%s attempt=%d: its lease was lost; outcome %s dropped",
                    outcome.fence.run_id,
                    outcome.fence.attempt,
                    outcome.kind,
                )
                continue
            if slot is not None:  # always, for outcomes this worker sent
                self._announce(outcome, landed, slot, told)
        if told:
            self._tell.put(told)

    def _committed_unheard(self, outcome: Outcome, slot: _Slot, told: list[_Told]) -> bool:
        """Whether the outcome that did not land (a retry, or a failure) is that of a
        transactional run whose commit went unanswered but was made: the run then succeeded
        by this very attempt, and its success is counted and announced as if heard."""
        if slot.unheard is None:
            return False
        fence = outcome.fence
        try:
            run = self.queue.get(fence.run_id)
        except StoreError:
            return False  # told as lost, as the fence says
        if run is None or (run.state, run.attempt, run.claimed_by) != (
            "succeeded",
            fence.attempt,
            fence.worker_id,
        ):
            return False
        log.info("run %s: its commit went unanswered but was made", fence.run_id)
        slot.error = None
        self._announce(Outcome(fence, "succeeded", slot.unheard), landed_of(run), slot, told)
        return True

    def _announce(
        self, outcome: Outcome, landed: Landed, slot: _Slot, told: list[_Told] | None = None
    ) -> None:
        """Count a landed outcome, and have its log line and metrics written by the
        announcer thread (``told`` collects an exchange's, handed over in one go): the
        main loop claims again without waiting for formatting and writing."""
        counter = _COUNTER_OF[outcome.kind]
        setattr(self.summary, counter, getattr(self.summary, counter) + 1)
        took = slot.took
        if took is None:  # abandoned past its timeout, or handed back
            took = time.monotonic() - slot.started if slot.started else 0.0
        if self.observer is not None or log.isEnabledFor(_LEVEL_OF[outcome.kind]):
            item = (outcome, slot.run, took, slot.error)
            if told is None:
                self._tell.put([item])
            else:
                told.append(item)
        name = _EVENT_OF[outcome.kind]
        if name and self.bus.wants(name):
            # The run as the store now keeps it, built only for subscribers.
            self.bus.publish(Event(name, run_after(slot.run, outcome, landed)))

    def _tell_forever(self) -> None:
        """The announcer thread: log lines and metrics of landed outcomes, in order."""
        while True:
            batch = self._tell.get()
            if batch is None:
                return
            self._tell_batch(batch)

    def _tell_batch(self, batch: list[_Told]) -> None:
        # Where the lines go only to runce's own handler (as under `runce worker`), they are
        # formatted here, without a LogRecord each, and written in one go; a failure's line,
        # which carries its exception, goes through logging (after the lines before it).
        direct = logformat.direct_handler(log, _is_redactor)
        entries: list[tuple[str, str, Any]] = []  # lines to write: level, message, fields
        now = time.time()  # the lines of one batch are made within a millisecond or so
        for outcome, run, took, error in batch:
            try:
                level = _LEVEL_OF[outcome.kind]
                if log.isEnabledFor(level):
                    exc = error if outcome.kind == "failed" and error is not None else None
                    if direct is not None and exc is None:
                        if level >= direct[0].level:
                            entries.append(_entry(level, outcome, run, took))
                    else:
                        if entries and direct is not None:
                            _write(direct, now, entries)
                            entries = []
                        _log_record(level, outcome, run, took, exc)
                if self.observer is not None:
                    self.observer.attempt_done(run, outcome.kind, took)
            except Exception:  # a log handler or a metric failed: the worker goes on
                log.debug("run %s: its outcome could not be told", run.id, exc_info=True)
        if entries and direct is not None:
            try:
                _write(direct, now, entries)
            except Exception:
                log.debug("%d outcome line(s) could not be written", len(entries), exc_info=True)

    def _release(self, which: Callable[[_Slot], bool]) -> None:
        """Hand runs back to the queue unfinished, without spending their attempt."""
        with self._mutex:
            chosen = [
                s for s in self._slots.values() if s.state in ("waiting", "running") and which(s)
            ]
            for slot in chosen:
                self._move(slot, "released")
        for slot in chosen:
            slot.cancel = True
            if slot.cancel_asked:  # nobody wants it run again
                outcome = Outcome(slot.run.fence, "canceled", error="canceled while stopping")
            else:
                outcome = Outcome(slot.run.fence, "released")
            self._finished.append(outcome)

    def _may_call_store(self) -> bool:
        return not self._abandoned and self._outage.ready()

    def _store_failed(self, exc: StoreError) -> None:
        # Said once when the store stops answering (by the outage), not on every try.
        self._outage.failed(exc)
        log.debug("worker.error: %s (retrying)", exc)
        if self.bus.wants("worker.error"):
            self.bus.publish(Event("worker.error", error=exc))

    # -- housekeeping -------------------------------------------------------------------------

    def _housekeeping(self, now: float) -> None:
        third = self.options.lease / 3
        if self._due("heartbeat", third, now):
            self._heartbeat()
        if not self._unsent and self._due("reclaim", max(self.options.lease / 2, 1.0), now):
            self._reclaim()
        if self._due("seen", third, now):
            self._seen("stopping" if self._stopping.is_set() else "running")
        self._enforce_timeouts(now)
        self._drop_unrenewed(now)
        self._release_surplus()

    def _due(self, what: str, every: float, now: float) -> bool:
        if now - self._last.get(what, now) < every and what in self._last:
            return False
        self._last[what] = now
        return True

    def _heartbeat(self) -> None:
        # Every run still held, including finished ones whose acknowledgement has not
        # landed yet: the lease must outlive the outcome's trip to the store.
        with self._mutex:
            held = [s for s in self._slots.values() if s.state != "lost"]
        if not held or not self._may_call_store():
            return
        asked_at = time.monotonic()
        try:
            beats = self.queue.heartbeat([s.run.fence for s in held], self.options.lease)
        except StoreError as exc:
            self._store_failed(exc)
            return
        self._outage.answered()
        for slot in held:
            beat = beats.get(slot.run.id, "lost")
            if beat != "lost":
                slot.renewed = asked_at
            if beat == "cancel":
                slot.cancel_asked = True
                slot.cancel = True
            elif beat == "lost":
                self._lose(slot)

    def _lose(self, slot: _Slot, why: str = "the lease moved on") -> None:
        """Stop holding a run whose lease is (or may be) someone else's: it is not started,
        or its job is told to stop, and whatever it returns is dropped."""
        with self._mutex:
            if slot.state not in _HELD:  # finished meanwhile: its outcome will say so
                return
            self._move(slot, "lost")
            self._slots.pop(slot.run.id, None)
        slot.cancel = True
        self.summary.lost += 1
        log.warning(
            "run.lost id=%s attempt=%d: %s; this worker drops it",
            slot.run.id,
            slot.run.attempt,
            why,
        )

    def _drop_unrenewed(self, now: float) -> None:
        """Runs whose lease ran out before this worker could renew it (the store did not
        answer) may be another worker's by now: their jobs are told to stop."""
        lease = self.options.lease
        with self._mutex:
            expired = [
                s for s in self._slots.values() if s.state in _HELD and now - s.renewed > lease
            ]
        for slot in expired:
            self._lose(slot, "its lease ran out before it could be renewed")

    def _reclaim(self) -> None:
        if not self._may_call_store():
            return
        try:
            runs = self.queue.reclaim()
        except StoreError as exc:
            self._store_failed(exc)
            return
        self._outage.answered()
        self.summary.reclaimed += len(runs)
        for run in runs:
            log.warning(
                "run.reclaimed id=%s kind=%s attempt=%d state=%s",
                run.id,
                run.kind,
                run.attempt,
                run.state,
            )
            name = "run.failed" if run.state == "failed" else "run.retrying"
            if self.bus.wants(name):
                self.bus.publish(Event(name, run))
        if runs:
            self._wake.set()

    def _seen(self, state: Literal["running", "stopping", "stopped"]) -> None:
        if not self._may_call_store():
            return
        info = WorkerInfo(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self._started_at,
            last_seen=utcnow(),
            concurrency=self.options.concurrency,
            kinds=tuple(self.kinds),
            state=state,
        )
        try:
            self.queue.worker_seen(info)
        except StoreError as exc:
            self._store_failed(exc)
            return
        self._outage.answered()

    def _enforce_timeouts(self, now: float) -> None:
        """A sync job past its timeout is abandoned: its attempt fails now, its thread is
        replaced, and whatever it returns later is discarded."""
        if not self._timeouts:
            return
        with self._mutex:
            late = [
                s
                for s in self._slots.values()
                if s.state == "running"
                and not s.job.is_async
                and s.job.timeout is not None
                and s.started is not None
                and now - s.started > s.job.timeout
            ]
            for slot in late:
                self._move(slot, "done")
        for slot in late:
            slot.cancel = True
            error = TimeoutError(f"the job ran longer than its timeout of {slot.job.timeout:g}s")
            self._finished.append(self._failure(slot, error))
            self._spare_threads += 1
            self._start_handler_thread()

    # -- handler threads --------------------------------------------------------------------------

    def _start_threads(self) -> None:
        if not self.kinds:
            raise RunceError(
                "no jobs are registered; name the modules that define them in worker.handlers"
            )
        for _ in range(self.options.concurrency):
            self._start_handler_thread()
        if any(job.is_async for job in map(self.jobs.get, self.kinds) if job):
            self._start_event_loop()
        waiter = threading.Thread(target=self._wait_for_work, name="runce-waiter", daemon=True)
        waiter.start()
        self._teller = threading.Thread(
            target=self._tell_forever, name="runce-announcer", daemon=True
        )
        self._teller.start()

    def _start_handler_thread(self) -> None:
        thread = threading.Thread(target=self._handle_forever, name="runce-handler", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _start_event_loop(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="runce-asyncio", daemon=True)
        thread.start()
        self._loop = loop

    def _shutdown_threads(self) -> None:
        self._quit.set()
        for _ in self._threads:
            self._tasks.put(None)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._tell.put(None)
        if self._teller is not None and not self._abandoned:
            # Every landed outcome logged and counted by the end (a stop deadline is kept by
            # the caller's thread, which leaves this one behind if it must).
            self._teller.join(TELL_WAIT)

    def _wait_for_work(self) -> None:
        failures = Backoff()
        while not self._quit.is_set():
            if not self._listen.wait(self.options.poll):
                continue  # busy with full claims: news would only wake the main loop for nothing
            if self._outage.down:  # the main loop tries the store again, on its schedule
                self._quit.wait(self.options.poll)
                continue
            began = time.monotonic()
            try:
                self.queue.wait_for_work(self.options.poll)
            except Exception:  # the main loop reports store failures; do not spin here
                self._quit.wait(max(self.options.poll, failures.failed()))
                continue
            failures.reset()
            # A wait that ran its whole time brought no news: the main loop looks on its own
            # schedule (waking it here too made an idle worker look twice per poll).
            if time.monotonic() - began < self.options.poll:
                self._wake.set()

    def _handle_forever(self) -> None:
        while True:
            slot = self._tasks.get()
            if slot is None:
                return
            if not self._begin(slot):
                continue
            tracer = self._tracer
            outcome = self._execute(slot) if tracer is None else self._execute_traced(slot, tracer)
            if outcome is not None:
                self._finish(slot, outcome)
            if self._retire_spare():
                return

    def _begin(self, slot: _Slot) -> bool:
        if not self._in_time(slot):
            self._lose(slot, self._late_reason(slot))
            return False
        with self._mutex:
            if slot.state != "waiting":
                return False
            self._move(slot, "running")
        slot.started = time.monotonic()
        return True

    def _finish(self, slot: _Slot, outcome: Outcome) -> None:
        took = time.monotonic() - (slot.started or time.monotonic())
        slot.took = took
        self._avg_seconds = self._avg_seconds * 0.8 + took * 0.2
        with self._mutex:
            if slot.state != "running":
                return  # abandoned, released or lost meanwhile: this result is not the run's
            self._move(slot, "done")
            self._finished.append(outcome)
            # Wake the main loop only when it has something to do: start the flush clock of
            # the first outcome it has not seen, send when nothing runs any more, claim when
            # half the room is free. (Waking it for every run made it scan for each one.)
            wake = len(self._finished) == 1 or not self._running or self._want() > 0
        if wake:
            self._wake.set()

    def _move(self, slot: _Slot, state: SlotState) -> None:
        """Change a slot's state and the counts that go with it; the mutex is held."""
        before = slot.state
        self._held += (state in _HELD) - (before in _HELD)
        self._running += (state == "running") - (before == "running")
        slot.state = state

    def _retire_spare(self) -> bool:
        with self._mutex:
            if self._spare_threads > 0:
                self._spare_threads -= 1
                return True
        return False

    def _in_time(self, slot: _Slot) -> bool:
        """Whether the run's lease surely still holds with a margin (by this process's
        monotonic clock, which keeps counting while the process is paused): a run waited
        for so long that it may have been reclaimed (a slow store held the heartbeats back,
        the process was stopped) and finished elsewhere must not be started."""
        return time.monotonic() - slot.renewed <= self.options.lease * LEASE_MARGIN

    def _late_reason(self, slot: _Slot) -> str:
        waited = time.monotonic() - slot.renewed
        return (
            f"not started: its lease was last set {waited:.1f} s ago, past "
            f"{LEASE_MARGIN:.0%} of {self.options.lease:g} s (it will be reclaimed)"
        )

    def _check_in_time(self, slot: _Slot, *, announce: bool = True) -> None:
        """At the last moment before the job is called: not started, or announced."""
        if not self._in_time(slot):
            raise _LateStart(self._late_reason(slot))
        if announce and self.bus.wants("run.started"):
            self.bus.publish(Event("run.started", slot.run))

    def _execute_traced(self, slot: _Slot, tracer: tracing.AttemptTracer) -> Outcome | None:
        span, token = tracing.start_attempt(tracer, slot.run)
        outcome: Outcome | None = None
        try:
            outcome = self._execute(slot)
        finally:
            try:
                kind = OUTCOME_NAMES[outcome.kind] if outcome is not None else None
                tracing.end_attempt(span, token, kind, slot.error, scrub)
            except Exception:  # a span is worth less than the run's outcome
                log.warning("run %s: its span could not be ended", slot.run.id, exc_info=True)
        return outcome

    def _execute(self, slot: _Slot) -> Outcome | None:
        """Run the job; its outcome, or None when it was not started after all."""
        ctx = self._context(slot)
        if slot.job.transactional:
            return self._execute_in_transaction(slot, ctx)
        try:
            result = slot.job.result_for_storage(self._call(slot, ctx))
            text = canonical_json(result, "result")
        except _LateStart as late:
            self._lose(slot, str(late))
            return None
        except BaseException as exc:  # job code: even SystemExit is the run's failure
            if slot.cancel and ctx._noticed:
                return Outcome(slot.run.fence, "canceled", error="canceled while running")
            return self._failure(slot, exc)
        if ctx._noticed:
            return Outcome(
                slot.run.fence,
                "canceled",
                result_json=text,
                error="stopped after a cancel was asked",
            )
        return Outcome(slot.run.fence, "succeeded", text)

    def _execute_in_transaction(self, slot: _Slot, ctx: JobContext) -> Outcome | None:
        """A transactional job: its work and its success, fenced by its attempt, commit in
        one transaction (so a retry never redoes committed work), and are announced here
        rather than batched; a failure rolls the work back and goes out as any other."""
        queue = self.queue
        if not isinstance(queue, TransactionalRunQueue):
            return Outcome(slot.run.fence, "failed", error=TRANSACTIONAL_NEEDS_SQL)

        stored: list[str | None] = [None]

        def work(connection: Any) -> str | None:
            ctx._db = TaskConnection(connection)
            result = slot.job.result_for_storage(self._call(slot, ctx))
            stored[0] = canonical_json(result, "result")
            return stored[0]

        try:
            landed = queue.succeed_in_transaction(slot.run.fence, work)
        except _LateStart as late:
            self._lose(slot, str(late))
            return None
        except BaseException as exc:  # job code, or its success's write or commit
            # After the job returned, the store may have committed all the same (a lost
            # answer): the retry sent below is fenced, and tells which (_committed_unheard).
            slot.unheard = stored[0]
            return self._failure(slot, exc)
        slot.took = time.monotonic() - (slot.started or time.monotonic())
        with self._mutex:
            if slot.state == "running":
                self._move(slot, "done")
            self._slots.pop(slot.run.id, None)
        if landed is None:  # the fence failed: the transaction was rolled back
            self.summary.lost += 1
            log.warning(
                "run.lost id=%s attempt=%d: its lease was lost; its work was rolled back",
                slot.run.id,
                slot.run.attempt,
            )
        else:
            self._announce(Outcome(slot.run.fence, "succeeded", stored[0]), landed, slot)
        self._wake.set()  # room for another claim
        return None

    def _call(self, slot: _Slot, ctx: JobContext) -> Any:
        job = slot.job
        params = job.params_from_storage(slot.run.input)
        args = (params, ctx) if job.takes_context else (params,)
        if not job.is_async:
            self._check_in_time(slot)  # the last moment before the job starts
            return job.fn(*args)
        assert self._loop is not None
        self._check_in_time(slot)  # announced here: subscribers never hold the event loop up
        coroutine = self._started_in_time(slot, job.fn(*args))
        if job.timeout is not None:
            coroutine = asyncio.wait_for(coroutine, job.timeout)
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _started_in_time(self, slot: _Slot, coroutine: Any) -> Any:
        """An async job, started only if its lease still holds when the loop gets to it."""
        try:
            self._check_in_time(slot, announce=False)
        except _LateStart:
            coroutine.close()
            raise
        return await coroutine

    def _failure(self, slot: _Slot, exc: BaseException) -> Outcome:
        run = slot.run
        slot.error = exc
        error = cap_error(describe(exc))  # safe whatever the job raised
        stack = traceback_of(exc)
        final = isinstance(exc, NonRetryable | InvalidInput) or run.attempt >= run.max_attempts
        if final:
            return Outcome(run.fence, "failed", error=error, traceback=stack)
        # Doubling 40 times already passes any cap: stop before it overflows a date.
        doubled = backoff_delay(min(run.attempt, 40), self.options.backoff_base)
        delay = min(doubled, MAX_RETRY_DELAY)
        at = utcnow() + timedelta(seconds=delay)
        return Outcome(run.fence, "retry", error=error, run_at=at, traceback=stack)

    def _context(self, slot: _Slot) -> JobContext:
        run = slot.run

        def write_progress(percent: int, message: str | None) -> None:
            # Progress is for watchers: skipped while the store is out, and for a transactional
            # job (on SQLite its own transaction holds the write lock until it ends).
            if not slot.job.transactional and self._may_call_store():
                try:
                    self.queue.progress(run.fence, percent, message)
                except StoreError as exc:
                    self._store_failed(exc)
            if self.bus.wants("run.progress"):
                self.bus.publish(
                    Event("run.progress", replace(run, progress=percent, progress_message=message))
                )

        # The run's info and logger are made only if the job asks for them.
        return JobContext(
            _services=self.services,
            _write_progress=write_progress,
            _cancel=slot,
            source=run,
        )

    def _kinds(self) -> list[str]:
        registered = self.jobs.kinds()
        if self.options.kinds is None:
            return registered
        unknown = sorted(set(self.options.kinds) - set(registered))
        if unknown:
            raise RunceError(
                f"no job is registered for {', '.join(unknown)}; "
                f"registered: {', '.join(registered) or 'none'}"
            )
        return list(self.options.kinds)


_EVENT_OF: dict[str, str | None] = {
    "succeeded": "run.succeeded",
    "failed": "run.failed",
    "retry": "run.retrying",
    "canceled": "run.canceled",
    "released": None,
}
# How metrics, spans and docs name each outcome of an attempt.
OUTCOME_NAMES: dict[str, str] = {
    "succeeded": "succeeded",
    "failed": "failed",
    "retry": "retried",
    "canceled": "canceled",
    "released": "handed_back",
}
# A final failure is an error (with its exception, for logging integrations); a retry a warning.
_LEVEL_OF = {
    "succeeded": logging.INFO,
    "failed": logging.ERROR,
    "retry": logging.WARNING,
    "canceled": logging.INFO,
    "released": logging.INFO,
}
_COUNTER_OF = {
    "succeeded": "succeeded",
    "failed": "failed",
    "retry": "retried",
    "canceled": "canceled",
    "released": "released",
}


# A transactional job's run fails with this on a store that cannot give it ctx.db.
TRANSACTIONAL_NEEDS_SQL = (
    "this job is transactional (transactional=True), which needs the SQLite or PostgreSQL "
    "store; this worker's store cannot record a run's success in the job's transaction"
)


def _one_line(text: str | None) -> str:
    return (text or "").splitlines()[0][:200] if text else ""


# The line of a landed outcome: its event, the run, and how long its job ran.
_LINE = "%s id=%s kind=%s attempt=%d duration_ms=%.1f%s"


def _line_args(outcome: Outcome, run: Run, took: float) -> tuple[Any, ...]:
    return (
        _EVENT_OF[outcome.kind] or "run.released",
        run.id,
        run.kind,
        outcome.fence.attempt,
        took * 1000,
        f" error={_one_line(outcome.error)}" if outcome.error else "",
    )


def _is_redactor(candidate: Any) -> bool:
    return isinstance(candidate, Redactor)


def _entry(level: int, outcome: Outcome, run: Run, took: float) -> tuple[str, str, Any]:
    """What the line of a record of :func:`_log_record` is made of, made without it: the
    level's name, the message and the fields."""
    fields = logformat.Fields(run.id, run.kind, outcome.fence.attempt, round(took * 1000, 1))
    return logging.getLevelName(level), _LINE % _line_args(outcome, run, took), fields


def _write(
    direct: tuple[logformat.StderrHandler, logformat.LineFormatter],
    now: float,
    entries: list[tuple[str, str, Any]],
) -> None:
    """Write lines of entries made at ``now`` in one go, their messages masked as the worker's
    logger's filters (redactors only) would mask their records'."""
    handler, formatter = direct
    written = [message for _, message, _ in entries]
    messages = written
    for redactor in log.filters:
        messages = redactor.scrub_many(messages)  # type: ignore[union-attr]
    if messages is not written:  # something was masked
        entries = [
            (level, message, fields)
            for (level, _, fields), message in zip(entries, messages, strict=True)
        ]
    handler.write_lines(formatter.lines(now, log.name, entries))


def _log_record(
    level: int, outcome: Outcome, run: Run, took: float, exc: BaseException | None
) -> None:
    # The record made here, not by log.log(), which would walk the stack for where it was
    # called from (always this line) on every run.
    record = log.makeRecord(
        log.name,
        level,
        __file__,
        0,
        _LINE,
        _line_args(outcome, run, took),
        (type(exc), exc, exc.__traceback__) if exc is not None else None,
        "_told",
        {
            "run_id": run.id,
            "kind": run.kind,
            "attempt": outcome.fence.attempt,
            "duration_ms": round(took * 1000, 1),
        },
    )
    log.handle(record)
