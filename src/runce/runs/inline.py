"""Jobs called in-process (docs/runs.md#defining-jobs): ``job.now(params)`` and
``job.batch(items)``.

``now`` validates the input, inserts the run already running (claimed by
``inline:<host>:<pid>``, one attempt, heartbeating every lease/3 so that a cancel reaches
``ctx.cancelled``), calls the job in the caller's thread, records the outcome and returns
the job's validated result, or raises :class:`~runce.errors.JobFailed` carrying the run's
id. The run never goes back to the queue: if the calling process dies, the run fails when
its lease expires. ``persist=False`` calls the job without the store.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from runce.config import MAX_CONCURRENCY, bounded
from runce.domain.runs import Beat, NewRun, Outcome, Run, run_after
from runce.errors import InvalidInput, JobFailed, UsageError
from runce.errortext import describe
from runce.runs.context import JobContext, RunInfo, run_logger
from runce.runs.events import Event, EventBus
from runce.runs.jobs import Job
from runce.runs.limits import check_text
from runce.runs.service import canonical_json, cap_error, new_run_id, traceback_of
from runce.stores.queue import RunQueue

JobStatus = Literal["succeeded", "failed", "skipped"]
P = TypeVar("P")
R = TypeVar("R")


@dataclass(frozen=True)
class JobResult(Generic[P, R]):
    """One item of ``job.batch``: its result, or why it has none."""

    index: int
    input: P
    status: JobStatus
    result: R | None = None
    error: str | None = None
    run_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def inline_worker_id() -> str:
    return f"inline:{socket.gethostname()}:{os.getpid()}"


@dataclass
class InlineCall:
    """What one ``now`` needs: the job, and (when persisted) the queue, lease and events."""

    job: Job[Any, Any]
    queue: RunQueue | None
    bus: EventBus
    lease: float = 30.0
    services: Callable[[], Any] = lambda: None

    def run(
        self, params: Any, *, project_id: str | None = None, correlation_id: str | None = None
    ) -> Any:
        stored = self.job.input_for_storage(params)  # a bad input: InvalidInput, nothing stored
        if self.queue is None:
            return self._unrecorded(stored)
        check_text(project_id, "project_id")
        check_text(correlation_id, "correlation_id")
        new = NewRun(
            id=new_run_id(),
            kind=self.job.kind,
            input_json=canonical_json(stored),
            max_attempts=1,
            project_id=project_id,
            correlation_id=correlation_id,
        )
        run = self.queue.start(new, inline_worker_id(), self.lease)
        self._publish("run.started", run)
        return self._recorded(run)

    def _unrecorded(self, stored: Any) -> Any:
        info = RunInfo("inline", self.job.kind, 1, 1)
        ctx = JobContext(run=info, log=run_logger("inline", self.job.kind), _services=self.services)
        try:
            return self._checked(call_job(self.job, stored, ctx))
        except Exception as exc:
            raise JobFailed(f"job {self.job.kind!r} failed: {_described(exc)}") from exc

    def _recorded(self, run: Run) -> Any:
        queue = self.queue
        assert queue is not None
        cancel = threading.Event()

        def write_progress(percent: int, message: str | None) -> None:
            queue.progress(run.fence, percent, message)

        ctx = JobContext(
            run=RunInfo(run.id, run.kind, run.attempt, run.max_attempts),
            log=run_logger(run.id, run.kind),
            _services=self.services,
            _write_progress=write_progress,
            _cancel=cancel,
        )
        with _Heartbeat(queue, run, self.lease, cancel):
            try:
                value = call_job(self.job, run.input, ctx)
                text = canonical_json(self.job.result_for_storage(value), "result")
            except Exception as exc:
                error = cap_error(_described(exc))
                failed = Outcome(run.fence, "failed", error=error, traceback=traceback_of(exc))
                self._finish(run, failed, "run.failed")
                raise JobFailed(
                    f"job {run.kind!r} failed in run {run.id}: {error}", run.id
                ) from exc
        if ctx._noticed:
            stopped = Outcome(
                run.fence, "canceled", result_json=text, error="canceled while running"
            )
            self._finish(run, stopped, "run.canceled")
            raise JobFailed(f"run {run.id} of {run.kind!r} was canceled while running", run.id)
        self._finish(run, Outcome(run.fence, "succeeded", result_json=text), "run.succeeded")
        return value

    def _checked(self, value: Any) -> Any:
        self.job.result_for_storage(value)  # a wrong result type fails the call
        return value

    def _finish(self, run: Run, outcome: Outcome, event: str) -> None:
        assert self.queue is not None
        [landed] = self.queue.complete([outcome])
        if landed is None:
            raise JobFailed(
                f"run {outcome.fence.run_id} lost its lease while its job ran in-process "
                "(the caller stalled past worker.lease, or the run was canceled)",
                outcome.fence.run_id,
            )
        if self.bus.wants(event):
            self._publish(event, run_after(run, outcome, landed))

    def _publish(self, name: str, run: Run) -> None:
        if self.bus.wants(name):
            self.bus.publish(Event(name, run))


def call_job(job: Job[Any, Any], stored_input: Any, ctx: JobContext) -> Any:
    """Call a job's function in this thread (an ``async`` one on an event loop of its own)."""
    params = job.params_from_storage(stored_input)
    args = (params, ctx) if job.takes_context else (params,)
    if not job.is_async:
        return job.fn(*args)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise UsageError(
            f"job {job.kind!r} is async and this thread runs an event loop: "
            f"use `await job.anow(...)` there"
        )
    coroutine = job.fn(*args)
    if job.timeout is not None:
        coroutine = asyncio.wait_for(coroutine, job.timeout)
    return asyncio.run(coroutine)


def run_batch(
    call: Callable[[Any], Any], items: Sequence[Any], concurrency: int, stop_on_error: bool
) -> list[JobResult[Any, Any]]:
    """``call`` on every item, ``concurrency`` at a time; results in the items' order."""
    bounded("batch concurrency", concurrency, 1, MAX_CONCURRENCY, duration=False)
    stop = threading.Event()

    def one(index: int, item: Any) -> JobResult[Any, Any]:
        if stop.is_set():
            return JobResult(index, item, "skipped", error="skipped after an earlier failure")
        try:
            return JobResult(index, item, "succeeded", result=call(item))
        except (JobFailed, InvalidInput) as exc:
            if stop_on_error:
                stop.set()
            run_id = exc.run_id if isinstance(exc, JobFailed) else None
            return JobResult(index, item, "failed", error=str(exc), run_id=run_id)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="runce-batch") as pool:
        futures = [pool.submit(one, index, item) for index, item in enumerate(items)]
        return [future.result() for future in futures]


def _described(exc: BaseException) -> str:
    return describe(exc)


class _Heartbeat:
    """Renews an inline run's lease every lease/3 while its job runs; passes a cancel on."""

    def __init__(self, queue: RunQueue, run: Run, lease: float, cancel: threading.Event) -> None:
        self._queue = queue
        self._run = run
        self._lease = lease
        self._cancel = cancel
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="runce-inline-beat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._done.wait(self._lease / 3):
            try:
                beat: Beat = self._queue.heartbeat([self._run.fence], self._lease)[self._run.id]
            except Exception:  # the store is away: the next beat tries again
                continue
            if beat == "cancel":
                self._cancel.set()
            elif beat == "lost":
                return
