"""Retention that runs itself, with real workers: finished runs past ``runs.retention``
disappear on the retention schedule's ticks, pruned by one worker per tick."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import runce
from runce.runs.retention import RETENTION_SCHEDULE, RetentionLoop
from tests.acceptance.conftest import (
    Workspace,
    assert_one_sentence,
    output_of,
    postgres_workspace,
    stores_for,
)

pytestmark = pytest.mark.slow

JOBS = """
import runce


@runce.job("noop.quick")
def quick(params, ctx):
    return params
"""

# Runs finished a second ago are past retention, and the workers look every second.
SETTINGS = """
[worker]
handlers = ["jobs"]
poll = 0.2
shutdown_timeout = 1

[runs.retention]
succeeded = "1s"
failed = "1s"
schedule = "* * * * * *"
batch = 2
"""


@pytest.fixture(params=["sqlite", "postgres"])
def space(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    if request.param == "postgres":
        spaces = postgres_workspace(request, tmp_path)
    else:
        spaces = iter([Workspace(tmp_path, stores_for(tmp_path)["sqlite"])])
    made = next(spaces)
    made.settings += SETTINGS
    made.write_config()
    (made.root / "jobs.py").write_text(JOBS)
    yield made
    made.reap()
    for _ in spaces:
        pass


def _listed(space: Workspace) -> list[dict[str, object]]:
    done = space.runce("runs", "list", "--json", "--limit", "100")
    assert done.returncode == 0, output_of(done)
    runs: list[dict[str, object]] = json.loads(done.stdout)["runs"]
    return runs


def test_two_workers_prune_finished_runs_on_the_retention_schedule(space: Workspace) -> None:
    for i in range(5):
        enqueued = space.runce("runs", "enqueue", "noop.quick", "--input", json.dumps({"i": i}))
        assert enqueued.returncode == 0, output_of(enqueued)
    workers = [space.start("worker", "--concurrency", "2") for _ in range(2)]
    try:
        deadline = time.monotonic() + 90
        while runs := _listed(space):
            assert time.monotonic() < deadline, runs
            time.sleep(0.2)
        # The retention schedule is runce's own: not among the schedules code declares.
        listed = space.runce("schedules", "list", "--json")
        assert listed.returncode == 0, output_of(listed)
        assert RETENTION_SCHEDULE not in listed.stdout
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
    logs = ""
    for proc in workers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, out + err
        logs += err
    assert logs.count("run.succeeded ") == 5, logs  # they ran, then went
    assert "runs.pruned: " in logs, logs
    switched = space.runce("schedules", "disable", RETENTION_SCHEDULE)
    assert switched.returncode != 0
    assert_one_sentence(switched.stderr, f"no schedule is named {RETENTION_SCHEDULE!r}")


def test_a_worker_prunes_only_when_retention_is_on(tmp_path: Path) -> None:
    base = f'store = "sqlite:///{tmp_path}/runce.db"\n'
    (tmp_path / "runce.toml").write_text(base)
    on = runce.worker(config=tmp_path / "runce.toml")
    assert any(isinstance(c, RetentionLoop) for c in on.companions)
    (tmp_path / "runce.toml").write_text(base + "[runs.retention]\nauto = false\n")
    off = runce.worker(config=tmp_path / "runce.toml")
    assert not any(isinstance(c, RetentionLoop) for c in off.companions)


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ('schedule = "every hour"', "runs.retention.schedule"),
        ('schedule = "61 * * * *"', "runs.retention.schedule"),
        ("batch = 0", "runs.retention.batch"),
        ("batch = 1000001", "runs.retention.batch"),
        ('auto = "maybe"', "runs.retention.auto"),
    ],
)
def test_a_bad_retention_setting_is_refused_in_one_sentence(
    tmp_path: Path, setting: str, needle: str
) -> None:
    space = Workspace(tmp_path, stores_for(tmp_path)["sqlite"], f"[runs.retention]\n{setting}\n")
    done = space.runce("worker", "--drain")
    assert done.returncode != 0, output_of(done)
    assert_one_sentence(done.stderr, needle)
