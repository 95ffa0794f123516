"""The schedule-store contract: cron schedules as the store keeps them
(docs/runs.md#cron-schedules).

A schedule is declared in code and *synchronised* to the store when a worker starts; the
store keeps what code cannot: whether an operator disabled it, and where it stands (the
next tick due, the last tick enqueued and its run). Cron arithmetic lives in
:mod:`runce.runs.cron`; a store only keeps times it is given.

Rules every backend keeps (``tests/stores/test_schedule_contract.py``):

* ``insert`` never overwrites: of many workers starting at once, one inserts, the others
  are told the name exists.
* ``update_definition`` never changes ``enabled`` (an operator's choice outlives deploys).
* ``advance`` is a compare-and-set on ``next_run_at``: of many schedulers that saw the same
  tick due, one moves the schedule on. (Each tick's run is enqueued under an idempotency key
  derived from the schedule and the tick, so the losers' enqueues return the same run.)
* ``input_json`` is kept as the text given (canonical JSON) and handed back unchanged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from runce.domain.schedules import Schedule, ScheduleDefinition


@runtime_checkable
class ScheduleStore(Protocol):
    """Stored schedules: synchronised from code, switched by operators, advanced by workers."""

    def insert(self, definition: ScheduleDefinition, next_run_at: datetime) -> bool:
        """Add an enabled schedule; False (and nothing changed) when the name exists."""

    def update_definition(
        self, definition: ScheduleDefinition, next_run_at: datetime | None
    ) -> Schedule | None:
        """Set kind, expression, timezone and input (and ``next_run_at`` when given), never
        ``enabled``. Returns the schedule after the call; None when the name is unknown."""

    def get(self, name: str) -> Schedule | None: ...

    def all(self) -> list[Schedule]:
        """Every stored schedule, by name."""

    def advance(self, name: str, tick: datetime, next_run_at: datetime, run_id: str) -> bool:
        """Where the schedule's ``next_run_at`` is still ``tick``: move it to ``next_run_at``
        and record ``tick`` and ``run_id`` as the last run. False when another scheduler did
        first (or the schedule changed), writing nothing."""

    def set_enabled(
        self, name: str, enabled: bool, next_run_at: datetime | None = None
    ) -> Schedule | None:
        """Switch a schedule on or off (and set ``next_run_at`` when given); None when unknown."""


__all__ = [
    "ScheduleStore",
]
