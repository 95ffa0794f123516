"""The once-task tracker of the SQL stores, on the dialect seam (:mod:`.dialect`).

Every SQL store ships the same named statements for once tasks (``insert_attempt``,
``finish_attempt``, ``upsert_applied``, ``progress``, the checkpoints, the range claims and
the controls, and the reads ``applied``, ``history``, ``history_of_task``,
``latest_attempts`` and ``open_attempts``); :class:`SqlTracker` runs them through the
store's :class:`~runce.stores.sql.dialect.FencedDialect`, so a write under a lease happens
only while the lease is the lock's. A backend adds its converters between records and
rows, and the transaction a transactional task runs in; that transaction writes its
outcome and checkpoints with :meth:`SqlTracker.write_finish` and
:meth:`SqlTracker.write_checkpoint` on its own connection.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
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
from runce.errors import ClaimLost, StoreError, UsageError
from runce.stores.sql.dialect import FencedDialect, Row, Steps


class SqlTracker:
    """The history and applied state of once tasks, their checkpoints, range claims and
    pause/cancel requests: reads, and writes each a fenced transaction of named statements.
    The backend gives its dialect and its converters between records and rows."""

    def __init__(
        self,
        dialect: FencedDialect,
        *,
        applied_from: Callable[[Row], AppliedRecord],
        attempt_from: Callable[[Row], Attempt],
        params_of: Callable[[Attempt | AppliedRecord], dict[str, Any]],
    ) -> None:
        self._sql = dialect
        self._applied_from = applied_from
        self._attempt_from = attempt_from
        self._params_of = params_of

    # -- reads -----------------------------------------------------------------------------------

    def _select(
        self, name: str, params: Mapping[str, Any] | None = None, *, what: str
    ) -> list[Row]:
        return self._sql.read(name, params or {}, needs=1, what=what)

    def applied(self) -> dict[str, AppliedRecord]:
        rows = self._select("applied", what="read the applied tasks")
        return {record.id: record for record in map(self._applied_from, rows)}

    def history(self, task_id: str | None = None) -> list[Attempt]:
        if task_id is None:
            rows = self._select("history", what="read the history")
        else:
            params = {"task_id": task_id}
            rows = self._select("history_of_task", params, what=f"read the history of {task_id}")
        return [self._attempt_from(row) for row in rows]

    def latest_attempts(self, task_ids: Sequence[str], per_task: int) -> dict[str, list[Attempt]]:
        wanted = list(dict.fromkeys(task_ids))  # a task named twice is read once
        if not wanted or per_task <= 0:
            return {}
        params = {"task_ids": self._sql.texts(wanted), "per_task": per_task}
        rows = self._select("latest_attempts", params, what="read the latest attempts")
        found: dict[str, list[Attempt]] = {}
        for attempt in map(self._attempt_from, rows):  # by task, oldest first
            found.setdefault(attempt.task_id, []).append(attempt)
        return found

    def open_attempts(self) -> list[Attempt]:
        rows = self._select("open_attempts", what="read the open attempts")
        return [self._attempt_from(row) for row in rows]

    # -- attempts and the applied state ----------------------------------------------------------

    def begin(self, attempt: Attempt, lease: Lease | None) -> None:
        params = self._params_of(replace(attempt, status="started"))
        what = f"record the start of {attempt.task_id}"
        self._sql.fenced(lease, lambda steps: steps.run("insert_attempt", params), what=what)

    def progress(self, attempt_id: str, done: int, total: int | None, lease: Lease | None) -> None:
        params = {"attempt_id": attempt_id, "done": done, "total": total}

        def work(steps: Steps) -> None:
            if steps.run("progress", params) != 1:
                raise self._not_started(attempt_id)

        self._sql.fenced(lease, work, what=f"store the progress of attempt {attempt_id}")

    def finish(self, attempt: Attempt, applied: AppliedRecord | None, lease: Lease | None) -> None:
        must_be_finished(attempt)
        self._sql.fenced(
            lease,
            lambda steps: self.write_finish(steps, attempt, applied),
            what=f"record the outcome of {attempt.task_id}",
        )

    def record(self, attempt: Attempt, applied: AppliedRecord | None, lease: Lease | None) -> None:
        must_be_finished(attempt)

        def work(steps: Steps) -> None:
            steps.run("insert_attempt", self._params_of(attempt))
            self._upsert_applied(steps, applied)

        self._sql.fenced(
            lease, work, what=f"record the {attempt.status} attempt of {attempt.task_id}"
        )

    def write_finish(self, steps: Steps, attempt: Attempt, applied: AppliedRecord | None) -> None:
        """Close a started history row and upsert the applied record, in ``steps``'s
        transaction."""
        if steps.run("finish_attempt", self._params_of(attempt)) != 1:
            raise self._not_started(attempt.attempt_id)
        self._upsert_applied(steps, applied)

    def _upsert_applied(self, steps: Steps, applied: AppliedRecord | None) -> None:
        if applied is not None:
            steps.run("upsert_applied", self._params_of(applied))

    def _not_started(self, attempt_id: str) -> StoreError:
        return StoreError(
            f"attempt {attempt_id} is not a started attempt in {self._sql.where} "
            "(it is unknown or already finished)"
        )

    # -- checkpoints (backfills) -----------------------------------------------------------------

    def checkpoints(self, task_id: str) -> list[Checkpoint]:
        rows = self._select("checkpoints", {"task_id": task_id}, what="read the checkpoints")
        return [self._checkpoint_from(row) for row in rows]

    def all_checkpoints(self) -> list[Checkpoint]:
        rows = self._select("all_checkpoints", what="read the checkpoints")
        return [self._checkpoint_from(row) for row in rows]

    def save_checkpoint(self, checkpoint: Checkpoint, lease: Lease | None) -> None:
        self._sql.fenced(
            lease,
            lambda steps: self.write_checkpoint(steps, checkpoint),
            what=f"save the checkpoint of {checkpoint.task_id}",
        )

    def save_claimed_checkpoint(
        self, checkpoint: Checkpoint, claim: RangeClaim, lease: Lease | None
    ) -> None:
        self._sql.fenced(
            lease,
            lambda steps: self.write_checkpoint(steps, checkpoint, claim),
            what=f"save the checkpoint of {checkpoint.task_id}",
        )

    def write_checkpoint(
        self, steps: Steps, checkpoint: Checkpoint, claim: RangeClaim | None = None
    ) -> None:
        """Save a range's checkpoint in ``steps``'s transaction; with ``claim``, extending
        the claim, and only while the range carries it."""
        params = self._checkpoint_params(checkpoint)
        if claim is None:
            steps.run("save_checkpoint", params)
            return
        params |= {"token": claim.token, "ttl": self._sql.seconds(claim.ttl)}
        if steps.run("save_claimed_checkpoint", params) != 1:
            raise ClaimLost(
                f"range {claim.part} of {claim.task_id} is no longer claimed by this process "
                "(its claim expired and was taken over), so its checkpoint was not saved"
            )

    def _checkpoint_params(self, checkpoint: Checkpoint) -> dict[str, Any]:
        sql = self._sql
        return {
            "task_id": checkpoint.task_id,
            "part": checkpoint.part,
            "parts": checkpoint.parts,
            "cursor": sql.json(checkpoint.cursor),
            "done": checkpoint.done,
            "batches": checkpoint.batches,
            "attempt_id": checkpoint.attempt_id,
            "updated_at": sql.time(checkpoint.updated_at),
            "finished": sql.flag(checkpoint.finished),
            "total": checkpoint.total,
            "rate": checkpoint.rate,
        }

    def _checkpoint_from(self, row: Row) -> Checkpoint:
        sql = self._sql
        claimed = bool(row.get("claim_token"))  # no such column before range claims
        return Checkpoint(
            task_id=row["task_id"],
            part=row["part"],
            parts=row["parts"],
            cursor=sql.read_json(row["cursor"]),
            done=row["done"],
            batches=row["batches"],
            attempt_id=row["attempt_id"],
            updated_at=sql.read_time(row["updated_at"]),
            finished=bool(row["finished"]),
            total=row["total"],
            rate=row["rate"],
            claim_owner=row["claim_owner"] if claimed else None,
            claim_until=sql.read_time(row["claim_until"]) if claimed else None,
        )

    # -- range claims (parallel backfills shared by several processes) -------------------------

    def claim_range(
        self, task_id: str, attempt_id: str, owner: str, ttl: float, lease: Lease | None = None
    ) -> RangeClaim | None:
        token = secrets.token_hex(16)
        params = {
            "task_id": task_id,
            "attempt_id": attempt_id,
            "owner": owner,
            "token": token,
            "ttl": self._sql.seconds(ttl),
            "takeover": self._sql.flag(lease is not None),
        }
        row = self._sql.fenced(
            lease,
            lambda steps: steps.row("claim_range", params),
            what=f"claim a key range of {task_id}",
        )
        if row is None:
            return None
        return RangeClaim(
            task_id=task_id,
            part=row["part"],
            token=token,
            owner=owner,
            attempt_id=attempt_id,
            until=self._sql.read_time(row["claim_until"]),
            ttl=ttl,
            checkpoint=self._checkpoint_from(row),
        )

    def renew_claim(self, claim: RangeClaim) -> bool:
        params = {**_claim_params(claim), "ttl": self._sql.seconds(claim.ttl)}
        return self._sql.fenced(
            None,
            lambda steps: steps.run("renew_claim", params) == 1,
            what=f"renew the claim on a key range of {claim.task_id}",
            single=True,
        )

    def release_claim(self, claim: RangeClaim) -> None:
        self._sql.fenced(
            None,
            lambda steps: steps.run("release_claim", _claim_params(claim)),
            what=f"release a key range of {claim.task_id}",
            single=True,
        )

    # -- pause and cancel requests -------------------------------------------------------------

    def controls(self) -> dict[str, TaskControl]:
        rows = self._select("controls", what="read the pause and cancel requests")
        return {
            row["task_id"]: TaskControl(
                row["task_id"],
                row["command"],
                self._sql.read_time(row["requested_at"]),
                row["requested_by"],
            )
            for row in rows
        }

    def set_control(self, task_id: str, command: ControlCommand | None, requested_by: str) -> None:
        params = {"task_id": task_id, "command": command, "requested_by": requested_by}
        name = "clear_control" if command is None else "set_control"
        self._sql.fenced(
            None,
            lambda steps: steps.run(name, params),
            what=f"ask {task_id} to {command or 'resume'}",
            single=True,
        )


def _claim_params(claim: RangeClaim) -> Mapping[str, Any]:
    return {"task_id": claim.task_id, "part": claim.part, "token": claim.token}


def must_be_finished(attempt: Attempt) -> None:
    """``record`` and ``finish`` take an attempt with its outcome, never a started one."""
    if not attempt.finished:
        raise UsageError(
            f"attempt {attempt.attempt_id} of {attempt.task_id} is still 'started'; "
            "only a finished attempt can be recorded as its outcome"
        )
