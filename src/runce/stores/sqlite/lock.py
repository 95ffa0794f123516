"""The global lock (docs/once-tasks.md#the-lock) as a lease row in ``runce_lock``, taken and
renewed in short ``BEGIN IMMEDIATE`` transactions against SQLite's clock; never held open
across a task."""

from __future__ import annotations

import secrets
import sqlite3

from runce.domain.locks import Lease, LockHolder, Owner
from runce.errors import LockHeld, LockLost
from runce.stores.sqlite.connection import Database, DatabaseBusy, GaveUp
from runce.stores.sqlite.queries import query
from runce.stores.sqlite.rows import holder_from, lease_params, take_params
from runce.timeutil import from_iso

# Renewing waits for the write lock in short steps, so that it notices in time when the
# lock is held by this very store's open transaction (see renew).
_RENEW_PATIENCE = 0.25


class SQLiteLock:
    def __init__(self, db: Database) -> None:
        self._db = db

    def try_acquire(self, owner: Owner, ttl: float) -> Lease | None:
        # A live holder is visible without the write lock: fail fast, contend for nothing.
        current = self.holder()
        if current is not None and current.state == "live":
            return None
        token = secrets.token_hex(16)
        try:
            acquired_at = self._db.write(
                lambda conn: _take(conn, token, owner, ttl), what="take the lock"
            )
        except DatabaseBusy:
            return None  # someone has held the file's write lock all along: not free now
        if acquired_at is None:
            return None
        return Lease(token=token, owner=owner, acquired_at=from_iso(acquired_at), ttl=ttl)

    def renew(self, lease: Lease) -> bool:
        # A transactional task of this store holds the file's write lock: no one else can
        # write, so the lease cannot be taken, and writing would only wait for ourselves.
        # The transaction extends the lease when it commits.
        def ours_already() -> bool:
            return self._db.in_transaction_for(lease.token)

        try:
            changed = self._db.write(
                lambda conn: _update(conn, "renew_lock", lease_params(lease.token, lease.ttl)),
                what="renew the lock",
                patience=_RENEW_PATIENCE,
                give_up=ours_already,
            )
        except GaveUp:
            return True
        return changed == 1

    def release(self, lease: Lease) -> None:
        self._db.write(
            lambda conn: _update(conn, "release_lock", {"token": lease.token}),
            what="release the lock",
        )

    def holder(self) -> LockHolder | None:
        return self._db.read(_holder, empty=None, what="read the lock holder")

    def clear(self, *, force: bool = False) -> LockHolder | None:
        if self.holder() is None:
            return None  # nothing to clear; and `runce unlock` on a new project creates no file
        return self._db.write(lambda conn: _clear(conn, force), what="clear the lock")


def fence(conn: sqlite3.Connection, lease: Lease | None) -> None:
    """Raise LockLost unless ``lease`` is still the lock's current one (inside a write).

    The token alone decides: while the row keeps our token nobody took the lock, even if
    the lease ran past its time.
    """
    if lease is None:
        return
    row = conn.execute(query("lock_token")).fetchone()
    if row is None or row[0] != lease.token:
        raise LockLost(_lost_message())


def fence_and_extend(conn: sqlite3.Connection, lease: Lease | None) -> None:
    """:func:`fence`, also extending the lease, for a transaction that held the file."""
    if lease is None:
        return
    if _update(conn, "renew_lock", lease_params(lease.token, lease.ttl)) != 1:
        raise LockLost(_lost_message())


def _lost_message() -> str:
    return (
        "this runner's lease on the lock is gone (it expired and was taken, or was "
        "cleared), so nothing was written"
    )


def _holder(conn: sqlite3.Connection) -> LockHolder | None:
    cursor = conn.cursor()
    cursor.row_factory = sqlite3.Row
    row = cursor.execute(query("lock_holder")).fetchone()
    return holder_from(row) if row is not None else None


def _take(conn: sqlite3.Connection, token: str, owner: Owner, ttl: float) -> str | None:
    current = _holder(conn)
    if current is not None and current.state == "live":
        return None
    # fetchall: a RETURNING statement is only finished once its rows are all read.
    [row] = conn.execute(query("take_lock"), take_params(token, owner, ttl)).fetchall()
    acquired_at: str = row[0]
    return acquired_at


def _clear(conn: sqlite3.Connection, force: bool) -> LockHolder | None:
    current = _holder(conn)
    if current is None:
        return None
    if current.state == "live" and not force:
        raise LockHeld(
            f"the lock is held by {current.describe()}, which is alive; wait for it to "
            "finish, or clear it with force"
        )
    conn.execute(query("clear_lock"))
    return current


def _update(conn: sqlite3.Connection, name: str, params: dict[str, object]) -> int:
    return conn.execute(query(name), params).rowcount
