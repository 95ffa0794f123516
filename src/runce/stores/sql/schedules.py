"""Cron schedules (docs/runs.md#cron-schedules) in a SQL store's schedules table: each call
one statement of the backend's ``schedules.sql``, run through its :class:`Dialect`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from runce.domain.schedules import Schedule, ScheduleDefinition
from runce.stores.sql.dialect import Dialect, Row

# The schema version that brings the schedules table (migrations/0003_schedules.sql).
SCHEDULES_VERSION = 3


class SqlSchedules:
    """The :class:`~runce.stores.schedules.ScheduleStore` of the SQLite and PostgreSQL stores."""

    def __init__(self, dialect: Dialect) -> None:
        self._sql = dialect

    def insert(self, definition: ScheduleDefinition, next_run_at: datetime) -> bool:
        params = {**_columns(definition), "next_run_at": self._sql.time(next_run_at)}
        what = f"add schedule {definition.name!r}"
        return self._sql.write("insert_schedule", params, what=what) > 0

    def update_definition(
        self, definition: ScheduleDefinition, next_run_at: datetime | None
    ) -> Schedule | None:
        params = {**_columns(definition), "next_run_at": self._time(next_run_at)}
        what = f"update schedule {definition.name!r}"
        return self._change("update_schedule_definition", params, what=what)

    def get(self, name: str) -> Schedule | None:
        what = f"read schedule {name!r}"
        rows = self._sql.read("get_schedule", {"name": name}, needs=SCHEDULES_VERSION, what=what)
        return self._schedule(rows[0]) if rows else None

    def all(self) -> list[Schedule]:
        rows = self._sql.read("list_schedules", {}, needs=SCHEDULES_VERSION, what="list schedules")
        return [self._schedule(row) for row in rows]

    def advance(self, name: str, tick: datetime, next_run_at: datetime, run_id: str) -> bool:
        params = {
            "name": name,
            "tick": self._sql.time(tick),
            "next_run_at": self._sql.time(next_run_at),
            "run_id": run_id,
        }
        return self._sql.write("advance_schedule", params, what=f"advance schedule {name!r}") > 0

    def set_enabled(
        self, name: str, enabled: bool, next_run_at: datetime | None = None
    ) -> Schedule | None:
        params = {
            "name": name,
            "enabled": self._sql.flag(enabled),
            "next_run_at": self._time(next_run_at),
        }
        verb = "enable" if enabled else "disable"
        return self._change("set_schedule_enabled", params, what=f"{verb} schedule {name!r}")

    def _change(self, name: str, params: dict[str, Any], *, what: str) -> Schedule | None:
        rows = self._sql.write_rows(name, params, what=what)
        return self._schedule(rows[0]) if rows else None

    def _time(self, moment: datetime | None) -> Any:
        return None if moment is None else self._sql.time(moment)

    def _schedule(self, row: Row) -> Schedule:
        last_run_at = row["last_run_at"]
        return Schedule(
            name=row["name"],
            kind=row["kind"],
            expression=row["expression"],
            timezone=row["timezone"],
            input_json=row["input"],
            enabled=bool(row["enabled"]),
            next_run_at=self._sql.read_time(row["next_run_at"]),
            created_at=self._sql.read_time(row["created_at"]),
            updated_at=self._sql.read_time(row["updated_at"]),
            last_run_at=None if last_run_at is None else self._sql.read_time(last_run_at),
            last_run_id=row["last_run_id"],
        )


def _columns(definition: ScheduleDefinition) -> dict[str, str]:
    """A definition as the schedules table's columns (the input's column is ``input``)."""
    return {
        "name": definition.name,
        "kind": definition.kind,
        "expression": definition.expression,
        "timezone": definition.timezone,
        "input": definition.input_json,
    }
