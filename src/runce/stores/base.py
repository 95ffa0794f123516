"""The storage contract: what runce asks of a store, in the domain's words.

A store is one object with a :class:`TaskTracker` (the applied state and the append-only
history of once tasks) and a :class:`Lock` (the one global lock per store). Backends live in
their own modules and are found through :mod:`runce.stores.registry`.

Rules every backend keeps (the contract suite in ``tests/stores`` checks them):

* Reads never create or migrate anything; a store with no schema yet reads as empty.
* The first write creates or upgrades the schema unless ``auto_migrate`` is off.
* Every write that takes a :class:`Lease` is conditional on that lease still being the
  lock's current one, and raises :class:`~runce.errors.LockLost` otherwise, writing nothing.
* A finished history row is never changed again; rows are never deleted.
* Driver exceptions are translated into :class:`~runce.errors.StoreError` subclasses with
  the driver's exception as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from runce.stores.liveness import Owner

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
    """How far one key range of a backfill got (T-12): kept with its running attempt.

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


@dataclass(frozen=True, slots=True)
class TaskControl:
    """A standing request to pause or cancel one task, written from any machine."""

    task_id: str
    command: ControlCommand
    requested_at: datetime
    requested_by: str


@dataclass(frozen=True, slots=True)
class Lease:
    """One acquisition of the global lock. The token is its identity; ``owner`` is a label."""

    token: str
    owner: Owner
    acquired_at: datetime
    ttl: float


HolderState = Literal["live", "expired", "dead"]


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds (or last held) the lock, as far as the store can tell."""

    owner: str
    host: str | None
    pid: int | None
    since: datetime | None
    state: HolderState
    token: str | None = None
    machine: str | None = None
    lease_until: datetime | None = None

    def describe(self) -> str:
        where = f"{self.host} pid {self.pid}" if self.host and self.pid else "unknown process"
        since = f" since {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else ""
        if self.owner in (self.host, None):
            return f"{where}{since}"
        return f"{self.owner} ({where}){since}"


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where a store's schema stands against the migrations this runce ships."""

    current: int
    latest: int
    applied: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()

    @property
    def up_to_date(self) -> bool:
        return self.current == self.latest


@dataclass(frozen=True)
class StoreSpec:
    """Everything a backend factory gets: the store's type, URL and options from configuration."""

    type: str
    url: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    base_dir: Path = field(default_factory=Path.cwd)
    auto_migrate: bool = True
    schema: str = "runce"


class Transaction(Protocol):
    """An open transaction on the store's database, for a transactional task (T-7)."""

    @property
    def handle(self) -> Any:
        """What the task gets as ``ctx.db`` (SQL stores) or ``ctx.session`` (MongoDB)."""

    def finish(self, attempt: Attempt, applied: AppliedRecord | None) -> None:
        """Write the attempt's final row and applied record inside this transaction."""

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        """Save a backfill's checkpoint inside this transaction, with the batch's work."""


@runtime_checkable
class TaskTracker(Protocol):
    """The applied state and append-only history of once tasks."""

    def applied(self) -> dict[str, AppliedRecord]:
        """The last outcome per task id."""

    def history(self, task_id: str | None = None) -> list[Attempt]:
        """Attempts, oldest first; one task's when ``task_id`` is given."""

    def open_attempts(self) -> list[Attempt]:
        """Attempts still ``started``: running now, or interrupted."""

    def begin(self, attempt: Attempt, lease: Lease | None) -> None:
        """Insert a ``started`` attempt."""

    def progress(self, attempt_id: str, done: int, total: int | None, lease: Lease | None) -> None:
        """Store the progress of a running attempt."""

    def finish(self, attempt: Attempt, applied: AppliedRecord | None, lease: Lease | None) -> None:
        """Finish a ``started`` attempt and upsert ``applied`` (if given), atomically."""

    def record(self, attempt: Attempt, applied: AppliedRecord | None, lease: Lease | None) -> None:
        """Append an already finished attempt and upsert ``applied`` (if given), atomically."""

    def transaction(self, lease: Lease | None) -> AbstractContextManager[Transaction]:
        """Open a transaction for a transactional task; committed when the block exits cleanly.

        Raises :class:`~runce.errors.UnsupportedFeature` on stores without one.
        """

    def checkpoints(self, task_id: str) -> list[Checkpoint]:
        """A backfill's checkpoints, one per key range, by ``part``."""

    def all_checkpoints(self) -> list[Checkpoint]:
        """Every backfill's checkpoints, by task id and ``part`` (for ``status``)."""

    def save_checkpoint(self, checkpoint: Checkpoint, lease: Lease | None) -> None:
        """Replace the checkpoint of one key range of a backfill."""

    def controls(self) -> dict[str, TaskControl]:
        """The standing pause and cancel requests, by task id."""

    def set_control(self, task_id: str, command: ControlCommand | None, requested_by: str) -> None:
        """Ask a task to pause or cancel, or (``None``) withdraw the request. Takes no lease:
        any machine may ask, and the runner reads the request at its next batch boundary."""


@runtime_checkable
class Lock(Protocol):
    """One global lock per store, taken by a lease with a random token per acquisition."""

    def try_acquire(self, owner: Owner, ttl: float) -> Lease | None:
        """Take the lock if it is free, expired or held by a dead process; else None."""

    def renew(self, lease: Lease) -> bool:
        """Extend the lease; False when it is no longer this lease's (lost)."""

    def release(self, lease: Lease) -> None:
        """Give the lock up; does nothing when the lease is no longer the current one."""

    def holder(self) -> LockHolder | None:
        """The current or last holder, with its state; None when never held or released."""

    def clear(self, *, force: bool = False) -> LockHolder | None:
        """Remove an expired or dead holder (any holder with ``force``); return what was removed.

        Raises :class:`~runce.errors.LockHeld` when the holder is live and ``force`` is false.
        """


@runtime_checkable
class Store(Protocol):
    """A configured backend: the tracker, the lock and the schema they live in."""

    @property
    def description(self) -> str:
        """The store's URL with any password masked, for every command to print."""

    @property
    def tracker(self) -> TaskTracker: ...

    @property
    def lock(self) -> Lock: ...

    @property
    def supports_transactions(self) -> bool: ...

    def schema_status(self) -> SchemaStatus:
        """Read-only: the schema version against the latest this runce ships."""

    def upgrade(self) -> list[str]:
        """Apply pending migrations under the migration lock; return their names."""

    def schema_sql(self) -> str:
        """The DDL of every migration, for teams whose DBAs apply it by hand."""

    def close(self) -> None: ...


def iter_migration_names(names: Iterator[str]) -> list[str]:
    """Sort migration file names ``NNNN_description.sql`` by their number."""
    return sorted((name for name in names if name.endswith(".sql")), key=lambda n: int(n[:4]))
