"""The global lock (docs/once-tasks.md#the-lock): a session-level ``pg_try_advisory_lock``
on a dedicated autocommit connection per lease, and the writes fenced by it.

The lock lives as long as its session: a runner that dies (even by ``SIGKILL``) closes its
socket, the server ends the session, and the lock is free at once. (Should the socket
outlive the process, say inherited by a forked child, a holder whose process is known dead
on this machine has its session ended by the next runner.) The connection is never
left inside a transaction, so a task's ``CREATE INDEX CONCURRENTLY`` on another connection
never waits for it. Its ``application_name`` carries the owner, and a small ``lock_info``
row (token, owner, host, pid, machine, since) is written on it for ``status``; a row whose
backend no longer holds the lock describes nobody.

Fencing: every write made under a lease runs on that lease's own session, in a short
transaction that first checks the session still holds the lock. If the session is gone
(server restart, backend terminated by ``unlock --force``) the write fails and nothing is
written: :class:`LockLost`. A transactional task's connection is another session; it checks
the lock's backend in ``pg_locks`` inside its transaction instead (see
:func:`fence_transaction`).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.sql import Composed

from runce.domain.locks import Lease, LockHolder, Owner
from runce.errors import LockHeld, LockLost, StoreError
from runce.stores.postgres.connection import Connection, Database, translate
from runce.stores.postgres.rows import Row, holder_from, owner_params, utc

T = TypeVar("T")

_APPLICATION_NAME_BYTES = 63  # NAMEDATALEN - 1: the server cuts longer names
_TERMINATE_WAIT = 10.0


class PostgresLock:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._sessions: dict[str, LockSession] = {}  # by lease token
        self._guard = threading.Lock()

    def try_acquire(self, owner: Owner, ttl: float) -> Lease | None:
        self._db.ensure_schema("take the lock")
        current = self._current()
        if current is not None and (current[0].state == "live" or not self._ended(current[1])):
            return None  # held: fail fast, without opening a connection
        token = secrets.token_hex(16)
        session = LockSession.open(self._db, owner, ttl)
        try:
            since = session.take(token, owner)
        except BaseException:
            session.close()
            raise
        if since is None:
            session.close()
            return None
        with self._guard:
            self._sessions[token] = session
        return Lease(token=token, owner=owner, acquired_at=since, ttl=ttl)

    def renew(self, lease: Lease) -> bool:
        """Nothing to extend: True while the lease's session is alive and holds the lock."""
        session = self._session(lease)
        return session is not None and session.holds()

    def release(self, lease: Lease) -> None:
        with self._guard:
            session = self._sessions.pop(lease.token, None)
        if session is not None:
            session.release(lease.token)

    def holder(self) -> LockHolder | None:
        current = self._current()
        return current[0] if current is not None else None

    def clear(self, *, force: bool = False) -> LockHolder | None:
        current = self._current()
        if current is None:
            return None
        holder, backend_pid = current
        if holder.state == "live" and not force:
            raise LockHeld(
                f"the lock is held by {holder.describe()}, which is alive; wait for it to "
                "finish, or clear it with force (which ends its database session)"
            )
        self._terminate(backend_pid)
        return holder

    def fenced(self, lease: Lease, work: Callable[[Connection], T], *, what: str) -> T:
        """Run ``work`` in a transaction on the lease's session, if it still holds the lock."""
        session = self._session(lease)
        if session is None:
            raise LockLost(lost_message("this store holds no such lease"))
        self._db.ensure_schema(what)
        return session.run(work, what=what)

    def backend_of(self, lease: Lease) -> int:
        """The backend pid of the session holding ``lease``, for fencing another connection."""
        session = self._session(lease)
        if session is None:
            raise LockLost(lost_message("this store holds no such lease"))
        return session.backend_pid

    def close(self) -> None:
        with self._guard:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()  # ending the session releases its lock

    def _session(self, lease: Lease) -> LockSession | None:
        with self._guard:
            return self._sessions.get(lease.token)

    def _current(self) -> tuple[LockHolder, int] | None:
        """The holder and its backend pid, from pg_locks and pg_stat_activity."""
        what = "read the lock holder"
        key = {"key": self._db.target.lock_key}
        lock = self._db.plain(lambda conn: _one(conn, self._db.sql("lock_holder"), key), what=what)
        if lock is None:
            return None
        info = self._db.read(
            lambda conn: _one(conn, self._db.sql("lock_info")), empty=None, what=what
        )
        return holder_from(lock, info), lock["backend_pid"]

    def _ended(self, backend_pid: int) -> bool:
        """End the session of a holder whose process is dead; False if it cannot be ended."""
        try:
            self._terminate(backend_pid)
        except (StoreError, LockHeld):
            return False  # e.g. no right to signal another role's backend: wait for the server
        return True

    def _terminate(self, backend_pid: int) -> None:
        """End the holder's session and wait until the server has let go of its lock."""
        what = "end the lock holder's session"
        params = {"key": self._db.target.lock_key, "pid": backend_pid}
        self._db.plain(
            lambda conn: conn.execute(self._db.sql("terminate_backend"), params), what=what
        )
        deadline = time.monotonic() + _TERMINATE_WAIT
        while self._db.plain(
            lambda conn: _holds(conn, self._db.sql("holds_lock"), params), what=what
        ):
            if time.monotonic() > deadline:
                raise LockHeld(
                    f"the lock holder's session (backend {backend_pid}) did not end within "
                    f"{_TERMINATE_WAIT:g}s of being terminated; try again"
                )
            time.sleep(0.02)


