"""Every duration and count has a range, checked where it comes in; the lease keeper never
dies silently."""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import runce
from runce.config import KEYS, load_config
from runce.domain.locks import Lease
from runce.errors import ConfigError, StoreError, UsageError
from runce.stores import memory
from runce.stores.liveness import current_owner
from runce.stores.registry import open_store
from runce.tasks.lease import LeaseKeeper
from tests.unit.conftest import Project

OUT_OF_RANGE = [
    ("lock", "ttl", 0),
    ("lock", "ttl", "0.5s"),
    ("lock", "ttl", "99999999999d"),
    ("lock", "ttl", "2d"),
    ("worker", "lease", 0),
    ("worker", "lease", "99999999999d"),
    ("worker", "poll", 0),
    ("worker", "poll", "2h"),
    ("worker", "concurrency", 1001),
    ("worker", "max_attempts", 1001),
    ("worker", "backoff_base", "2d"),
    ("worker", "shutdown_timeout", "2d"),
    ("runs.retention", "succeeded", 0),
    ("runs.retention", "failed", "99999999999d"),
    ("api", "max_body", "2048MiB"),
]


def _toml(tmp_path: Path, table: str, key: str, value: object) -> Path:
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    path = tmp_path / "runce.toml"
    path.write_text(f"[{table}]\n{key} = {shown}\n")
    return path


@pytest.mark.parametrize(("table", "key", "value"), OUT_OF_RANGE)
def test_a_value_outside_its_range_is_refused_naming_the_key_and_file(
    tmp_path: Path, table: str, key: str, value: object
) -> None:
    path = _toml(tmp_path, table, key, value)
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, env={})
    text = str(excinfo.value)
    assert text.startswith(f"runce.toml: {table}.{key} must be between"), text
    assert excinfo.value.exit_code == 2


@pytest.mark.parametrize(
    ("table", "key", "value"), [("lock", "ttl", "0"), ("worker", "lease", "0")]
)
def test_the_environment_is_checked_too(table: str, key: str, value: str) -> None:
    variable = f"RUNCE_{table.upper()}_{key.upper()}"
    with pytest.raises(ConfigError, match=f"^environment variable {variable}: {table}.{key}"):
        load_config(values={}, env={variable: value})


def test_the_ends_of_each_range_are_accepted(tmp_path: Path) -> None:
    for key in KEYS:
        if key.low is None or key.high is None:
            continue
        table, _, name = key.name.rpartition(".")
        for end in (key.low, key.high):
            value = int(end) if key.kind != "duration" else end
            values: dict[str, object] = {name: value}
            for part in reversed(table.split(".") if table else []):
                values = {part: values}
            loaded = load_config(values=values, start=tmp_path, env={})
            assert loaded is not None, key.name


def test_the_default_of_every_key_lies_in_its_range() -> None:
    for key in KEYS:
        if key.low is not None and key.high is not None:
            key.check(key.default)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"concurrency": 0}, "concurrency must be a whole number from 1 to 1000, got 0"),
        ({"concurrency": 1001}, "concurrency must be"),
        ({"concurrency": 2.5}, "concurrency must be a whole number"),
        ({"wait": -1}, "wait must be a number of seconds from 0s to 1d, got -1"),
        ({"wait": 1e12}, "wait must be"),
        ({"wait": math.nan}, "wait must be"),
    ],
)
def test_run_tasks_checks_its_numbers(
    project: Project, options: dict[str, object], needle: str
) -> None:
    project.simple("1.one")
    with pytest.raises(UsageError, match=needle):
        project.run(**options)
    assert project.states() == {"1.one": "PENDING"}


def test_run_pending_on_boot_checks_its_wait(project: Project) -> None:
    with pytest.raises(UsageError, match="wait must be"):
        runce.run_pending_on_boot(project.config(), wait=-5)


def test_the_runs_api_checks_its_numbers(tmp_path: Path) -> None:
    config = {"store": f"sqlite:///{tmp_path / 'runce.db'}"}
    with pytest.raises(UsageError, match="timeout must be a number of seconds"):
        runce.wait("nope", timeout=-1, config=config)
    with pytest.raises(UsageError, match="max_time must be"):
        runce.worker(config, max_time=float("inf"))
    with pytest.raises(UsageError, match="concurrency must be"):
        runce.worker(config, concurrency=0)


# -- the lease keeper ------------------------------------------------------------------------


