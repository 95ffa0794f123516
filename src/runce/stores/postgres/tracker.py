"""The applied state and append-only history of once tasks, in ``applied`` and ``history``.

Writes without a lease are short transactions on the store's connection; writes under a
lease run on the lease's own lock session (see :mod:`runce.stores.postgres.lock`), so they
happen only while the lock is held. A transactional task
(docs/once-tasks.md#transactional-tasks) gets a connection of its own inside a transaction,
and its outcome is written in that same transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from runce.domain.locks import Lease
from runce.domain.tasks import (
    AppliedRecord,
    Attempt,
    Checkpoint,
    ControlCommand,
    RangeClaim,
    TaskControl,
)
from runce.errors import ClaimLost, StoreError
from runce.stores.postgres.connection import Connection, Database, translate
from runce.stores.postgres.lock import PostgresLock, fence_transaction
from runce.stores.postgres.rows import Row, applied_from, attempt_from, params_of, utc
from runce.stores.sql.tracker import TrackerReads, must_be_finished

T = TypeVar("T")


class PostgresTracker(TrackerReads):
    def __init__(self, db: Database, lock: PostgresLock) -> None:
        self._db = db
        self._lock = lock

    def _to_applied(self, row: Any) -> AppliedRecord:
        return applied_from(row)

    def _to_attempt(self, row: Any) -> Attempt:
        return attempt_from(row)

    def _task_ids(self, task_ids: list[str]) -> Any:
        return task_ids

    def begin(self, attempt: Attempt, lease: Lease | None) -> None:
        row = replace(attempt, status="started")

        def work(conn: Connection) -> None:
            conn.execute(self._db.sql("insert_attempt"), params_of(row))

        self._write(work, lease, what=f"record the start of {attempt.task_id}")

    def progress(self, attempt_id: str, done: int, total: int | None, lease: Lease | None) -> None:
        params = {"attempt_id": attempt_id, "done": done, "total": total}

        def work(conn: Connection) -> None:
            if conn.execute(self._db.sql("progress"), params).rowcount != 1:
                raise _not_started(attempt_id, self._db)

        self._write(work, lease, what=f"store the progress of attempt {attempt_id}")

    def finish(self, attempt: Attempt, applied: AppliedRecord | None, lease: Lease | None) -> None:
        must_be_finished(attempt)
        self._write(
            lambda conn: write_finish(conn, self._db, attempt, applied),
            lease,
            what=f"record the outcome of {attempt.task_id}",
        )

    def record(self, attempt: Attempt, applied: AppliedRecord | None, lease: Lease | None) -> None:
        must_be_finished(attempt)

        def work(conn: Connection) -> None:
            conn.execute(self._db.sql("insert_attempt"), params_of(attempt))
            _upsert_applied(conn, self._db, applied)

        self._write(work, lease, what=f"record the {attempt.status} attempt of {attempt.task_id}")

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
                tx = PostgresTransaction(conn, self._db, lease, backend_pid)
                with self._db.translated(what):
                    tx.fence(share=False)  # a lease already lost: do not even start
                yield tx
        finally:
            conn.close()

    def checkpoints(self, task_id: str) -> list[Checkpoint]:
        rows = self._select("checkpoints", {"task_id": task_id}, what="read the checkpoints")
        return [_checkpoint_from(row) for row in rows]

    def all_checkpoints(self) -> list[Checkpoint]:
        rows = self._select("all_checkpoints", what="read the checkpoints")
        return [_checkpoint_from(row) for row in rows]

    def save_checkpoint(self, checkpoint: Checkpoint, lease: Lease | None) -> None:
        def work(conn: Connection) -> None:
            conn.execute(self._db.sql("save_checkpoint"), _checkpoint_params(checkpoint))

        self._write(work, lease, what=f"save the checkpoint of {checkpoint.task_id}")

    # -- range claims (parallel backfills shared by several processes) -----------------------

    def claim_range(
        self, task_id: str, attempt_id: str, owner: str, ttl: float, lease: Lease | None = None
    ) -> RangeClaim | None:
        token = secrets.token_hex(16)
        params = {
            "task_id": task_id,
            "attempt_id": attempt_id,
            "owner": owner,
            "token": token,
            "ttl": float(ttl),
            "takeover": lease is not None,
        }

        def work(conn: Connection) -> Row | None:
            with conn.cursor(row_factory=dict_row) as cursor:
                return cursor.execute(self._db.sql("claim_range"), params).fetchone()

        row = self._write(work, lease, what=f"claim a key range of {task_id}")
        if row is None:
            return None
        return RangeClaim(
            task_id=task_id,
            part=row["part"],
            token=token,
            owner=owner,
            attempt_id=attempt_id,
            until=utc(row["claim_until"]),
            ttl=ttl,
            checkpoint=_checkpoint_from(row),
        )

    def renew_claim(self, claim: RangeClaim) -> bool:
        params = {**_claim_params(claim), "ttl": float(claim.ttl)}

        def work(conn: Connection) -> bool:
            return conn.execute(self._db.sql("renew_claim"), params).rowcount == 1

        return self._db.write(
            work, what=f"renew the claim on a key range of {claim.task_id}", transaction=False
        )

    def release_claim(self, claim: RangeClaim) -> None:
        params = _claim_params(claim)

        def work(conn: Connection) -> None:
            conn.execute(self._db.sql("release_claim"), params)

        self._db.write(work, what=f"release a key range of {claim.task_id}", transaction=False)

    def save_claimed_checkpoint(
        self, checkpoint: Checkpoint, claim: RangeClaim, lease: Lease | None
    ) -> None:
        self._write(
            lambda conn: save_claimed(conn, self._db, checkpoint, claim),
            lease,
            what=f"save the checkpoint of {checkpoint.task_id}",
        )

    def controls(self) -> dict[str, TaskControl]:
        rows = self._select("controls", what="read the pause and cancel requests")
        return {
            row["task_id"]: TaskControl(
                row["task_id"], row["command"], utc(row["requested_at"]), row["requested_by"]
            )
            for row in rows
        }

    def set_control(self, task_id: str, command: ControlCommand | None, requested_by: str) -> None:
        params = {"task_id": task_id, "command": command, "requested_by": requested_by}
        name = "clear_control" if command is None else "set_control"

        def work(conn: Connection) -> None:
            conn.execute(self._db.sql(name), params)

        self._db.write(work, what=f"ask {task_id} to {command or 'resume'}", transaction=False)

    def _write(self, work: Callable[[Connection], T], lease: Lease | None, *, what: str) -> T:
        if lease is None:
            return self._db.write(work, what=what)
        return self._lock.fenced(lease, work, what=what)

    def _select(self, name: str, params: dict[str, Any] | None = None, *, what: str) -> list[Row]:
        nothing: list[Row] = []
        return self._db.read(
            lambda conn: _rows(conn, self._db, name, params), empty=nothing, what=what
        )


class PostgresTransaction:
    """``handle`` is a plain psycopg connection inside runce's open transaction.

    Its ``search_path`` and settings are the server's defaults: the task's tables are its
    own, and runce's are always named with their schema.
    """

    def __init__(
        self, conn: Connection, db: Database, lease: Lease | None, backend_pid: int | None
    ) -> None:
        self._conn = conn
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
            write_finish(self._conn, self._db, attempt, applied)

    def checkpoint(self, checkpoint: Checkpoint, claim: RangeClaim | None = None) -> None:
        with self._db.translated(f"save the checkpoint of {checkpoint.task_id}"):
            self.fence(share=True)
            if claim is not None:
                save_claimed(self._conn, self._db, checkpoint, claim)
            else:
                self._conn.execute(self._db.sql("save_checkpoint"), _checkpoint_params(checkpoint))

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


def _checkpoint_params(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "task_id": checkpoint.task_id,
        "part": checkpoint.part,
        "parts": checkpoint.parts,
        "cursor": Jsonb(checkpoint.cursor),
        "done": checkpoint.done,
        "batches": checkpoint.batches,
        "attempt_id": checkpoint.attempt_id,
        "updated_at": checkpoint.updated_at,
        "finished": checkpoint.finished,
        "total": checkpoint.total,
        "rate": checkpoint.rate,
    }


def save_claimed(conn: Connection, db: Database, checkpoint: Checkpoint, claim: RangeClaim) -> None:
    """Save a range's checkpoint, extending its claim, only while the range carries it."""
    params = {**_checkpoint_params(checkpoint), "token": claim.token, "ttl": float(claim.ttl)}
    if conn.execute(db.sql("save_claimed_checkpoint"), params).rowcount != 1:
        raise ClaimLost(
            f"range {claim.part} of {claim.task_id} is no longer claimed by this process (its "
            "claim expired and was taken over), so its checkpoint was not saved"
        )


