"""Cron schedules (docs/runs.md#cron-schedules) in ``runce_schedules``: each call one short
transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from runce.domain.schedules import Schedule, ScheduleDefinition
from runce.stores.schedules import definition_columns, schedule_from_columns
from runce.stores.sqlite import schema
from runce.stores.sqlite.connection import Database
from runce.stores.sqlite.queries import clock, fetch_rows, query
from runce.timeutil import from_iso, to_iso

T = TypeVar("T")

# The schema version that brings the schedules table (migrations/0003_schedules.sql).
SCHEDULES_VERSION = 3


class SQLiteSchedules:
    def __init__(self, db: Database) -> None:
        self._db = db

    def insert(self, definition: ScheduleDefinition, next_run_at: datetime) -> bool:
        params = {**definition_columns(definition), "next_run_at": to_iso(next_run_at)}
        return self._write("insert_schedule", params, what=f"add schedule {definition.name!r}")

    def update_definition(
        self, definition: ScheduleDefinition, next_run_at: datetime | None
    ) -> Schedule | None:
        params = {**definition_columns(definition), "next_run_at": _iso_or_none(next_run_at)}
        return self._change(
            "update_schedule_definition", params, what=f"update schedule {definition.name!r}"
        )

    def get(self, name: str) -> Schedule | None:
        def work(conn: sqlite3.Connection) -> Schedule | None:
            rows = fetch_rows(conn, "get_schedule", {"name": name})
            return schedule_from(rows[0]) if rows else None

        return self._read(work, None, what=f"read schedule {name!r}")

    def all(self) -> list[Schedule]:
        def work(conn: sqlite3.Connection) -> list[Schedule]:
            return [schedule_from(row) for row in fetch_rows(conn, "list_schedules", {})]

        return self._read(work, [], what="list schedules")

    def advance(self, name: str, tick: datetime, next_run_at: datetime, run_id: str) -> bool:
        params = {
            "name": name,
            "tick": to_iso(tick),
            "next_run_at": to_iso(next_run_at),
            "run_id": run_id,
        }
        return self._write("advance_schedule", params, what=f"advance schedule {name!r}")

    def set_enabled(
        self, name: str, enabled: bool, next_run_at: datetime | None = None
    ) -> Schedule | None:
        params = {"name": name, "enabled": int(enabled), "next_run_at": _iso_or_none(next_run_at)}
        verb = "enable" if enabled else "disable"
        return self._change("set_schedule_enabled", params, what=f"{verb} schedule {name!r}")

    def _write(self, name: str, params: dict[str, Any], *, what: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            return conn.execute(query(name), {**params, "now": clock(conn)}).rowcount > 0

        return self._db.write(work, what=what)

    def _change(self, name: str, params: dict[str, Any], *, what: str) -> Schedule | None:
        def work(conn: sqlite3.Connection) -> Schedule | None:
            rows = fetch_rows(conn, name, {**params, "now": clock(conn)})
            return schedule_from(rows[0]) if rows else None

        return self._db.write(work, what=what)

    def _read(self, work: Callable[[sqlite3.Connection], T], empty: T, *, what: str) -> T:
        """A read; ``empty`` while the file has no schedules table yet (reads never migrate)."""

        def guarded(conn: sqlite3.Connection) -> T:
            return empty if schema.user_version(conn) < SCHEDULES_VERSION else work(conn)

        return self._db.read(guarded, empty=empty, what=what)


def schedule_from(row: sqlite3.Row) -> Schedule:
    return schedule_from_columns(dict(row), from_iso)


def _iso_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else to_iso(moment)
