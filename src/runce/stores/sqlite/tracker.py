"""The applied state and append-only history of once tasks, in ``runce_applied`` and
``runce_history``. Reads and writes are the SQL stores' own (:mod:`runce.stores.sql.tracker`):
every write is one short transaction; one under a lease first checks, in that same
transaction, that the lease is still the lock's (see :func:`lock.fence`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from runce.domain.locks import Lease
from runce.domain.tasks import AppliedRecord, Attempt, Checkpoint, RangeClaim
from runce.errors import StoreError
from runce.stores.sql.tracker import SqlTracker, must_be_finished
from runce.stores.sqlite.connection import Database
from runce.stores.sqlite.dialect import SQLiteDialect, SQLiteSteps
from runce.stores.sqlite.lock import fence, fence_and_extend
from runce.stores.sqlite.rows import applied_from, attempt_from, params_of


class SQLiteTracker(SqlTracker):
    def __init__(self, db: Database) -> None:
        super().__init__(
            SQLiteDialect(db),
            applied_from=applied_from,
            attempt_from=attempt_from,
            params_of=params_of,
        )
        self._db = db

    def progress(self, attempt_id: str, done: int, total: int | None, lease: Lease | None) -> None:
        if self._db.in_any_transaction():
            # A transactional task holds the file's write lock, so this write would wait for
            # the task itself; nobody could see it before the task's commit anyway.
            return
        super().progress(attempt_id, done, total, lease)

    @contextmanager
    def transaction(
        self, lease: Lease | None, claim: RangeClaim | None = None
    ) -> Iterator[SQLiteTransaction]:
        # A helper killed mid-batch drops the file's write lock: its batch never happened.
        what = "run a transactional task"
        token = lease.token if lease is not None else None
        with self._db.transaction(token, what=what) as conn:
            with self._db.translated(what):
                fence(conn, lease)  # a lease already lost: do not even start
            yield SQLiteTransaction(self, conn, self._db)
            if not conn.in_transaction:
                raise StoreError(
                    f"the transactional task ended its transaction itself (SQLite store "
                    f"{self._db.path}); leave COMMIT and ROLLBACK to runce"
                )
            with self._db.translated(what):
                # Nobody could write while we held the file: extending is safe, and the
                # renewals skipped meanwhile are made up for.
                fence_and_extend(conn, lease)


class SQLiteTransaction:
    """``handle`` is a plain sqlite3 connection inside runce's open ``BEGIN IMMEDIATE``."""

    def __init__(self, tracker: SqlTracker, conn: sqlite3.Connection, db: Database) -> None:
        self._tracker = tracker
        self._conn = conn
        self._steps = SQLiteSteps(conn)
        self._db = db

    @property
    def handle(self) -> sqlite3.Connection:
        return self._conn

    def finish(self, attempt: Attempt, applied: AppliedRecord | None) -> None:
        must_be_finished(attempt)
        with self._db.translated(f"record the outcome of {attempt.task_id}"):
            self._tracker.write_finish(self._steps, attempt, applied)

    def checkpoint(self, checkpoint: Checkpoint, claim: RangeClaim | None = None) -> None:
        with self._db.translated(f"save the checkpoint of {checkpoint.task_id}"):
            self._tracker.write_checkpoint(self._steps, checkpoint, claim)
