"""The schedule-store contract: every store with a run queue keeps schedules too."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runce.domain.schedules import ScheduleDefinition
from runce.stores.schedules import ScheduleStore
from tests.stores.conftest import BACKENDS, StoreMaker
from tests.stores.test_queue_contract import QUEUE_BACKENDS

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.fixture(params=QUEUE_BACKENDS)
def smaker(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[StoreMaker]:
    from runce.stores import memory

    made = BACKENDS[request.param](request, tmp_path)
    yield made
    made.close_all()
    memory.reset()


@pytest.fixture
def schedules(smaker: StoreMaker) -> ScheduleStore:
    return _schedules(smaker.open())


def _schedules(store: Any) -> ScheduleStore:
    found: ScheduleStore = store.schedules
    assert isinstance(found, ScheduleStore)
    return found


def define(name: str = "nightly", **changes: str) -> ScheduleDefinition:
    fields = {
        "kind": "report.build",
        "expression": "0 3 * * *",
        "timezone": "Europe/Berlin",
        "input_json": '{"$secret":"TOKEN","days":1}',
        **changes,
    }
    return ScheduleDefinition(name=name, **fields)


def test_an_empty_store_reads_as_no_schedules(schedules: ScheduleStore) -> None:
    assert schedules.all() == []
    assert schedules.get("nightly") is None


def test_insert_keeps_the_definition_enabled_and_due_at_the_given_tick(
    schedules: ScheduleStore,
) -> None:
    assert schedules.insert(define(), T0)
    found = schedules.get("nightly")
    assert found is not None
    assert found.definition == define()
    assert (found.enabled, found.next_run_at, found.last_run_at, found.last_run_id) == (
        True,
        T0,
        None,
        None,
    )
    assert found.created_at.utcoffset() == timedelta(0)
    assert schedules.all() == [found]


def test_insert_never_overwrites(schedules: ScheduleStore) -> None:
    assert schedules.insert(define(), T0)
    assert not schedules.insert(define(expression="* * * * *"), T0 + MINUTE)
    found = schedules.get("nightly")
    assert found is not None
    assert (found.expression, found.next_run_at) == ("0 3 * * *", T0)


def test_of_concurrent_inserts_exactly_one_wins(smaker: StoreMaker) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def insert() -> None:
        store = _schedules(smaker.open())
        barrier.wait()
        results.append(store.insert(define(), T0))

    threads = [threading.Thread(target=insert) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]


def test_update_definition_changes_everything_but_enabled(schedules: ScheduleStore) -> None:
    schedules.insert(define(), T0)
    schedules.set_enabled("nightly", False)
    changed = define(kind="report.other", expression="*/5 * * * *", timezone="UTC")
    after = schedules.update_definition(changed, T0 + MINUTE)
    assert after is not None
    assert after.definition == changed
    assert (after.enabled, after.next_run_at) == (False, T0 + MINUTE)
    kept = schedules.update_definition(define(input_json="{}"), None)
    assert kept is not None
    assert (kept.input_json, kept.next_run_at) == ("{}", T0 + MINUTE)
    assert schedules.update_definition(define("unknown"), None) is None


def test_advance_moves_on_only_from_the_tick_it_names(schedules: ScheduleStore) -> None:
    schedules.insert(define(), T0)
    assert schedules.advance("nightly", T0, T0 + MINUTE, "run-1")
    assert not schedules.advance("nightly", T0, T0 + 2 * MINUTE, "run-2")
    found = schedules.get("nightly")
    assert found is not None
    assert (found.next_run_at, found.last_run_at, found.last_run_id) == (
        T0 + MINUTE,
        T0,
        "run-1",
    )
    assert not schedules.advance("unknown", T0, T0 + MINUTE, "run-3")


def test_of_concurrent_advances_of_one_tick_exactly_one_wins(smaker: StoreMaker) -> None:
    _schedules(smaker.open()).insert(define(), T0)
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def advance(n: int) -> None:
        store = _schedules(smaker.open())
        barrier.wait()
        results.append(store.advance("nightly", T0, T0 + MINUTE, f"run-{n}"))

    threads = [threading.Thread(target=advance, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]


def test_set_enabled_switches_and_may_move_the_next_tick(schedules: ScheduleStore) -> None:
    schedules.insert(define(), T0)
    off = schedules.set_enabled("nightly", False)
    assert off is not None
    assert (off.enabled, off.next_run_at) == (False, T0)
    on = schedules.set_enabled("nightly", True, T0 + 5 * MINUTE)
    assert on is not None
    assert (on.enabled, on.next_run_at) == (True, T0 + 5 * MINUTE)
    assert on.updated_at >= off.updated_at
    assert schedules.set_enabled("unknown", True) is None


def test_schedules_are_listed_by_name(schedules: ScheduleStore) -> None:
    for name in ("b", "c", "a"):
        schedules.insert(define(name), T0)
    assert [s.name for s in schedules.all()] == ["a", "b", "c"]
