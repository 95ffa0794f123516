"""The applied state and append-only history of once tasks, in ``applied`` and ``history``.

Reads and writes are the SQL stores' own (:mod:`runce.stores.sql.tracker`): writes without a
lease are short transactions on the store's connection; writes under a lease run on the
lease's own lock session (see :mod:`runce.stores.postgres.lock`), so they happen only while
the lock is held. A transactional task (docs/once-tasks.md#transactional-tasks) gets a
connection of its own inside a transaction, and its outcome is written in that same
transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from runce.domain.locks import Lease
from runce.domain.tasks import AppliedRecord, Attempt, Checkpoint, RangeClaim
from runce.stores.postgres.connection import Connection, Database, translate
from runce.stores.postgres.dialect import PostgresDialect, PostgresSteps
from runce.stores.postgres.lock import PostgresLock, fence_transaction
from runce.stores.postgres.rows import applied_from, attempt_from, params_of
from runce.stores.sql.tracker import SqlTracker, must_be_finished


class PostgresTracker(SqlTracker):
    def __init__(self, dialect: PostgresDialect, db: Database, lock: PostgresLock) -> None:
        super().__init__(
            dialect, applied_from=applied_from, attempt_from=attempt_from, params_of=params_of
        )
        self._db = db
        self._lock = lock

    @contextmanager
    def transaction(
        self, lease: Lease | None, claim: RangeClaim | None = None
    ) -> Iterator[PostgresTransaction]:
        # A helper killed mid-batch closes its connection: the server rolls its batch back.
        what = "run a transactional task"
        self._db.ensure_schema(what)
        backend_pid = self._lock.backend_of(lease) if lease is not None else None
        conn = self._db.connect()
        try:
            with _committing(conn, self._db, what):
                tx = PostgresTransaction(self, conn, self._db, lease, backend_pid)
                with self._db.translated(what):
                    tx.fence(share=False)  # a lease already lost: do not even start
                yield tx
        finally:
            conn.close()


class PostgresTransaction:
    """``handle`` is a plain psycopg connection inside runce's open transaction.

    Its ``search_path`` and settings are the server's defaults: the task's tables are its
    own, and runce's are always named with their schema.
    """

    def __init__(
        self,
        tracker: SqlTracker,
        conn: Connection,
        db: Database,
        lease: Lease | None,
        backend_pid: int | None,
    ) -> None:
        self._tracker = tracker
        self._conn = conn
        self._steps = PostgresSteps(conn, db)
        self._db = db
        self._lease = lease
        self._backend_pid = backend_pid

    @property
    def handle(self) -> Connection:
        return self._conn

    def finish(self, attempt: Attempt, applied: AppliedRecord | None) -> None:
        must_be_finished(attempt)
        with self._db.translated(f"record the outcome of {attempt.task_id}"):
            self.fence(share=True)
            self._tracker.write_finish(self._steps, attempt, applied)

    def checkpoint(self, checkpoint: Checkpoint, claim: RangeClaim | None = None) -> None:
        with self._db.translated(f"save the checkpoint of {checkpoint.task_id}"):
            self.fence(share=True)
            self._tracker.write_checkpoint(self._steps, checkpoint, claim)

    def fence(self, *, share: bool) -> None:
        if self._lease is not None and self._backend_pid is not None:
            fence_transaction(
                self._conn, self._db, self._lease.token, self._backend_pid, share=share
            )


@contextmanager
def _committing(conn: Connection, db: Database, what: str) -> Iterator[None]:
    """One transaction for the block: committed on a clean exit, rolled back otherwise.

    Inside it, psycopg refuses ``handle.commit()`` and ``handle.rollback()``: the task
    cannot end runce's transaction by accident. The task's own exceptions pass unchanged.
    """
    failed_inside = False
    try:
        with conn.transaction():
            try:
                yield
            except BaseException:
                failed_inside = True
                raise
    except psycopg.Error as exc:
        if failed_inside:
            raise
        raise translate(exc, what, db.target) from exc
