"""The scheduler on every store with schedules, driven by a test clock: each tick enqueued
exactly once however many schedulers run, one catch-up run after a gap, and synchronising
that never overrides an operator's switch."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from runce.domain.runs import RunFilter
from runce.errors import UnknownSchedule, UsageError
from runce.runs.jobs import Job, JobRegistry
from runce.runs.scheduler import Scheduler, set_enabled, tick_key
from runce.runs.schedules import ScheduleSpec
from runce.runs.service import RunService
from runce.stores.queue import RunQueue
from runce.stores.schedules import ScheduleStore
from tests.stores.conftest import BACKENDS, StoreMaker
from tests.stores.test_queue_contract import QUEUE_BACKENDS

T0 = datetime(2026, 11, 23, 9, 0, 30, tzinfo=UTC)
EVERY_MINUTE = ScheduleSpec("minutely", "report.build", "* * * * *", "UTC", {"days": 1})


class Report(BaseModel):
    days: int


def build_report(params: Report) -> None:
    del params


class Clock:
    """A clock the test moves; shared by every scheduler of a test."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self._mutex = threading.Lock()

    def __call__(self) -> datetime:
        with self._mutex:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._mutex:
            self.now += timedelta(seconds=seconds)


@pytest.fixture(params=QUEUE_BACKENDS)
def maker(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[StoreMaker]:
    from runce.stores import memory

    made = BACKENDS[request.param](request, tmp_path)
    yield made
    made.close_all()
    memory.reset()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


def scheduler_on(
    maker: StoreMaker, clock: Clock, *specs: ScheduleSpec, jobs: JobRegistry | None = None
) -> Scheduler:
    """A scheduler with a store object of its own, as each worker process has."""
    store: Any = maker.open()
    service = RunService(store.runs, jobs=jobs or JobRegistry())
    return Scheduler(store.schedules, service, specs or [EVERY_MINUTE], clock=clock)


def scheduled_runs(maker: StoreMaker) -> list[Any]:
    queue: RunQueue = maker.open().runs  # type: ignore[attr-defined]
    return queue.page(RunFilter(kind="report.build"), None, 1000)


def test_three_schedulers_enqueue_each_tick_of_two_minutes_exactly_once(
    maker: StoreMaker, clock: Clock
) -> None:
    schedulers = [scheduler_on(maker, clock) for _ in range(3)]
    for scheduler in schedulers:
        scheduler.sync()
    rng = random.Random(7)
    for _ in range(2 * 60 // 5):  # two minutes in steps of five seconds
        clock.advance(5)
        barrier = threading.Barrier(len(schedulers))

        pauses = [rng.random() / 200 for _ in schedulers]
        threads = [
            threading.Thread(target=_tick_after, args=(s, barrier, pause))
            for s, pause in zip(schedulers, pauses, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    runs = scheduled_runs(maker)
    ticks = sorted(run.run_at for run in runs)
    assert ticks == [
        datetime(2026, 11, 23, 9, 1, tzinfo=UTC),
        datetime(2026, 11, 23, 9, 2, tzinfo=UTC),
    ]
    assert Counter(run.idempotency_key for run in runs) == {
        tick_key("minutely", tick): 1 for tick in ticks
    }
    assert {run.input["days"] for run in runs} == {1}
    [stored] = schedulers[0].store.all()
    assert stored.next_run_at == datetime(2026, 11, 23, 9, 3, tzinfo=UTC)
    assert stored.last_run_at == ticks[-1]
    assert stored.last_run_id in {run.id for run in runs}


def _tick_after(scheduler: Scheduler, barrier: threading.Barrier, pause: float) -> None:
    barrier.wait()
    threading.Event().wait(pause)
    scheduler.tick()


def test_missed_ticks_make_one_catch_up_run(maker: StoreMaker, clock: Clock) -> None:
    scheduler = scheduler_on(maker, clock)
    scheduler.sync()
    clock.advance(3600)  # an hour with no worker: sixty ticks missed
    fired = scheduler.tick()
    assert [f.tick for f in fired] == [datetime(2026, 11, 23, 9, 1, tzinfo=UTC)]
    assert fired[0].next_run_at == datetime(2026, 11, 23, 10, 1, tzinfo=UTC)
    assert scheduler.tick() == []
    assert len(scheduled_runs(maker)) == 1


def test_a_scheduler_that_died_after_enqueueing_is_finished_by_the_next(
    maker: StoreMaker, clock: Clock
) -> None:
    first = scheduler_on(maker, clock)
    first.sync()
    clock.advance(60)
    tick = datetime(2026, 11, 23, 9, 1, tzinfo=UTC)
    orphan = first.service.enqueue(
        "report.build", {"days": 1}, idempotency_key=tick_key("minutely", tick), run_at=tick
    )  # ... and died before moving the schedule on
    [fired] = scheduler_on(maker, clock).tick()
    assert (fired.run.id, fired.advanced) == (orphan.id, True)
    assert [run.id for run in scheduled_runs(maker)] == [orphan.id]


def test_sync_updates_definitions_but_never_the_operators_switch(
    maker: StoreMaker, clock: Clock
) -> None:
    scheduler_on(maker, clock).sync()
    store: ScheduleStore = maker.open().schedules  # type: ignore[attr-defined]
    set_enabled(store, "minutely", False, clock())
    new_input = ScheduleSpec("minutely", "report.build", "* * * * *", "UTC", {"days": 2})
    [after] = scheduler_on(maker, clock, new_input).sync()
    assert (after.enabled, after.input_json, after.next_run_at) == (
        False,
        '{"days":2}',
        datetime(2026, 11, 23, 9, 1, tzinfo=UTC),
    )
    clock.advance(600)
    hourly = ScheduleSpec("minutely", "report.build", "0 * * * *", "Europe/Berlin", {"days": 2})
    [moved] = scheduler_on(maker, clock, hourly).sync()
    assert (moved.enabled, moved.expression, moved.next_run_at) == (
        False,
        "0 * * * *",
        datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
    )


def test_a_disabled_schedule_is_skipped_and_enabling_starts_from_the_next_tick(
    maker: StoreMaker, clock: Clock
) -> None:
    scheduler = scheduler_on(maker, clock)
    scheduler.sync()
    set_enabled(scheduler.store, "minutely", False, clock())
    clock.advance(600)
    assert scheduler.tick() == []
    on = set_enabled(scheduler.store, "minutely", True, clock())
    assert on.next_run_at == datetime(2026, 11, 23, 9, 11, tzinfo=UTC)
    assert scheduler.tick() == []  # no catch-up for the ticks it was off
    clock.advance(60)
    assert len(scheduler.tick()) == 1
    with pytest.raises(UnknownSchedule, match="no schedule is named 'nope'"):
        set_enabled(scheduler.store, "nope", True, clock())


def test_schedules_not_declared_here_are_left_alone(maker: StoreMaker, clock: Clock) -> None:
    scheduler_on(maker, clock).sync()
    other = ScheduleSpec("other", "report.build", "* * * * *")
    elsewhere = scheduler_on(maker, clock, other)
    elsewhere.sync()
    clock.advance(60)
    assert [f.schedule for f in elsewhere.tick()] == ["other"]


def test_a_schedules_input_is_checked_against_its_typed_job(
    maker: StoreMaker, clock: Clock
) -> None:
    jobs = JobRegistry()
    jobs.register(Job("report.build", build_report))
    bad = ScheduleSpec("bad", "report.build", "* * * * *", "UTC", {"days": "many"})
    with pytest.raises(UsageError, match=r"schedule 'bad': the input of 'report.build'.*days"):
        scheduler_on(maker, clock, bad, jobs=jobs)
