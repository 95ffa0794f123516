"""Once tasks as a store keeps them: the append-only history of attempts, the applied record
per task, a backfill's checkpoints and the standing pause and cancel requests (see
docs/once-tasks.md and docs/backfills.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

AttemptStatus = Literal[
    "started",  # inserted before the task runs; finished exactly once
    "succeeded",
    "failed",
    "skipped",  # already_done() said the work was done; counts as applied
    "skipped-by-env",  # RUNCE_SKIP_<ID>=1 on a skippable task; stays pending
    "interrupted",  # the runner died; closed by the next runner before it re-runs the task
    "repaired",  # `runce repair`: a new checksum accepted for an applied task
    "baselined",  # `runce baseline`: recorded as applied without running
]


FINISHED_STATUSES: frozenset[str] = frozenset(
    {"succeeded", "failed", "skipped", "skipped-by-env", "interrupted", "repaired", "baselined"}
)


# The seed's field names and values: an applied record is the last outcome per task id.
AppliedStatus = Literal["success", "failed", "skipped"]


APPLIED_STATUSES: frozenset[str] = frozenset({"success", "skipped"})


@dataclass(frozen=True, slots=True)
class Attempt:
    """One row of the append-only history: one attempt at one task (or a repair/baseline)."""

    attempt_id: str
    task_id: str
    title: str
    checksum: str
    status: AttemptStatus
    started_at: datetime
    applied_by: str
    owner: str
    host: str
    pid: int
    machine: str
    runce_version: str
    lock_token: str | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    progress_done: int | None = None
    progress_total: int | None = None
    note: str | None = None

    @property
    def finished(self) -> bool:
        return self.status != "started"


def latest_of(
    history: Iterable[Attempt], task_ids: Sequence[str], per_task: int
) -> dict[str, list[Attempt]]:
    """The last ``per_task`` attempts of each of ``task_ids`` in ``history`` (oldest first),
    by task id, for stores that hold the history in a list."""
    if per_task <= 0:
        return {}
    wanted = set(task_ids)
    found: dict[str, list[Attempt]] = {}
    for attempt in history:
        if attempt.task_id in wanted:
            found.setdefault(attempt.task_id, []).append(attempt)
    return {task_id: rows[-per_task:] for task_id, rows in found.items()}


@dataclass(frozen=True, slots=True)
class AppliedRecord:
    """The last outcome of one task id, kept beside the history (the seed's ``runce.applied``)."""

    id: str
    name: str
    checksum: str
    applied_at: datetime
    duration_ms: int
    status: AppliedStatus
    attempt_id: str
    error: str | None = None

    @property
    def is_applied(self) -> bool:
        return self.status in APPLIED_STATUSES


ControlCommand = Literal["pause", "cancel"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """How far one key range of a backfill got (docs/backfills.md): kept with its running attempt.

    ``part`` numbers the range (0 for a backfill that is not parallel) out of ``parts``;
    ``cursor`` is the JSON value the next ``fetch`` gets (None: from the start);
    ``finished`` says ``fetch`` returned no next cursor. A checkpoint is state, not history:
    each save replaces the range's previous one.
    """

    task_id: str
    part: int
    parts: int
    cursor: Any
    done: int
    batches: int
    attempt_id: str
    updated_at: datetime
    finished: bool = False
    total: int | None = None
    rate: float | None = None  # items a second over the saving attempt, for the ETA
    claim_owner: str | None = None  # who holds the range now (parallel backfills), if anyone
    claim_until: datetime | None = None  # when that claim expires unless renewed


@dataclass(frozen=True, slots=True)
class RangeClaim:
    """One process's claim on one key range of a parallel backfill (docs/backfills.md).

    ``token`` is the claim's identity: every checkpoint saved under the claim is conditional
    on the range still carrying it. ``until`` is when the claim expires by the store's clock
    unless renewed; ``attempt_id`` is the attempt the claimer works for (a claim made for an
    older attempt is void). ``checkpoint`` is the range as it stood when it was claimed.
    """

    task_id: str
    part: int
    token: str
    owner: str
    attempt_id: str
    until: datetime
    ttl: float  # seconds each renewal extends it by
    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class TaskControl:
    """A standing request to pause or cancel one task, written from any machine."""

    task_id: str
    command: ControlCommand
    requested_at: datetime
    requested_by: str
