"""The applied state and append-only history of once tasks, in ``runce_applied`` and
``runce_history``. Every write is one short transaction; one under a lease first checks,
in that same transaction, that the lease is still the lock's (see :func:`lock.fence`)."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

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
from runce.stores.sql.tracker import TrackerReads, must_be_finished
from runce.stores.sqlite.connection import Database
from runce.stores.sqlite.lock import fence, fence_and_extend
from runce.stores.sqlite.queries import fetch_rows as _rows
from runce.stores.sqlite.queries import query
from runce.stores.sqlite.rows import applied_from, attempt_from, params_of, ttl_modifier
from runce.timeutil import from_iso, to_iso


class SQLiteTracker(TrackerReads):
    def __init__(self, db: Database) -> None:
        self._db = db

    def _to_applied(self, row: Any) -> AppliedRecord:
        return applied_from(row)

    def _to_attempt(self, row: Any) -> Attempt:
        return attempt_from(row)

    def _task_ids(self, task_ids: list[str]) -> Any:
        return json.dumps(task_ids)

    def begin(self, attempt: Attempt, lease: Lease | None) -> None:
        row = replace(attempt, status="started")

        def work(conn: sqlite3.Connection) -> None:
            fence(conn, lease)
            conn.execute(query("insert_attempt"), params_of(row))

        self._db.write(work, what=f"record the start of {attempt.task_id}")

    def progress(self, attempt_id: str, done: int, total: int | None, lease: Lease | None) -> None:
        if self._db.in_any_transaction():
            # A transactional task holds the file's write lock, so this write would wait for
            # the task itself; nobody could see it before the task's commit anyway.
            return
        params = {"attempt_id": attempt_id, "done": done, "total": total}

        def work(conn: sqlite3.Connection) -> None:
            fence(conn, lease)
            if conn.execute(query("progress"), params).rowcount != 1:
                raise _not_started(attempt_id, self._db)

        self._db.write(work, what=f"store the progress of attempt {attempt_id}")

    def finish(self, attempt: Attempt, applied: AppliedRecord | None, lease: Lease | None) -> None:
        must_be_finished(attempt)

        def work(conn: sqlite3.Connection) -> None:
            fence(conn, lease)
            write_finish(conn, attempt, applied, self._db)

        self._db.write(work, what=f"record the outcome of {attempt.task_id}")

    def record(self, attempt: Attempt, applied: AppliedRecord | None, lease: Lease | None) -> None:
        must_be_finished(attempt)

        def work(conn: sqlite3.Connection) -> None:
            fence(conn, lease)
            conn.execute(query("insert_attempt"), params_of(attempt))
            _upsert_applied(conn, applied)

        self._db.write(work, what=f"record the {attempt.status} attempt of {attempt.task_id}")

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
            yield SQLiteTransaction(conn, self._db)
            if not conn.in_transaction:
                raise StoreError(
                    f"the transactional task ended its transaction itself (SQLite store "
                    f"{self._db.path}); leave COMMIT and ROLLBACK to runce"
                )
            with self._db.translated(what):
                # Nobody could write while we held the file: extending is safe, and the
                # renewals skipped meanwhile are made up for.
                fence_and_extend(conn, lease)

    def checkpoints(self, task_id: str) -> list[Checkpoint]:
        rows = self._select("checkpoints", {"task_id": task_id}, what="read the checkpoints")
        return [_checkpoint_from(row) for row in rows]

    def all_checkpoints(self) -> list[Checkpoint]:
        rows = self._select("all_checkpoints", what="read the checkpoints")
        return [_checkpoint_from(row) for row in rows]

    def save_checkpoint(self, checkpoint: Checkpoint, lease: Lease | None) -> None:
        def work(conn: sqlite3.Connection) -> None:
            fence(conn, lease)
            conn.execute(query("save_checkpoint"), _checkpoint_params(checkpoint))

        self._db.write(work, what=f"save the checkpoint of {checkpoint.task_id}")

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
            "ttl": ttl_modifier(ttl),
            "takeover": int(lease is not None),
        }

        def work(conn: sqlite3.Connection) -> sqlite3.Row | None:
            fence(conn, lease)
            cursor = conn.cursor()
            cursor.row_factory = sqlite3.Row
            row: sqlite3.Row | None = cursor.execute(query("claim_range"), params).fetchone()
            return row

        row = self._db.write(work, what=f"claim a key range of {task_id}")
        if row is None:
            return None
        return RangeClaim(
            task_id=task_id,
            part=row["part"],
            token=token,
            owner=owner,
            attempt_id=attempt_id,
            until=from_iso(row["claim_until"]),
            ttl=ttl,
            checkpoint=_checkpoint_from(row),
        )

    def renew_claim(self, claim: RangeClaim) -> bool:
        params = {**_claim_params(claim), "ttl": ttl_modifier(claim.ttl)}

        def work(conn: sqlite3.Connection) -> bool:
            return conn.execute(query("renew_claim"), params).rowcount == 1

        return self._db.write(work, what=f"renew the claim on a key range of {claim.task_id}")

    def release_claim(self, claim: RangeClaim) -> None:
        params = _claim_params(claim)

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(query("release_claim"), params)

        self._db.write(work, what=f"release a key range of {claim.task_id}")

    def save_claimed_checkpoint(
        self, checkpoint: Checkpoint, claim: RangeClaim, lease: Lease | None
    ) -> None:
        def work(conn: sqlite3.Connection) -> None:
            fence(conn, lease)
            save_claimed(conn, checkpoint, claim)

        self._db.write(work, what=f"save the checkpoint of {checkpoint.task_id}")

    def controls(self) -> dict[str, TaskControl]:
        rows = self._select("controls", what="read the pause and cancel requests")
        return {
            row["task_id"]: TaskControl(
                row["task_id"], row["command"], from_iso(row["requested_at"]), row["requested_by"]
            )
            for row in rows
        }

    def set_control(self, task_id: str, command: ControlCommand | None, requested_by: str) -> None:
        params = {"task_id": task_id, "command": command, "requested_by": requested_by}
        name = "clear_control" if command is None else "set_control"

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(query(name), params)

        self._db.write(work, what=f"ask {task_id} to {command or 'resume'}")

    def _select(
        self, name: str, params: dict[str, Any] | None = None, *, what: str
    ) -> list[sqlite3.Row]:
        nothing: list[sqlite3.Row] = []
        return self._db.read(lambda conn: _rows(conn, name, params), empty=nothing, what=what)


class SQLiteTransaction:
    """``handle`` is a plain sqlite3 connection inside runce's open ``BEGIN IMMEDIATE``."""

    def __init__(self, conn: sqlite3.Connection, db: Database) -> None:
        self._conn = conn
        self._db = db

    @property
    def handle(self) -> sqlite3.Connection:
        return self._conn

    def finish(self, attempt: Attempt, applied: AppliedRecord | None) -> None:
        must_be_finished(attempt)
        with self._db.translated(f"record the outcome of {attempt.task_id}"):
            write_finish(self._conn, attempt, applied, self._db)

    def checkpoint(self, checkpoint: Checkpoint, claim: RangeClaim | None = None) -> None:
        with self._db.translated(f"save the checkpoint of {checkpoint.task_id}"):
            if claim is not None:
                save_claimed(self._conn, checkpoint, claim)
            else:
                self._conn.execute(query("save_checkpoint"), _checkpoint_params(checkpoint))


