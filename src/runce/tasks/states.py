"""Every task's state (docs/once-tasks.md#states), joined from the files and the store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from runce.domain.locks import LockHolder
from runce.domain.tasks import AppliedRecord, Attempt, Checkpoint, TaskControl
from runce.stores.liveness import process_alive
from runce.tasks.discovery import TaskFile
from runce.timeutil import json_time, utcnow


class TaskState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    INTERRUPTED = "INTERRUPTED"
    FAILED = "FAILED"
    APPLIED = "APPLIED"
    SKIPPED = "SKIPPED"
    DRIFTED = "DRIFTED"
    MISSING = "MISSING"
    PAUSED = "PAUSED"  # asked to pause: not started again until `runce resume`; holds later tasks
    CANCELED = "CANCELED"  # asked to cancel: not started again until `runce resume`


# States whose task the next `run` would run.
RUNNABLE = frozenset({TaskState.PENDING, TaskState.FAILED, TaskState.INTERRUPTED})

# The form of every checksum runce writes; anything else was written by another tool.
CHECKSUM_PREFIX = "sha256:"
FOREIGN_CHECKSUM_NOTE = "checksum written by another tool"


def is_foreign_checksum(checksum: str) -> bool:
    """Was this checksum written by another tool (such as the seed's TypeScript tracker)?

    Such a record cannot be compared with a file, so it counts as applied and never as
    drift; the next ``repair`` or ``baseline`` records runce's own checksum
    (docs/stores.md#mongodb, docs/once-tasks.md#drift-and-repair).
    """
    return not checksum.startswith(CHECKSUM_PREFIX)


@dataclass(frozen=True, slots=True)
class TaskStatus:
    id: str
    state: TaskState
    title: str | None = None
    path: Path | None = None
    checksum: str | None = None
    applied: AppliedRecord | None = None
    attempt: Attempt | None = None  # the open attempt of a RUNNING or INTERRUPTED task
    out_of_order: bool = False
    control: TaskControl | None = None  # a standing pause or cancel request
    checkpoints: tuple[Checkpoint, ...] = ()  # a backfill's progress, one per key range

    @property
    def adopted(self) -> bool:
        """Applied, under a checksum another tool wrote: runce has not recorded its own yet."""
        record = self.applied
        return (
            self.state in (TaskState.APPLIED, TaskState.SKIPPED)
            and record is not None
            and is_foreign_checksum(record.checksum)
        )

    @property
    def backfill(self) -> BackfillProgress | None:
        if not self.checkpoints:
            return None
        return BackfillProgress.of(self.checkpoints, moving=self.state is TaskState.RUNNING)

    def to_dict(self) -> dict[str, object]:
        record = self.applied
        attempt = self.attempt
        return {
            "id": self.id,
            "state": self.state.value,
            "title": self.title,
            "path": str(self.path) if self.path else None,
            "checksum": self.checksum,
            "applied_checksum": record.checksum if record else None,
            "note": FOREIGN_CHECKSUM_NOTE if self.adopted else None,
            "applied_at": json_time(record.applied_at) if record else None,
            "duration_ms": record.duration_ms if record else None,
            "error": record.error if record and record.status == "failed" else None,
            "out_of_order": self.out_of_order,
            "progress": None
            if attempt is None or attempt.progress_done is None
            else {
                "done": attempt.progress_done,
                "total": attempt.progress_total,
            },
            "backfill": None if self.backfill is None else self.backfill.to_dict(),
            "requested": None
            if self.control is None
            else {
                "command": self.control.command,
                "by": self.control.requested_by,
                "at": json_time(self.control.requested_at),
            },
            "attempt_owner": None
            if attempt is None
            else {
                "owner": attempt.owner,
                "host": attempt.host,
                "pid": attempt.pid,
                "started_at": json_time(attempt.started_at),
            },
        }


@dataclass(frozen=True, slots=True)
class BackfillProgress:
    """A backfill's progress summed over its key ranges, with its rate and ETA."""

    done: int
    total: int | None
    rate: float | None  # items a second, as last measured
    ranges: int
    finished_ranges: int
    cursor: object  # of the one range (None when there are several)
    moving: bool = False  # running now: only then is there an ETA
    held: tuple[tuple[str, int], ...] = ()  # (claimer, ranges it holds) of a shared backfill

    @classmethod
    def of(cls, checkpoints: Iterable[Checkpoint], *, moving: bool = False) -> BackfillProgress:
        parts = list(checkpoints)
        now = utcnow()
        holders = Counter(
            c.claim_owner
            for c in parts
            if c.claim_owner is not None
            and not c.finished
            and c.claim_until is not None
            and c.claim_until > now
        )
        rates = [c.rate for c in parts if c.rate is not None and not c.finished]
        return cls(
            done=sum(c.done for c in parts),
            total=next((c.total for c in parts if c.total is not None), None),
            rate=max(rates) if rates else None,  # the ranges share one attempt's rate
            ranges=len(parts),
            finished_ranges=sum(c.finished for c in parts),
            cursor=parts[0].cursor if len(parts) == 1 else None,
            moving=moving,
            held=tuple(sorted(holders.items())),
        )

    @property
    def eta_seconds(self) -> float | None:
        if self.total is None or not self.rate or not self.moving:
            return None
        return max(0.0, (self.total - self.done) / self.rate)

    def to_dict(self) -> dict[str, object]:
        eta = self.eta_seconds
        return {
            "done": self.done,
            "total": self.total,
            "rate_per_second": self.rate,
            "eta_seconds": None if eta is None else round(eta, 1),
            "ranges": self.ranges,
            "finished_ranges": self.finished_ranges,
            "ranges_held": dict(self.held),
            "cursor": self.cursor,
        }


def attempt_is_live(attempt: Attempt, holder: LockHolder | None) -> bool:
    """Is the process that started this attempt still running it?"""
    if process_alive(attempt.machine, attempt.pid) is False:
        return False
    if attempt.lock_token is None:  # run without the lock: only the process tells
        return True
    if holder is None or holder.state != "live":
        return False
    if holder.token is not None:
        return holder.token == attempt.lock_token
    return (holder.host, holder.pid) == (attempt.host, attempt.pid)


def compute_statuses(
    files: Iterable[TaskFile],
    applied: Mapping[str, AppliedRecord],
    open_attempts: Iterable[Attempt],
    holder: LockHolder | None,
    controls: Mapping[str, TaskControl] | None = None,
    checkpoints: Iterable[Checkpoint] = (),
) -> list[TaskStatus]:
    """One status per task file, then one per applied id whose file is gone (MISSING)."""
    by_task: dict[str, list[Checkpoint]] = {}
    for checkpoint in checkpoints:
        by_task.setdefault(checkpoint.task_id, []).append(checkpoint)
    controls = controls or {}
    latest_open = {a.task_id: a for a in sorted(open_attempts, key=lambda a: a.started_at)}
    newest_applied = max((i for i, r in applied.items() if r.is_applied), default="")
    statuses: list[TaskStatus] = []
    seen: set[str] = set()
    for task_file in files:
        seen.add(task_file.id)
        status = _status_of(
            task_file,
            applied.get(task_file.id),
            latest_open.get(task_file.id),
            holder,
            newest_applied,
        )
        status = replace(status, checkpoints=tuple(by_task.get(task_file.id, ())))
        statuses.append(_controlled(status, controls.get(task_file.id)))
    for task_id in sorted(set(applied) - seen):
        record = applied[task_id]
        statuses.append(TaskStatus(task_id, TaskState.MISSING, record.name, applied=record))
    return statuses


def _controlled(status: TaskStatus, control: TaskControl | None) -> TaskStatus:
    """A pause or cancel request shows once nothing runs the task any more."""
    if control is None or status.state in (TaskState.APPLIED, TaskState.SKIPPED):
        return status
    if status.state in (TaskState.RUNNING, TaskState.DRIFTED):
        return replace(status, control=control)  # stops at its next batch boundary
    state = TaskState.PAUSED if control.command == "pause" else TaskState.CANCELED
    return replace(status, state=state, control=control)


def _status_of(
    task_file: TaskFile,
    record: AppliedRecord | None,
    attempt: Attempt | None,
    holder: LockHolder | None,
    newest_applied: str,
) -> TaskStatus:
    title = record.name if record else (attempt.title if attempt else None)
    base = {
        "title": title,
        "path": task_file.path,
        "checksum": task_file.checksum,
        "applied": record,
    }
    if record is not None and record.is_applied:
        if record.checksum != task_file.checksum and not is_foreign_checksum(record.checksum):
            return TaskStatus(task_file.id, TaskState.DRIFTED, **base)  # type: ignore[arg-type]
        state = TaskState.SKIPPED if record.status == "skipped" else TaskState.APPLIED
        return TaskStatus(task_file.id, state, **base)  # type: ignore[arg-type]
    out_of_order = task_file.id < newest_applied
    if attempt is not None:
        state = TaskState.RUNNING if attempt_is_live(attempt, holder) else TaskState.INTERRUPTED
        return TaskStatus(task_file.id, state, attempt=attempt, out_of_order=out_of_order, **base)  # type: ignore[arg-type]
    state = TaskState.FAILED if record is not None else TaskState.PENDING
    return TaskStatus(task_file.id, state, out_of_order=out_of_order, **base)  # type: ignore[arg-type]
