"""The in-process store (``memory://`` or ``memory://name``), for users' own unit tests.

Stores with the same URL share their state within one process, so separate calls to
``runce.run_tasks`` see each other's records; :func:`reset` forgets everything.
"""

from __future__ import annotations

import secrets
import threading
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import timedelta

from runce.errors import LockHeld, LockLost, StoreError, UnsupportedFeature
from runce.stores.base import (
    AppliedRecord,
    Attempt,
    Lease,
    LockHolder,
    SchemaStatus,
    StoreSpec,
    Transaction,
)
from runce.stores.liveness import Owner, process_alive
from runce.timeutil import utcnow


class _State:
    def __init__(self) -> None:
        self.mutex = threading.RLock()
        self.applied: dict[str, AppliedRecord] = {}
        self.history: list[Attempt] = []
        self.holder: LockHolder | None = None


_states: dict[str, _State] = {}
_states_mutex = threading.Lock()


def reset() -> None:
    """Forget every memory store in this process."""
    with _states_mutex:
        _states.clear()


def _state_for(name: str) -> _State:
    with _states_mutex:
        return _states.setdefault(name, _State())


class MemoryTracker:
    def __init__(self, state: _State) -> None:
        self._state = state

    def applied(self) -> dict[str, AppliedRecord]:
        with self._state.mutex:
            return dict(self._state.applied)

    def history(self, task_id: str | None = None) -> list[Attempt]:
        with self._state.mutex:
            return [a for a in self._state.history if task_id is None or a.task_id == task_id]

    def open_attempts(self) -> list[Attempt]:
        with self._state.mutex:
            return [a for a in self._state.history if a.status == "started"]

    def begin(self, attempt: Attempt, lease: Lease | None) -> None:
        with self._state.mutex:
            self._check(lease)
            self._state.history.append(replace(attempt, status="started"))

    def progress(self, attempt_id: str, done: int, total: int | None, lease: Lease | None) -> None:
        with self._state.mutex:
            self._check(lease)
            index = self._open_index(attempt_id)
            row = self._state.history[index]
            self._state.history[index] = replace(row, progress_done=done, progress_total=total)

    def finish(self, attempt: Attempt, applied: AppliedRecord | None, lease: Lease | None) -> None:
        with self._state.mutex:
            self._check(lease)
            self._state.history[self._open_index(attempt.attempt_id)] = attempt
            if applied is not None:
                self._state.applied[applied.id] = applied

    def record(self, attempt: Attempt, applied: AppliedRecord | None, lease: Lease | None) -> None:
        with self._state.mutex:
            self._check(lease)
            self._state.history.append(attempt)
            if applied is not None:
                self._state.applied[applied.id] = applied

    def transaction(self, lease: Lease | None) -> AbstractContextManager[Transaction]:
        raise UnsupportedFeature(
            "the memory store has no database to run a transactional task in; "
            "use the sqlite or postgresql store for transactional tasks"
        )

    def _open_index(self, attempt_id: str) -> int:
        for index, row in enumerate(self._state.history):
            if row.attempt_id == attempt_id and row.status == "started":
                return index
        raise StoreError(f"no started attempt {attempt_id!r} to update in the memory store")

    def _check(self, lease: Lease | None) -> None:
        holder = self._state.holder
        if lease is not None and (holder is None or holder.token != lease.token):
            raise LockLost("the memory store's lock is no longer held by this runner")


class MemoryLock:
    def __init__(self, state: _State) -> None:
        self._state = state

    def try_acquire(self, owner: Owner, ttl: float) -> Lease | None:
        with self._state.mutex:
            current = self.holder()
            if current is not None and current.state == "live":
                return None
            now = utcnow()
            lease = Lease(token=secrets.token_hex(16), owner=owner, acquired_at=now, ttl=ttl)
            self._state.holder = LockHolder(
                owner=owner.label,
                host=owner.host,
                pid=owner.pid,
                since=now,
                state="live",
                token=lease.token,
                machine=owner.machine,
                lease_until=now + timedelta(seconds=ttl),
            )
            return lease

    def renew(self, lease: Lease) -> bool:
        with self._state.mutex:
            holder = self._state.holder
            if holder is None or holder.token != lease.token:
                return False
            until = utcnow() + timedelta(seconds=lease.ttl)
            self._state.holder = replace(holder, lease_until=until)
            return True

    def release(self, lease: Lease) -> None:
        with self._state.mutex:
            holder = self._state.holder
            if holder is not None and holder.token == lease.token:
                self._state.holder = None

    def holder(self) -> LockHolder | None:
        with self._state.mutex:
            holder = self._state.holder
            if holder is None:
                return None
            if process_alive(holder.machine, holder.pid) is False:
                return replace(holder, state="dead")
            if holder.lease_until is not None and holder.lease_until < utcnow():
                return replace(holder, state="expired")
            return holder

    def clear(self, *, force: bool = False) -> LockHolder | None:
        with self._state.mutex:
            holder = self.holder()
            if holder is not None and holder.state == "live" and not force:
                raise LockHeld(f"the lock is held by {holder.describe()}")
            self._state.holder = None
            return holder


class MemoryStore:
    """State lives in this process only; nothing is ever migrated."""

    def __init__(self, name: str) -> None:
        state = _state_for(name)
        self._name = name
        self.tracker = MemoryTracker(state)
        self.lock = MemoryLock(state)

    @property
    def description(self) -> str:
        return f"memory://{self._name}"

    @property
    def supports_transactions(self) -> bool:
        return False

    def schema_status(self) -> SchemaStatus:
        return SchemaStatus(current=0, latest=0)

    def upgrade(self) -> list[str]:
        return []

    def schema_sql(self) -> str:
        return "-- the memory store keeps no schema\n"

    def close(self) -> None:
        """State outlives the store object, by design (see the module docstring)."""


def open_store(spec: StoreSpec) -> MemoryStore:
    name = (spec.url or "memory://").partition("://")[2] or str(spec.options.get("name", ""))
    return MemoryStore(name)
