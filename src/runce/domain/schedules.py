"""Cron schedules: what code declares, and what the store keeps of them (see docs/runs.md).

Cron arithmetic lives in :mod:`runce.runs.cron`; the store contract that keeps schedules is
:class:`runce.stores.schedules.ScheduleStore`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ScheduleDefinition:
    """What code declares: a job kind, when (a cron expression in a timezone), with what input."""

    name: str
    kind: str
    expression: str
    timezone: str
    input_json: str  # canonical JSON (sorted keys, no spaces)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule as stored: its definition, the operator's switch, and its position."""

    name: str
    kind: str
    expression: str
    timezone: str
    input_json: str
    enabled: bool
    next_run_at: datetime  # the next tick due
    created_at: datetime
    updated_at: datetime
    last_run_at: datetime | None = None  # the tick of the last run enqueued
    last_run_id: str | None = None

    @property
    def definition(self) -> ScheduleDefinition:
        return ScheduleDefinition(
            self.name, self.kind, self.expression, self.timezone, self.input_json
        )
