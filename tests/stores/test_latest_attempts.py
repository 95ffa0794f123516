"""The latest attempts of each task: the end of each task's history, read without the rest
(what the dashboard's once tasks show)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from runce.domain.tasks import Attempt
from runce.stores.base import Store
from runce.timeutil import utcnow
from tests.stores.records import finished, started


def _record(store: Store, task_id: str, seconds: float, status: str = "failed") -> Attempt:
    moment = utcnow().replace(microsecond=0) - timedelta(hours=1) + timedelta(seconds=seconds)
    attempt = finished(replace(started(task_id), started_at=moment), status)
    store.tracker.record(attempt, None, None)
    return attempt


def _ids(found: dict[str, list[Attempt]]) -> dict[str, list[str]]:
    return {task_id: [a.attempt_id for a in rows] for task_id, rows in found.items()}


def test_a_new_store_has_no_latest_attempts(store: Store) -> None:
    assert store.tracker.latest_attempts(["a", "b"], 20) == {}
    assert store.tracker.history() == []


def test_the_latest_attempts_of_each_task_are_the_end_of_its_history(store: Store) -> None:
    for i in range(7):
        _record(store, "a", i * 10)
        if i % 2 == 0:
            _record(store, "b", i * 10 + 5)
    _record(store, "c", 1, "succeeded")

    found = store.tracker.latest_attempts(["a", "b", "nothing", "a"], 3)

    assert set(found) == {"a", "b"}  # none of "nothing", and "c" was not asked for
    for task_id in ("a", "b"):
        assert _ids(found)[task_id] == [a.attempt_id for a in store.tracker.history(task_id)[-3:]]
        assert [a.task_id for a in found[task_id]] == [task_id] * 3
    assert found["a"][-1].status == "failed"
    assert found["a"][0].started_at < found["a"][1].started_at < found["a"][2].started_at


def test_a_task_with_fewer_attempts_gives_them_all(store: Store) -> None:
    first = _record(store, "a", 0)
    second = _record(store, "a", 1, "succeeded")

    found = store.tracker.latest_attempts(["a"], 20)

    assert _ids(found) == {"a": [first.attempt_id, second.attempt_id]}
    assert found["a"][1].status == "succeeded"
    assert store.tracker.latest_attempts(["a"], 0) == {}
    assert store.tracker.latest_attempts([], 20) == {}


def test_attempts_started_at_one_moment_keep_the_history_order(store: Store) -> None:
    for _ in range(4):
        _record(store, "a", 30)  # one moment for all four
    _record(store, "a", 40)

    for count in (1, 2, 3, 5, 9):
        expected = [a.attempt_id for a in store.tracker.history("a")[-count:]]
        assert _ids(store.tracker.latest_attempts(["a"], count)) == {"a": expected}
