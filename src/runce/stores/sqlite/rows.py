"""Records to query parameters and back. Columns carry the records' field names, so the
conversion is by name; only times change form (aware datetimes <-> ISO-8601 UTC text).
The run queue's records are in :mod:`runce.stores.sqlite.runrows`: once tasks never load
them."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime
from typing import Any

from runce.domain.locks import HolderState, LockHolder, Owner
from runce.domain.tasks import AppliedRecord, Attempt
from runce.stores.liveness import process_alive
from runce.timeutil import stored_time, to_iso

_ATTEMPT_FIELDS = tuple(f.name for f in fields(Attempt))
_APPLIED_FIELDS = tuple(f.name for f in fields(AppliedRecord))
_TIME_FIELDS = frozenset({"started_at", "finished_at", "applied_at"})


def params_of(record: Attempt | AppliedRecord) -> dict[str, Any]:
    names = _ATTEMPT_FIELDS if isinstance(record, Attempt) else _APPLIED_FIELDS
    return {name: _to_column(getattr(record, name)) for name in names}


def attempt_from(row: Mapping[str, Any]) -> Attempt:
    return Attempt(**{name: _from_column(name, row[name]) for name in _ATTEMPT_FIELDS})


def applied_from(row: Mapping[str, Any]) -> AppliedRecord:
    return AppliedRecord(**{name: _from_column(name, row[name]) for name in _APPLIED_FIELDS})


def holder_from(row: sqlite3.Row) -> LockHolder:
    """The lease row as a holder; whether it is dead, expired or live is decided here."""
    state: HolderState
    if process_alive(row["machine"], row["pid"]) is False:
        state = "dead"
    elif row["expired"]:
        state = "expired"
    else:
        state = "live"
    return LockHolder(
        owner=row["owner"],
        host=row["host"],
        pid=row["pid"],
        since=_time_or_none(row["acquired_at"]),
        state=state,
        token=row["token"],
        machine=row["machine"],
        lease_until=_time_or_none(row["lease_until"]),
    )


def lease_params(token: str, lease_ttl: float) -> dict[str, Any]:
    return {"token": token, "ttl": ttl_modifier(lease_ttl)}


def take_params(token: str, owner: Owner, lease_ttl: float) -> dict[str, Any]:
    return {
        **lease_params(token, lease_ttl),
        "owner": owner.label,
        "host": owner.host,
        "pid": owner.pid,
        "machine": owner.machine,
    }


def ttl_modifier(seconds: float) -> str:
    """A lease length as an SQLite date modifier, so SQLite's own clock adds it."""
    return f"+{max(seconds, 0.0):.3f} seconds"  # "+-1" would make SQLite return NULL


def _to_column(value: object) -> object:
    return to_iso(value) if isinstance(value, datetime) else value


def _from_column(name: str, value: Any) -> Any:
    return stored_time(value) if name in _TIME_FIELDS and value is not None else value


def _time_or_none(text: str | None) -> datetime | None:
    return stored_time(text) if text is not None else None
