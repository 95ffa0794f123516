"""The scheduler (docs/runs.md#cron-schedules): every worker runs one, and each due tick is
enqueued exactly once.

How many schedulers agree without talking to each other:

* a tick's run is enqueued under the idempotency key ``schedule:<name>:<tick>``, the tick
  being the schedule's stored ``next_run_at``, so every scheduler that sees the tick due
  enqueues *the same* run;
* the schedule then moves on with a compare-and-set on ``next_run_at``: one scheduler wins,
  the others find it moved. A scheduler that dies between the two leaves the tick due, and
  the next one enqueues (finding the run already there) and moves it on.

Missed ticks (no worker ran through several): the stored tick is enqueued once, as the
catch-up run, and the schedule moves to the first tick after now; the ticks in between are
skipped, never run as a storm. Enabling a disabled schedule starts it from the next tick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runce.domain.runs import Run
from runce.domain.schedules import Schedule, ScheduleDefinition
from runce.errors import InvalidInput, UnknownSchedule, UsageError
from runce.runs import cron
from runce.runs.companion import CompanionLoop
from runce.runs.events import EventBus, events
from runce.runs.schedules import ScheduleSpec
from runce.runs.service import RunService, canonical_json
from runce.stores.schedules import ScheduleStore
from runce.timeutil import to_iso

log = logging.getLogger("runce.scheduler")


@dataclass(frozen=True)
class Fired:
    """A tick a scheduler enqueued (or found enqueued) and moved its schedule past."""

    schedule: str
    tick: datetime
    run: Run
    next_run_at: datetime
    advanced: bool  # False: another scheduler moved the schedule on first


def tick_key(name: str, tick: datetime) -> str:
    """The idempotency key of one tick of one schedule: every scheduler derives the same."""
    return f"schedule:{name}:{to_iso(tick)}"


class Scheduler:
    """Synchronises declared schedules to the store, and enqueues their due ticks."""

    def __init__(
        self,
        store: ScheduleStore,
        service: RunService,
        specs: Sequence[ScheduleSpec],
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.service = service
        self.definitions = {spec.name: self._definition(spec) for spec in specs}
        self._clock = clock or service.queue.now
        self._next_due: float | None = None  # time.monotonic() of the earliest tick seen

    # -- synchronising ---------------------------------------------------------------------------

    def sync(self) -> list[Schedule]:
        """Insert new declarations and update changed ones; ``enabled`` is never touched.

        A changed expression or timezone moves the schedule to its next tick from now.
        """
        now = self._clock()
        for definition in self.definitions.values():
            first = cron.next_tick(definition.expression, definition.timezone, now)
            if self.store.insert(definition, first):
                log.info("schedule %s added: %s at %r", definition.name, definition.kind, first)
                continue
            stored = self.store.get(definition.name)
            if stored is not None and stored.definition != definition:
                moved = _timing_changed(stored.definition, definition)
                self.store.update_definition(definition, first if moved else None)
                log.info("schedule %s updated from code", definition.name)
        return [s for s in self.store.all() if s.name in self.definitions]

    # -- ticking ---------------------------------------------------------------------------------

    def tick(self) -> list[Fired]:
        """Enqueue every due tick of the declared, enabled schedules."""
        now = self._clock()
        fired: list[Fired] = []
        upcoming: list[datetime] = []
        for stored in self.store.all():
            if stored.name not in self.definitions or not stored.enabled:
                continue
            if stored.next_run_at <= now:
                done = self._fire(stored, now)
                fired.append(done)
                upcoming.append(done.next_run_at)
            else:
                upcoming.append(stored.next_run_at)
        earliest = min(upcoming, default=None)
        self._next_due = (
            None if earliest is None else time.monotonic() + (earliest - now).total_seconds()
        )
        return fired

    def seconds_until_due(self) -> float | None:
        """How long until the earliest tick the last :meth:`tick` saw; None: no schedule."""
        if self._next_due is None:
            return None
        return max(0.0, self._next_due - time.monotonic())

    def _fire(self, stored: Schedule, now: datetime) -> Fired:
        tick = stored.next_run_at
        run = self.service.enqueue(
            stored.kind,
            _input_of(stored),
            idempotency_key=tick_key(stored.name, tick),
            run_at=tick,
            correlation_id=f"schedule:{stored.name}",
        )
        following = cron.next_tick(stored.expression, stored.timezone, max(tick, now))
        advanced = self.store.advance(stored.name, tick, following, run.id)
        if advanced:
            log.info("schedule %s: run %s for the tick of %s", stored.name, run.id, to_iso(tick))
        return Fired(stored.name, tick, run, following, advanced)

    def _definition(self, spec: ScheduleSpec) -> ScheduleDefinition:
        job = self.service.jobs.get(spec.kind)
        value = spec.input
        if job is not None:
            try:
                value = job.input_for_storage(value)
            except InvalidInput as exc:
                raise UsageError(f"schedule {spec.name!r}: {exc}") from None
        text = canonical_json(value, f"input of schedule {spec.name!r}")
        return ScheduleDefinition(spec.name, spec.kind, spec.expression, spec.timezone, text)


def set_enabled(store: ScheduleStore, name: str, enabled: bool, now: datetime) -> Schedule:
    """Switch a stored schedule on (from its next tick after ``now``) or off."""
    stored = store.get(name)
    if stored is None:
        raise UnknownSchedule(f"no schedule is named {name!r}; `runce schedules list` shows them")
    moved = cron.next_tick(stored.expression, stored.timezone, now) if enabled else None
    if enabled and stored.enabled:
        moved = None  # already on: leave its position alone
    changed = store.set_enabled(name, enabled, moved)
    if changed is None:
        raise UnknownSchedule(f"no schedule is named {name!r}; `runce schedules list` shows them")
    return changed


def _timing_changed(old: ScheduleDefinition, new: ScheduleDefinition) -> bool:
    return (old.expression, old.timezone) != (new.expression, new.timezone)


def _input_of(stored: Schedule) -> Any:
    import json

    return json.loads(stored.input_json)


# Seconds an idle scheduler waits at most before it reads the schedules again, to see those
# enabled or changed elsewhere: one read per RECHECK is an idle worker's whole cost of its
# scheduler (a tick due sooner is waited for exactly).
RECHECK = 10.0


class SchedulerLoop(CompanionLoop):
    """A worker's scheduler: synchronises, then ticks whenever a schedule is due (and at
    least every ``max_wait`` seconds, to see schedules enabled or changed elsewhere).

    With ``drain``, it synchronises and ticks once, before the worker claims: a
    cron-triggered drain enqueues what is due and then runs it.
    """

    name = "runce-scheduler"
    failed = "the scheduler failed"

    def __init__(self, scheduler: Scheduler, *, bus: EventBus = events, max_wait: float = RECHECK):
        super().__init__(log, bus)
        self.scheduler = scheduler
        self.max_wait = max_wait

    def sync(self) -> None:
        self.scheduler.sync()

    def tick(self) -> float:
        self.scheduler.tick()
        return self._wait()

    def backoff(self, failures: int) -> float:
        return min(min(self.max_wait, 1.0) * 2.0**failures, 30.0)

    def _wait(self) -> float:
        due = self.scheduler.seconds_until_due()
        # A hair after the tick, so the store's clock has reached it when we look.
        return self.max_wait if due is None else min(self.max_wait, due + 0.002)
