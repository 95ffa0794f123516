"""Records to query parameters and back. Columns carry the records' field names, so the
conversion is by name; times are ``timestamptz`` both ways, read back as UTC whatever the
session's time zone."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from runce.stores.base import AppliedRecord, Attempt, HolderState, LockHolder
from runce.stores.liveness import Owner, process_alive

Row = dict[str, Any]

_ATTEMPT_FIELDS = tuple(f.name for f in fields(Attempt))
_APPLIED_FIELDS = tuple(f.name for f in fields(AppliedRecord))


def params_of(record: Attempt | AppliedRecord) -> dict[str, Any]:
    names = _ATTEMPT_FIELDS if isinstance(record, Attempt) else _APPLIED_FIELDS
    return {name: getattr(record, name) for name in names}


def attempt_from(row: Row) -> Attempt:
    return Attempt(**{name: utc(row[name]) for name in _ATTEMPT_FIELDS})


def applied_from(row: Row) -> AppliedRecord:
    return AppliedRecord(**{name: utc(row[name]) for name in _APPLIED_FIELDS})


def owner_params(token: str, owner: Owner) -> dict[str, Any]:
    return {
        "token": token,
        "owner": owner.label,
        "host": owner.host,
        "pid": owner.pid,
        "machine": owner.machine,
    }


def holder_from(lock: Row, info: Row | None) -> LockHolder:
    """The session holding the advisory lock, described by its info row when it is its own.

    An info row written by an earlier holder (or none yet, in the instant between taking
    the lock and writing the row) leaves only what the server knows: the session's
    application name and start.
    """
    if info is None or not _same_session(lock, info):
        return LockHolder(
            owner=lock["application_name"] or f"PostgreSQL backend {lock['backend_pid']}",
            host=None,
            pid=None,
            since=utc(lock["backend_start"]),
            state="live",
        )
    state: HolderState = "dead" if process_alive(info["machine"], info["pid"]) is False else "live"
    return LockHolder(
        owner=info["owner"],
        host=info["host"],
        pid=info["pid"],
        since=utc(info["since"]),
        state=state,
        token=info["token"],
        machine=info["machine"],
    )


def utc(value: Any) -> Any:
    """Aware datetimes in UTC; anything else unchanged."""
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def _same_session(lock: Row, info: Row) -> bool:
    if info["backend_pid"] != lock["backend_pid"]:
        return False
    # backend_start is hidden from roles that may not see other sessions: then the pid decides.
    started = (info["backend_start"], lock["backend_start"])
    return None in started or started[0] == started[1]
