"""The storage contract: what runce asks of a store, in the domain's words.

A store is one object with a :class:`TaskTracker` (the applied state and the append-only
history of once tasks), a :class:`Lock` (the one global lock per store) and, where it keeps
a job queue, its :class:`~runce.stores.queue.RunQueue`, schedules and API tokens. Backends
live in their own modules and are found through :mod:`runce.stores.registry`.

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

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from runce.domain.locks import Lease, LockHolder, Owner
from runce.domain.schema import SchemaStatus
from runce.domain.tasks import (
    AppliedRecord,
    Attempt,
    Checkpoint,
    ControlCommand,
    RangeClaim,
    TaskControl,
)
from runce.stores.queue import RunQueue
from runce.stores.schedules import ScheduleStore
from runce.stores.tokens import TokenStore


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
    """An open transaction on the store's database, for a transactional task
    (docs/once-tasks.md#transactional-tasks)."""

    @property
    def handle(self) -> Any:
        """What the task gets as ``ctx.db`` (SQL stores) or ``ctx.session`` (MongoDB)."""

    def finish(self, attempt: Attempt, applied: AppliedRecord | None) -> None:
        """Write the attempt's final row and applied record inside this transaction."""

    def checkpoint(self, checkpoint: Checkpoint, claim: RangeClaim | None = None) -> None:
        """Save a backfill's checkpoint inside this transaction, with the batch's work.

        With ``claim``, only while the range still carries the claim's token (the claim is
        extended too); :class:`~runce.errors.ClaimLost` otherwise, and the block must end
        in a rollback.
        """


@runtime_checkable
class TaskTracker(Protocol):
    """The applied state and append-only history of once tasks."""

    def applied(self) -> dict[str, AppliedRecord]:
        """The last outcome per task id."""

    def history(self, task_id: str | None = None) -> list[Attempt]:
        """Attempts, oldest first; one task's when ``task_id`` is given."""

    def latest_attempts(self, task_ids: Sequence[str], per_task: int) -> dict[str, list[Attempt]]:
        """The last ``per_task`` attempts of each of these tasks, oldest first (the end of
        ``history(task_id)``), by task id; a task with none is left out. A bounded read
        (an index walked from each task's newest attempt), never the whole history."""

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

    def transaction(
        self, lease: Lease | None, claim: RangeClaim | None = None
    ) -> AbstractContextManager[Transaction]:
        """Open a transaction for a transactional task; committed when the block exits cleanly.

        ``claim``: the transaction is a batch of a range held by this claim (a store may note
        the transaction with the claim, so that whoever takes the range over can end it).

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
class RangeClaims(Protocol):
    """Claims on the key ranges of a parallel backfill, so that several processes (on
    several hosts) share its ranges (docs/backfills.md#ranges-on-several-hosts).

    A tracker that offers them (SQLite, PostgreSQL, MongoDB) implements these methods too;
    the memory and file stores do not. A range is claimable when it is not finished and is
    unclaimed, or its claim expired by the store's clock, or its claim was made for another
    attempt (for the lock's holder). Every decision is one conditional write, so two
    claimers never hold one range.
    """

    def claim_range(
        self, task_id: str, attempt_id: str, owner: str, ttl: float, lease: Lease | None = None
    ) -> RangeClaim | None:
        """Claim a claimable range of ``task_id`` for ``ttl`` seconds (an unclaimed one
        first, then the lowest part); None when there is none.

        With ``lease`` (the lock holder's, whose attempt is the task's running one) the write
        is fenced by the lease, and claims made for another attempt count as free: a new
        attempt takes the ranges of the one it replaced at once.
        """

    def renew_claim(self, claim: RangeClaim) -> bool:
        """Extend the claim by its ``ttl``; False when the range no longer carries its token."""

    def release_claim(self, claim: RangeClaim) -> None:
        """Give the range up; does nothing when it no longer carries the claim's token."""

    def save_claimed_checkpoint(
        self, checkpoint: Checkpoint, claim: RangeClaim, lease: Lease | None
    ) -> None:
        """Save the range's checkpoint and extend the claim, only while the range carries
        the claim's token; :class:`~runce.errors.ClaimLost` otherwise, writing nothing."""


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

    @property
    def runs(self) -> RunQueue | None:
        """The job queue; None on a store that keeps once tasks only (the file store)."""

    @property
    def schedules(self) -> ScheduleStore | None:
        """The stored cron schedules; None where there is no job queue."""

    @property
    def tokens(self) -> TokenStore | None:
        """The HTTP API's bearer tokens; None where there is no job queue."""

    def schema_status(self) -> SchemaStatus:
        """Read-only: the schema version against the latest this runce ships."""

    def upgrade(self) -> list[str]:
        """Apply pending migrations under the migration lock; return their names."""

    def schema_sql(self) -> str:
        """The DDL of every migration, for teams whose DBAs apply it by hand."""

    def close(self) -> None: ...


__all__ = [
    "Lock",
    "RangeClaims",
    "Store",
    "StoreSpec",
    "TaskTracker",
    "Transaction",
]