class LockSession:
    """The dedicated connection of one lease: takes, proves and gives up the advisory lock."""

    def __init__(self, conn: Connection, db: Database) -> None:
        self._conn = conn
        self._db = db
        self._guard = threading.Lock()  # one statement or transaction at a time
        self.backend_pid: int = conn.info.backend_pid

    @classmethod
    def open(cls, db: Database, owner: Owner, ttl: float) -> LockSession:
        conn = db.connect(application_name=application_name(owner))
        session = cls(conn, db)
        try:
            with db.translated("take the lock"):
                conn.execute(db.sql("session_keepalives"), _keepalives(ttl))
        except BaseException:
            conn.close()
            raise
        return session

    def take(self, token: str, owner: Owner) -> datetime | None:
        """Try the lock once; when had, record who has it and return since when."""
        with self._guard, self._db.translated("take the lock"):
            if not _value(self._conn, self._db.sql("try_lock"), self._key()):
                return None
            try:
                with self._conn.transaction():
                    self._conn.execute(self._db.sql("short_lock_timeout"))
                    params = owner_params(token, owner)
                    since: datetime = _value(self._conn, self._db.sql("write_lock_info"), params)
            except psycopg.errors.LockNotAvailable:
                # A transactional task of the previous holder is committing for a long time.
                self._conn.execute(self._db.sql("unlock"), self._key())
                return None
            return utc(since)  # type: ignore[no-any-return]

    def holds(self) -> bool:
        """True while this session is alive and holds the lock; False once it is gone."""
        with self._guard:
            try:
                return bool(_holds(self._conn, self._db.sql("holds_lock"), self._mine()))
            except psycopg.Error as exc:
                if self._gone():
                    return False
                raise translate(exc, "renew the lock", self._db.target) from exc

    def run(self, work: Callable[[Connection], T], *, what: str) -> T:
        with self._guard:
            try:
                with self._conn.transaction():
                    if not _holds(self._conn, self._db.sql("holds_lock"), self._mine()):
                        raise LockLost(lost_message("its session no longer holds the lock"))
                    return work(self._conn)
            except psycopg.Error as exc:
                if self._gone():
                    raise LockLost(lost_message(f"its session ended ({exc})")) from exc
                raise translate(exc, what, self._db.target) from exc

    def release(self, token: str) -> None:
        """Give the lock up and close; a session already gone has nothing left to give up."""
        with self._guard:
            try:
                self._conn.execute(self._db.sql("delete_lock_info"), {"token": token})
                self._conn.execute(self._db.sql("unlock"), self._key())
            except psycopg.Error as exc:
                if not self._gone():
                    raise translate(exc, "release the lock", self._db.target) from exc
            finally:
                self._conn.close()

    def close(self) -> None:
        with self._guard:
            self._conn.close()

    def _gone(self) -> bool:
        return self._conn.broken or self._conn.closed

    def _key(self) -> dict[str, int]:
        return {"key": self._db.target.lock_key}

    def _mine(self) -> dict[str, int]:
        return {"key": self._db.target.lock_key, "pid": self.backend_pid}


def fence_transaction(
    conn: Connection, db: Database, token: str, backend_pid: int, *, share: bool
) -> None:
    """Inside a transactional task's transaction: LockLost unless the lease still holds.

    With ``share`` (just before the task's outcome is written), the info row is read
    ``FOR SHARE`` first: a runner that takes the lock after this lease's session died
    cannot record itself (and so cannot read the applied state) until this transaction
    ends, so it sees this commit or none of it.
    """
    if share:
        row = _one(conn, db.sql("lock_info_for_share"))
        if row is None or row["token"] != token:
            raise LockLost(lost_message("another runner has taken the lock since"))
    params = {"key": db.target.lock_key, "pid": backend_pid}
    if not _holds(conn, db.sql("holds_lock"), params):
        raise LockLost(lost_message("its session no longer holds the lock"))


def lost_message(why: str) -> str:
    return f"this runner's lease on the lock is gone ({why}), so nothing was written"


def application_name(owner: Owner) -> str:
    """``runce <owner> <host> pid <pid>``, cut to what the server keeps (63 bytes)."""
    name = f"runce {owner.label} {owner.host} pid {owner.pid}"
    cut = name.encode()[:_APPLICATION_NAME_BYTES]
    return cut.decode(errors="ignore")


def _keepalives(ttl: float) -> dict[str, str]:
    """TCP keepalives that give up on a vanished client within about one lease."""
    return {
        "idle": str(max(1, round(ttl / 3))),
        "interval": str(max(1, round(ttl / 6))),
        "count": "3",
    }


def _one(conn: Connection, statement: Composed, params: dict[str, Any] | None = None) -> Row | None:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(statement, params).fetchone()


def _value(conn: Connection, statement: Composed, params: dict[str, Any] | None = None) -> Any:
    row = conn.execute(statement, params).fetchone()
    return None if row is None else row[0]


def _holds(conn: Connection, statement: Composed, params: dict[str, Any]) -> bool:
    return bool(_value(conn, statement, params))