class _BrokenLock:
    """A lock whose renewal raises what no store should: a bug, not an outage."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.calls = 0

    def renew(self, lease: Lease) -> bool:
        self.calls += 1
        raise self.error


def _lease(ttl: float) -> Lease:
    lease = memory.MemoryStore(uuid.uuid4().hex).lock.try_acquire(current_owner(), ttl=ttl)
    assert lease is not None
    return lease


def _wait_lost(keeper: LeaseKeeper, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not keeper.lost and time.monotonic() < deadline:
        time.sleep(0.02)


def test_an_unexpected_renewal_error_loses_the_lease_at_once() -> None:
    lock = _BrokenLock(TypeError("a bug in the store"))
    keeper = LeaseKeeper(lock, _lease(ttl=1.0)).start()  # type: ignore[arg-type]
    _wait_lost(keeper)
    keeper.stop()
    assert lock.calls == 1
    assert "TypeError: a bug in the store" in (keeper.reason or "")


def test_a_store_outage_is_still_retried_within_the_lease() -> None:
    lock = _BrokenLock(StoreError("database unreachable"))
    keeper = LeaseKeeper(lock, _lease(ttl=1.0)).start()  # type: ignore[arg-type]
    _wait_lost(keeper)
    keeper.stop()
    assert lock.calls >= 2
    assert "could not renew the lock" in (keeper.reason or "")


def test_a_keeper_whose_thread_fails_counts_the_lease_as_lost() -> None:
    """A lease so long that waiting a third of it overflows killed the thread silently."""
    huge = replace(_lease(ttl=1.0), ttl=1e18)
    keeper = LeaseKeeper(_BrokenLock(RuntimeError("never called")), huge).start()  # type: ignore[arg-type]
    _wait_lost(keeper)
    keeper.stop()
    assert keeper.lost
    assert "failed unexpectedly" in (keeper.reason or "")


def test_a_lease_lost_during_the_last_task_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = Project(tmp_path, f"memory://{uuid.uuid4().hex}")
    renewed = tmp_path / "renewal-failed"
    project.task(
        "1.last",
        f"""
        import os, time
        @runce.task
        def run(ctx):
            deadline = time.monotonic() + 30
            while not os.path.exists({str(renewed)!r}) and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)  # the keeper records the loss right after the renewal raised
        """,
    )
    config = project.config(lock={"ttl": 1})
    lock_type = type(open_store(config.store).lock)

    def renew(self: object, lease: Lease) -> bool:
        renewed.touch()
        raise ValueError("unexpected")

    monkeypatch.setattr(lock_type, "renew", renew)
    report = runce.run_tasks(config)
    memory.reset()
    assert renewed.exists()
    assert not report.ok
    assert report.exit_code == 1
    assert "ValueError: unexpected" in (report.lock_lost or "")


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"max_attempts": 0}, "max_attempts must be a whole number from 1 to 1000, got 0"),
        ({"max_attempts": 10**20}, "max_attempts must be"),
        ({"timeout": 0}, "timeout must be a number of seconds"),
        ({"timeout": float("inf")}, "timeout must be"),
        ({"timeout": 1e12}, "timeout must be"),
    ],
)
def test_a_job_checks_its_numbers(options: dict[str, Any], needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        runce.job(f"limits.{uuid.uuid4().hex[:6]}", **options)


def test_a_batch_checks_its_concurrency() -> None:
    from runce.runs.inline import run_batch

    with pytest.raises(UsageError, match="batch concurrency must be a whole number from 1"):
        run_batch(lambda item: item, [1], 5000, stop_on_error=False)


def test_a_late_retry_waits_at_most_the_cap_instead_of_overflowing() -> None:
    """With max_attempts up to 1000 and backoff_base up to a day, doubling per attempt
    overflowed a date and killed the handler thread, leaving the run running."""
    from runce.runs.jobs import Job, JobRegistry
    from runce.runs.service import RunService
    from runce.runs.worker import MAX_RETRY_DELAY, Worker, WorkerOptions, _Slot

    store = memory.MemoryStore(uuid.uuid4().hex)
    jobs = JobRegistry()
    job = jobs.register(Job("late.retry", lambda params: None, max_attempts=1000))
    RunService(store.runs, jobs=jobs).enqueue("late.retry", None)
    [run] = store.runs.claim("w1", None, limit=1, lease=30)
    worker = Worker(store.runs, WorkerOptions(backoff_base=86400.0), jobs=jobs)
    outcome = worker._failure(_Slot(replace(run, attempt=900), job, 0.0), ValueError("again"))
    memory.reset()
    assert outcome.kind == "retry"
    assert outcome.run_at is not None
    waited = (outcome.run_at - run.created_at).total_seconds()
    assert waited <= MAX_RETRY_DELAY + 60
