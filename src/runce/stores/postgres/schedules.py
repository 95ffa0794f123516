"""Cron schedules (docs/runs.md#cron-schedules) in runce's ``schedules`` table: each call
one statement."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from runce.domain.schedules import Schedule, ScheduleDefinition
from runce.stores.postgres.connection import Connection, Database
from runce.stores.postgres.rows import Row, utc
from runce.stores.schedules import definition_columns, schedule_from_columns

# The schema version that brings the schedules table (migrations/0003_schedules.sql).
SCHEDULES_VERSION = 3


class PostgresSchedules:
    def __init__(self, db: Database) -> None:
        self._db = db

    def insert(self, definition: ScheduleDefinition, next_run_at: datetime) -> bool:
        params = {**definition_columns(definition), "next_run_at": next_run_at}
        return self._write("insert_schedule", params, what=f"add schedule {definition.name!r}")

    def update_definition(
        self, definition: ScheduleDefinition, next_run_at: datetime | None
    ) -> Schedule | None:
        params = {**definition_columns(definition), "next_run_at": next_run_at}
        return self._change(
            "update_schedule_definition", params, what=f"update schedule {definition.name!r}"
        )

    def get(self, name: str) -> Schedule | None:
        def work(conn: Connection) -> Schedule | None:
            rows = self._rows(conn, "get_schedule", {"name": name})
            return schedule_from(rows[0]) if rows else None

        return self._db.read(
            work, empty=None, what=f"read schedule {name!r}", needs=SCHEDULES_VERSION
        )

    def all(self) -> list[Schedule]:
        def work(conn: Connection) -> list[Schedule]:
            return [schedule_from(row) for row in self._rows(conn, "list_schedules", None)]

        return self._db.read(work, empty=[], what="list schedules", needs=SCHEDULES_VERSION)

    def advance(self, name: str, tick: datetime, next_run_at: datetime, run_id: str) -> bool:
        params = {"name": name, "tick": tick, "next_run_at": next_run_at, "run_id": run_id}
        return self._write("advance_schedule", params, what=f"advance schedule {name!r}")

    def set_enabled(
        self, name: str, enabled: bool, next_run_at: datetime | None = None
    ) -> Schedule | None:
        params = {"name": name, "enabled": enabled, "next_run_at": next_run_at}
        verb = "enable" if enabled else "disable"
        return self._change("set_schedule_enabled", params, what=f"{verb} schedule {name!r}")

    def _write(self, name: str, params: dict[str, Any], *, what: str) -> bool:
        def work(conn: Connection) -> bool:
            return conn.execute(self._db.sql(name), params).rowcount > 0

        return self._db.write(work, what=what, transaction=False)

    def _change(self, name: str, params: dict[str, Any], *, what: str) -> Schedule | None:
        def work(conn: Connection) -> Schedule | None:
            rows = self._rows(conn, name, params)
            return schedule_from(rows[0]) if rows else None

        return self._db.write(work, what=what, transaction=False)

    def _rows(self, conn: Connection, name: str, params: dict[str, Any] | None) -> list[Row]:
        with conn.cursor(row_factory=dict_row) as cursor:
            return cursor.execute(self._db.sql(name), params).fetchall()


def schedule_from(row: Row) -> Schedule:
    return schedule_from_columns(row, utc)
