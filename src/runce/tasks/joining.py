"""Helping a running parallel backfill from another process or host: ``runce backfill join ID``
(docs/backfills.md#ranges-on-several-hosts).

A helper takes no lock and records no attempt. It joins the attempt that the lock's holder
(the coordinator, a ``runce run``) is running, with a task file of the same checksum, and
claims that attempt's key ranges through the store like the coordinator's own threads do:
one range at a time per thread, each checkpoint saved only under its claim. It stops when
every range is finished, at a batch boundary when the backfill is paused or canceled, and
when the attempt it joined is no longer running (its coordinator ended or died).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from runce.config import Config, ServiceFactory
from runce.domain.tasks import Attempt
from runce.errors import TaskRunError, UnknownTask, UnsupportedFeature, UsageError
from runce.errortext import describe
from runce.runtime import Runtime, RuntimeArg, using
from runce.stores.base import RangeClaims, Store
from runce.stores.liveness import current_owner
from runce.tasks.backfill import Backfill
from runce.tasks.backfilling import BackfillDriver, BackfillOutcome
from runce.tasks.claiming import claimer_of
from runce.tasks.discovery import TaskFile, discover
from runce.tasks.loader import load_task
from runce.tasks.model import TaskContext, task_logger

_WAIT_POLL = 0.25


@dataclass(frozen=True)
class JoinReport:
    """What a helper did: the attempt it joined, its own share, and why it stopped."""

    task_id: str
    attempt_id: str
    processed: int  # items this helper processed
    done: int  # items done over every range, by everyone
    total: int | None
    finished: bool  # every range is finished
    stopped: str | None  # "pause" or "cancel"
    requested_by: str | None
    ended: str | None  # the attempt ended under the helper: why

    @property
    def message(self) -> str:
        of = f" of {self.total:,}" if self.total is not None else ""
        share = f"{self.task_id}: this helper processed {self.processed:,} items; "
        share += f"{self.done:,}{of} done in all"
        if self.stopped is not None:
            verb = "paused" if self.stopped == "pause" else "canceled"
            return f"{share}; stopped at a batch boundary: {verb} by {self.requested_by}"
        if self.ended is not None:
            return f"{share}; stopped: {self.ended}"
        return f"{share}; every range is finished (its `runce run` records it)"

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.task_id,
            "attempt_id": self.attempt_id,
            "processed": self.processed,
            "done": self.done,
            "total": self.total,
            "finished": self.finished,
            "stopped": self.stopped,
            "requested_by": self.requested_by,
            "ended": self.ended,
        }


def join_backfill(
    task_id: str,
    config: RuntimeArg = None,
    *,
    threads: int | None = None,
    wait: float = 0.0,
    notice: Callable[[str], None] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> JoinReport:
    """Help the running attempt of the parallel backfill ``task_id`` until it needs no help.

    Waits up to ``wait`` seconds for the attempt to be running. Raises
    :class:`~runce.errors.UnsupportedFeature` on a store that keeps no range claims (memory,
    file), :class:`~runce.errors.UsageError` for a task that is not a parallel backfill,
    and :class:`~runce.errors.TaskRunError` when the backfill is not running, when the
    attempt ended under the helper, or when a range failed in it.
    """
    with using(config) as runtime:
        return _join(task_id, runtime, threads, wait, notice, progress)


def _join(
    task_id: str,
    runtime: Runtime,
    threads: int | None,
    wait: float,
    notice: Callable[[str], None] | None,
    progress: Callable[[int, int | None], None] | None,
) -> JoinReport:
    cfg, store = runtime.config, runtime.store
    say = notice or (lambda text: None)
    claims = _claims_of(store, cfg)
    task_file, task = _backfill_of(task_id, cfg)
    if task.transactional and not store.supports_transactions:
        raise UnsupportedFeature(
            f"task {task_id} is transactional, but {store.description} cannot run "
            "transactional tasks"
        )
    attempt = _running_attempt(store, task_file, wait)
    say(
        f"{task_id}: joined attempt {attempt.attempt_id} started by {attempt.host} pid "
        f"{attempt.pid}"
    )
    ctx = TaskContext(
        id=task_id,
        title=task.title or task_id,
        config=cfg,
        log=task_logger(task_id),
        _services=ServiceFactory(cfg).get,
        _progress=progress or (lambda done, total: None),
    )
    driver = BackfillDriver(
        task,
        ctx,
        attempt,
        store.tracker,
        None,
        None,
        say,
        handle_name="session" if cfg.store.type.startswith("mongo") else "db",
        claims=claims,
        claim_ttl=cfg.lock.ttl,
        claimer=claimer_of(current_owner(cfg.lock.owner)),
        threads=threads,
        watch=lambda: _why_ended(store, attempt),
    )
    try:
        outcome = driver.join()
    except TaskRunError:
        raise
    except Exception as exc:
        raise TaskRunError(
            f"{task_id}: a range failed in this helper ({describe(exc)}); its claim was "
            "released, and whoever takes the range next meets the same failure (the "
            "`runce run` that runs the backfill records it)"
        ) from exc
    report = _report(task_id, attempt, outcome)
    if report.ended is not None:
        raise TaskRunError(report.message)
    return report


def _claims_of(store: Store, cfg: Config) -> RangeClaims:
    tracker = store.tracker
    if not isinstance(tracker, RangeClaims):
        raise UnsupportedFeature(
            f"the {cfg.store.type} store cannot share a backfill's ranges between processes; "
            "`runce backfill join` needs a sqlite, postgresql or mongodb store"
        )
    return tracker


def _backfill_of(task_id: str, cfg: Config) -> tuple[TaskFile, Backfill]:
    found = [f for f in discover(cfg.tasks_dir) if f.id == task_id]
    if not found:
        raise UnknownTask(f"no task {task_id!r} in {cfg.tasks_dir}; give a task file's id")
    task = load_task(found[0])
    if not isinstance(task, Backfill):
        raise UsageError(f"{task_id} is not a backfill; only a parallel backfill can be joined")
    if task.parallel < 2:
        raise UsageError(
            f"{task_id} has one key range (parallel=1): there is nothing to share; give it "
            "parallel=N and ranges=fn to let helpers join"
        )
    return found[0], task


def _running_attempt(store: Store, task_file: TaskFile, wait: float) -> Attempt:
    """The task's attempt run by the lock's live holder, once its ranges are saved."""
    deadline = time.monotonic() + wait
    while True:
        attempt, why_not = _attempt_now(store, task_file)
        if attempt is not None:
            return attempt
        if time.monotonic() >= deadline:
            waited = f" after waiting {wait:g}s" if wait else ""
            raise TaskRunError(f"{task_file.id} {why_not}{waited}")
        time.sleep(min(_WAIT_POLL, max(0.0, deadline - time.monotonic())))


def _attempt_now(store: Store, task_file: TaskFile) -> tuple[Attempt | None, str]:
    tracker = store.tracker
    applied = tracker.applied().get(task_file.id)
    if applied is not None and applied.is_applied:
        return None, "is already applied; there is nothing to join"
    control = tracker.controls().get(task_file.id)
    if control is not None:
        verb = "paused" if control.command == "pause" else "canceled"
        return None, f"is {verb}; `runce resume {task_file.id}`, run it, then join"
    open_ones = [a for a in tracker.open_attempts() if a.task_id == task_file.id]
    not_running = (
        "is not running: start it with `runce run` (a helper joins a running backfill), "
        "or pass --wait SECONDS"
    )
    if not open_ones:
        return None, not_running
    attempt = open_ones[-1]
    if _why_ended(store, attempt) is not None:
        return None, not_running
    if attempt.checksum != task_file.checksum:
        return None, (
            "runs from another version of its file (its checksum differs from this one's); "
            "join with the same task file"
        )
    if len(tracker.checkpoints(task_file.id)) < 2:
        return None, "has not saved its key ranges yet"
    return attempt, ""


def _why_ended(store: Store, attempt: Attempt) -> str | None:
    """None while ``attempt`` is run by the lock's live holder; else why it no longer runs."""
    if attempt.lock_token is not None:
        holder = store.lock.holder()
        if holder is None or holder.token != attempt.lock_token or holder.state == "dead":
            return "the `runce run` that ran the attempt it joined has ended or died"
    if not any(a.attempt_id == attempt.attempt_id for a in store.tracker.open_attempts()):
        return "the attempt it joined has ended"
    return None


def _report(task_id: str, attempt: Attempt, outcome: BackfillOutcome) -> JoinReport:
    return JoinReport(
        task_id=task_id,
        attempt_id=attempt.attempt_id,
        processed=outcome.mine,
        done=outcome.done,
        total=outcome.total,
        finished=outcome.stopped is None and outcome.ended is None,
        stopped=outcome.stopped,
        requested_by=outcome.requested_by,
        ended=outcome.ended,
    )
