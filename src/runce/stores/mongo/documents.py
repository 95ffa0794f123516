"""Records to MongoDB documents and back.

``runce.applied`` uses the seed's field names (``id, name, checksum, appliedAt, durationMs,
status, error``) plus runce's ``attemptId``, so documents the seed's TypeScript tool wrote
read as they are: a field it never wrote gets a neutral default. ``runce.history`` and the
lock document use the same camelCase style. Times are BSON dates (UTC, to the millisecond);
they come back timezone-aware.
"""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from runce.domain.locks import HolderState, LockHolder, Owner
from runce.domain.tasks import (
    APPLIED_STATUSES,
    AppliedRecord,
    AppliedStatus,
    Attempt,
    Checkpoint,
    TaskControl,
)
from runce.stores.liveness import process_alive
from runce.timeutil import UNREADABLE_TIME

Document = dict[str, Any]

LOCK_ID = "global"
_APPLIED_STATUSES = APPLIED_STATUSES | {"failed"}
# The fields a finished attempt changes on its started document.
_FINISH_FIELDS = (
    "status",
    "finished_at",
    "duration_ms",
    "error_type",
    "error_message",
    "traceback",
    "progress_done",
    "progress_total",
    "note",
)
# What a history document lacking a field reads as (runce writes them all, but be lenient).
_ATTEMPT_DEFAULTS: dict[str, Any] = {
    "title": "",
    "checksum": "",
    "status": "started",
    "applied_by": "unknown",
    "owner": "unknown",
    "host": "unknown",
    "pid": 0,
    "machine": "unknown",
    "runce_version": "unknown",
}


def camel(name: str) -> str:
    """``started_at`` -> ``startedAt``: the seed's naming style."""
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


_ATTEMPT_KEYS = {f.name: camel(f.name) for f in fields(Attempt)}


# --- history ---------------------------------------------------------------------------------


def attempt_document(attempt: Attempt) -> Document:
    """The whole attempt; fields that are None are left out."""
    values = {key: getattr(attempt, name) for name, key in _ATTEMPT_KEYS.items()}
    return {key: value for key, value in values.items() if value is not None}


def finish_changes(attempt: Attempt) -> Document:
    """``$set`` for finishing a started document; a None keeps what it holds (progress)."""
    values = {camel(name): getattr(attempt, name) for name in _FINISH_FIELDS}
    return {key: value for key, value in values.items() if value is not None}


def attempt_from(doc: Document) -> Attempt:
    values: dict[str, Any] = {}
    for name, key in _ATTEMPT_KEYS.items():
        value = doc.get(key, _ATTEMPT_DEFAULTS.get(name))
        values[name] = aware(value) if isinstance(value, datetime) else value
    values["started_at"] = values["started_at"] or UNREADABLE_TIME
    return Attempt(**values)


# --- applied ---------------------------------------------------------------------------------


def applied_document(record: AppliedRecord) -> Document:
    """``$set`` for the applied document of ``record.id`` (the seed's names, plus attemptId)."""
    return {
        "id": record.id,
        "name": record.name,
        "checksum": record.checksum,
        "appliedAt": record.applied_at,
        "durationMs": record.duration_ms,
        "status": record.status,
        "attemptId": record.attempt_id,
        "error": record.error,
    }


def applied_from(doc: Document) -> AppliedRecord:
    """A document as runce or the seed's tool wrote it."""
    task_id = str(doc["id"])
    applied_at = doc.get("appliedAt")
    error = doc.get("error")
    return AppliedRecord(
        id=task_id,
        name=str(doc.get("name") or task_id),
        checksum=str(doc.get("checksum") or ""),
        applied_at=aware(applied_at) if isinstance(applied_at, datetime) else UNREADABLE_TIME,
        duration_ms=_whole_number(doc.get("durationMs")),
        status=_applied_status(doc.get("status")),
        attempt_id=str(doc.get("attemptId") or ""),
        error=None if error is None else str(error),
    )


def _applied_status(value: object) -> AppliedStatus:
    # An unknown status is not counted as applied: running a task again beats skipping it.
    return cast(AppliedStatus, value) if value in _APPLIED_STATUSES else "failed"


def _whole_number(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


# --- the lock --------------------------------------------------------------------------------


def checkpoint_key(checkpoint: Checkpoint) -> str:
    return f"{checkpoint.task_id}#{checkpoint.part}"


_CLAIM_FIELDS = frozenset({"claim_owner", "claim_until"})


def checkpoint_document(checkpoint: Checkpoint) -> Document:
    """The cursor is kept as JSON text: any JSON value, whatever BSON thinks of its keys.

    The claim on the range (``claimToken``, ``claimOwner``, ``claimUntil``) is not part of
    it: only claiming, renewing and releasing write those fields.
    """
    doc = {
        camel(f.name): getattr(checkpoint, f.name)
        for f in fields(Checkpoint)
        if f.name not in _CLAIM_FIELDS
    }
    doc["cursor"] = json.dumps(checkpoint.cursor)
    return doc


def checkpoint_from(doc: Document) -> Checkpoint:
    values: dict[str, Any] = {
        f.name: doc.get(camel(f.name)) for f in fields(Checkpoint) if f.name not in _CLAIM_FIELDS
    }
    values["cursor"] = json.loads(doc["cursor"])
    values["updated_at"] = aware(doc["updatedAt"])
    if doc.get("claimToken") is not None:
        values["claim_owner"] = doc.get("claimOwner")
        values["claim_until"] = aware(doc["claimUntil"])
    return Checkpoint(**values)


def control_from(doc: Document) -> TaskControl:
    return TaskControl(
        task_id=doc["_id"],
        command=doc["command"],
        requested_at=aware(doc["requestedAt"]),
        requested_by=doc["requestedBy"],
    )


def lease_document(token: str, owner: Owner, now: datetime, ttl: float) -> Document:
    """``$set`` for a new lease (the seed's ``leaseUntil`` and ``owner``, plus runce's own)."""
    return {
        "leaseUntil": now + timedelta(seconds=ttl),
        "owner": owner.label,
        "host": owner.host,
        "pid": owner.pid,
        "machine": owner.machine,
        "token": token,
        "since": now,
    }


def holder_from(doc: Document, server_now: datetime) -> LockHolder:
    """Dead (its process on this machine is gone) before expired before live."""
    lease_until = _time_or_none(doc.get("leaseUntil"))
    pid = doc.get("pid")
    machine = doc.get("machine")
    pid = pid if isinstance(pid, int) else None
    machine = machine if isinstance(machine, str) else None
    state: HolderState
    if process_alive(machine, pid) is False:
        state = "dead"
    elif lease_until is None or lease_until < server_now:
        state = "expired"
    else:
        state = "live"
    host = doc.get("host")
    token = doc.get("token")
    return LockHolder(
        owner=str(doc.get("owner") or host or "unknown"),
        host=host if isinstance(host, str) else None,
        pid=pid,
        since=_time_or_none(doc.get("since")),
        state=state,
        token=token if isinstance(token, str) else None,
        machine=machine,
        lease_until=lease_until,
    )


def aware(moment: datetime) -> datetime:
    """An aware UTC datetime (a naive one is taken to be UTC, as BSON dates are)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _time_or_none(value: object) -> datetime | None:
    return aware(value) if isinstance(value, datetime) else None