def save_claimed(conn: sqlite3.Connection, checkpoint: Checkpoint, claim: RangeClaim) -> None:
    """Save a range's checkpoint, extending its claim, only while the range carries it."""
    params = {
        **_checkpoint_params(checkpoint),
        "token": claim.token,
        "ttl": ttl_modifier(claim.ttl),
    }
    if conn.execute(query("save_claimed_checkpoint"), params).rowcount != 1:
        raise ClaimLost(claim_lost_message(claim))


def claim_lost_message(claim: RangeClaim) -> str:
    return (
        f"range {claim.part} of {claim.task_id} is no longer claimed by this process (its "
        "claim expired and was taken over), so its checkpoint was not saved"
    )


def _claim_params(claim: RangeClaim) -> dict[str, Any]:
    return {"task_id": claim.task_id, "part": claim.part, "token": claim.token}


def _checkpoint_params(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "task_id": checkpoint.task_id,
        "part": checkpoint.part,
        "parts": checkpoint.parts,
        "cursor": json.dumps(checkpoint.cursor),
        "done": checkpoint.done,
        "batches": checkpoint.batches,
        "attempt_id": checkpoint.attempt_id,
        "updated_at": to_iso(checkpoint.updated_at),
        "finished": int(checkpoint.finished),
        "total": checkpoint.total,
        "rate": checkpoint.rate,
    }


def _checkpoint_from(row: sqlite3.Row) -> Checkpoint:
    return Checkpoint(
        task_id=row["task_id"],
        part=row["part"],
        parts=row["parts"],
        cursor=json.loads(row["cursor"]),
        done=row["done"],
        batches=row["batches"],
        attempt_id=row["attempt_id"],
        updated_at=from_iso(row["updated_at"]),
        finished=bool(row["finished"]),
        total=row["total"],
        rate=row["rate"],
        **_claim_of(row),
    )


def _claim_of(row: sqlite3.Row) -> dict[str, Any]:
    """Who holds the range, on a schema that has range claims (migration 0011)."""
    try:
        token = row["claim_token"]
    except IndexError:  # an older schema, read as it is
        return {}
    if token is None:
        return {}
    return {"claim_owner": row["claim_owner"], "claim_until": from_iso(row["claim_until"])}


def write_finish(
    conn: sqlite3.Connection, attempt: Attempt, applied: AppliedRecord | None, db: Database
) -> None:
    """Close a started history row and upsert the applied record, in the caller's transaction."""
    if conn.execute(query("finish_attempt"), params_of(attempt)).rowcount != 1:
        raise _not_started(attempt.attempt_id, db)
    _upsert_applied(conn, applied)


def _upsert_applied(conn: sqlite3.Connection, applied: AppliedRecord | None) -> None:
    if applied is not None:
        conn.execute(query("upsert_applied"), params_of(applied))


def _not_started(attempt_id: str, db: Database) -> StoreError:
    return StoreError(
        f"attempt {attempt_id} is not a started attempt in the SQLite store {db.path} "
        "(it is unknown or already finished)"
    )