def _claim_params(claim: RangeClaim) -> dict[str, Any]:
    return {"task_id": claim.task_id, "part": claim.part, "token": claim.token}


def _checkpoint_from(row: Row) -> Checkpoint:
    return Checkpoint(
        task_id=row["task_id"],
        part=row["part"],
        parts=row["parts"],
        cursor=row["cursor"],
        done=row["done"],
        batches=row["batches"],
        attempt_id=row["attempt_id"],
        updated_at=utc(row["updated_at"]),
        finished=row["finished"],
        total=row["total"],
        rate=row["rate"],
        claim_owner=row.get("claim_owner") if row.get("claim_token") else None,
        claim_until=utc(row["claim_until"]) if row.get("claim_token") else None,
    )


def write_finish(
    conn: Connection, db: Database, attempt: Attempt, applied: AppliedRecord | None
) -> None:
    """Close a started history row and upsert the applied record, in the caller's transaction."""
    if conn.execute(db.sql("finish_attempt"), params_of(attempt)).rowcount != 1:
        raise _not_started(attempt.attempt_id, db)
    _upsert_applied(conn, db, applied)


def _upsert_applied(conn: Connection, db: Database, applied: AppliedRecord | None) -> None:
    if applied is not None:
        conn.execute(db.sql("upsert_applied"), params_of(applied))


def _rows(conn: Connection, db: Database, name: str, params: dict[str, Any] | None) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(db.sql(name), params).fetchall()


def _not_started(attempt_id: str, db: Database) -> StoreError:
    return StoreError(
        f"attempt {attempt_id} is not a started attempt in the PostgreSQL store at "
        f"{db.target.where} (it is unknown or already finished)"
    )
