"""Debounce: what is refused at declaration (one sentence), and how the run service merges
an enqueue into its key's queued run (on a real SQLite store)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from runce.errors import UsageError
from runce.runs.events import EventBus
from runce.runs.jobs import Job, JobRegistry, job, registry
from runce.runs.service import RunService
from runce.stores.base import StoreSpec
from runce.stores.registry import open_store


def test_a_debounce_needs_a_concurrency_key() -> None:
    with pytest.raises(UsageError) as err:
        job("k", debounce="30s")
    assert str(err.value) == (
        "job 'k': debounce= needs concurrency_key=, the key whose runs it merges"
    )


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        "0s",
        "-5s",
        86401,
        "2d",
        float("nan"),
        float("inf"),
        10**400 // 10**390,
        True,
        "soon",
        "",
        "\ud800",
        "30s\x00",
        [30],
        10**100,
    ],
)
def test_a_debounce_that_cannot_work_is_refused(value: Any) -> None:
    with pytest.raises(UsageError) as err:
        job("k", concurrency_key="customer", debounce=value)
    message = str(err.value)
    assert message.startswith("job 'k': debounce must be a duration from 1ms to 1 day")
    assert "\n" not in message
    assert len(message) < 200


@pytest.mark.parametrize(
    ("value", "seconds"), [("30s", 30.0), (2, 2.0), ("5m", 300.0), ("1d", 86400.0), ("1ms", 0.001)]
)
def test_a_debounce_is_kept_in_seconds(value: Any, seconds: float) -> None:
    try:
        declared = job("d.ok", concurrency_key="customer", debounce=value)(lambda p: None)
        assert declared.debounce == seconds
    finally:
        registry.forget("d.ok")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[RunService, JobRegistry]]:
    spec = StoreSpec(type="sqlite", url="sqlite:///runce.db", base_dir=tmp_path)
    store = open_store(spec)
    jobs = JobRegistry()
    jobs.register(Job("sync", lambda p: None, concurrency_key="customer", debounce=30.0))
    yield RunService(store.runs, jobs=jobs, bus=EventBus()), jobs  # type: ignore[attr-defined]
    store.close()


def test_the_service_merges_by_the_jobs_key(service: tuple[RunService, JobRegistry]) -> None:
    runs, _jobs = service
    [first] = runs.enqueue_results("sync", [{"customer": "acme", "n": 1}])
    assert first.created
    assert first.run.run_at - first.run.created_at >= timedelta(seconds=29)
    assert runs.flow(first.run).limit == "debounce 30 s per customer"
    assert runs.flow(first.run).waiting is None
    [again] = runs.enqueue_results("sync", [{"customer": "acme", "n": 2}])
    assert not again.created
    assert again.run.id == first.run.id
    assert again.run.input == {"customer": "acme", "n": 2}
    assert runs.enqueue("sync", {"customer": "acme", "n": 3}).id == first.run.id
    # One call with several inputs of one key: one run, holding the last.
    made = runs.enqueue_many("sync", [{"customer": "b", "n": i} for i in range(5)])
    assert len({run.id for run in made}) == 1
    assert runs.get(made[0].id).input == {"customer": "b", "n": 4}
    # A key given at enqueue is the key debounced by.
    other = runs.enqueue("sync", {"customer": "acme", "n": 9}, concurrency_key="x")
    assert other.id != first.run.id
    assert len(runs.page().runs) == 3


def test_an_idempotency_key_wins_over_the_debounce(
    service: tuple[RunService, JobRegistry],
) -> None:
    runs, _jobs = service
    first = runs.enqueue("sync", {"customer": "acme", "n": 1})
    keyed = runs.enqueue("sync", {"customer": "acme", "n": 2}, idempotency_key="order-1")
    assert keyed.id != first.id
    assert keyed.run_at - keyed.created_at < timedelta(seconds=5)  # not debounced
    assert (
        runs.enqueue("sync", {"customer": "acme", "n": 2}, idempotency_key="order-1").id == keyed.id
    )
    assert runs.get(first.id).input == {"customer": "acme", "n": 1}
