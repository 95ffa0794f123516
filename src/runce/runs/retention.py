"""Retention that runs itself: workers prune finished runs on a schedule, one per tick.

The ticks are the scheduler's (:mod:`runce.runs.scheduler`): the retention schedule is a
row in the schedule store under a name no declared schedule can take
(:data:`RETENTION_SCHEDULE`, it starts with an underscore), and of the workers that see a
tick due, the one whose compare-and-set moves ``next_run_at`` on prunes; the others find it
moved. No run is enqueued for it: the prune happens in the winning worker, beside its
claims, in batches of ``runs.retention.batch`` runs, each its own short transaction, so
the other workers (and this one) keep claiming meanwhile. A worker that dies mid-prune
leaves the rest to the next tick; pruning twice is harmless.

``runs.retention.auto = false`` turns it off; ``runs.retention.schedule`` says when (a
cron expression in UTC, ``@hourly`` by default).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from runce.domain.schedules import ScheduleDefinition
from runce.errors import RunceError, UsageError
from runce.runs import cron
from runce.runs.companion import CompanionLoop
from runce.runs.events import EventBus, events
from runce.runs.service import PRUNE_BATCH, RunService
from runce.stores.schedules import ScheduleStore
from runce.timeutil import to_iso

log = logging.getLogger("runce.retention")

# The schedule store's row for retention. A declared schedule's name starts with a letter
# or digit, so this one is never a user's; listings leave it out.
RETENTION_SCHEDULE = "_runce.retention"
RETENTION_KIND = "runce.retention"  # the row's kind: no run of it is ever enqueued
# How long a worker waits at most before it reads the retention row again (to see the
# schedule switched or moved by another worker's configuration).
RECHECK = 60.0


def is_internal(name: str) -> bool:
    """Whether a stored schedule is runce's own (retention), not one code declared."""
    return name.startswith("_")


def check_expression(expression: str, source: str) -> None:
    """Refuse a ``runs.retention.schedule`` that cannot schedule anything, saying why."""
    try:
        cron.check(expression, "UTC")
    except UsageError as exc:
        raise UsageError(f"{source}: runs.retention.schedule: {exc}") from None


@dataclass(frozen=True)
class Pruned:
    """A tick this worker won, and what its prune deleted."""

    tick: datetime
    runs: int


class Retention:
    """One worker's share of retention: keeps the retention row, and prunes on the ticks it
    wins (at most one worker per tick)."""

    def __init__(
        self,
        store: ScheduleStore,
        service: RunService,
        *,
        succeeded_after: float,
        failed_after: float,
        expression: str = "@hourly",
        batch: int = PRUNE_BATCH,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.service = service
        self.succeeded_after = succeeded_after
        self.failed_after = failed_after
        self.definition = ScheduleDefinition(
            RETENTION_SCHEDULE, RETENTION_KIND, expression, "UTC", "null"
        )
        self.batch = batch
        self._clock = clock or service.queue.now
        self.won: list[Pruned] = []  # the ticks this worker pruned on, oldest first

    def sync(self) -> None:
        """Store the retention row, or move it to the next tick when its timing changed."""
        now = self._clock()
        first = cron.next_tick(self.definition.expression, "UTC", now)
        if self.store.insert(self.definition, first):
            return
        stored = self.store.get(RETENTION_SCHEDULE)
        if stored is not None and stored.definition != self.definition:
            self.store.update_definition(self.definition, first)

    def tick(self, stop: Callable[[], bool] | None = None) -> float:
        """Prune if a tick is due and this worker wins it; the seconds until the next look."""
        stored = self.store.get(RETENTION_SCHEDULE)
        if stored is None:  # deleted by hand: put it back
            self.sync()
            return 0.0
        now = self._clock()
        if not stored.enabled:
            return RECHECK
        if stored.next_run_at > now:
            return min(RECHECK, (stored.next_run_at - now).total_seconds() + 0.002)
        tick = stored.next_run_at
        following = cron.next_tick(stored.expression, stored.timezone, max(tick, now))
        if not self.store.advance(RETENTION_SCHEDULE, tick, following, f"prune:{to_iso(tick)}"):
            return 0.0  # another worker has this tick
        started = time.monotonic()
        runs = self.service.prune(
            self.succeeded_after, self.failed_after, batch=self.batch, stop=stop
        )
        self.won.append(Pruned(tick, runs))
        log.log(
            logging.INFO if runs else logging.DEBUG,
            "runs.pruned: %d finished run%s past runs.retention, in %.1fs (the tick of %s)",
            runs,
            "" if runs == 1 else "s",
            time.monotonic() - started,
            to_iso(tick),
        )
        return 0.0


class RetentionLoop(CompanionLoop):
    """Beside a worker (a companion): keeps looking at the retention row, pruning on the
    ticks it wins. With ``drain``, one look before the worker claims."""

    name = "runce-retention"
    failed = "pruning finished runs failed"

    def __init__(self, retention: Retention, *, bus: EventBus = events) -> None:
        super().__init__(log, bus)
        self.retention = retention

    def sync(self) -> None:
        self.retention.sync()

    def tick(self) -> float:
        return self.retention.tick(stop=self.stopping)

    def backoff(self, failures: int) -> float:
        return min(2.0**failures, RECHECK)

    def drain(self) -> None:
        try:
            super().drain()
        except RunceError as exc:
            self.report(exc)
