"""Cron schedules with real worker processes: three workers, one run per tick; and the
`runce schedules` commands."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from tests.acceptance.conftest import (
    Workspace,
    assert_one_sentence,
    mongo_workspace,
    output_of,
    postgres_workspace,
    stores_for,
)
from tests.acceptance.test_runs import _queue_stores

pytestmark = pytest.mark.slow

JOBS = """
import os
import runce

runce.schedule("*/2 * * * * *", "tick.record", {"source": "cron"}, name="every2s")


@runce.job("tick.record")
def record(params, ctx):
    with open(os.environ["RUNCE_TEST_LOG"], "a") as handle:
        handle.write(f"{ctx.run.id} {params['source']} {os.getpid()}\\n")
"""


@pytest.fixture(params=_queue_stores())
def cronspace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    settings = '[worker]\nhandlers = ["jobs"]\nlease = 6\npoll = 0.2\nshutdown_timeout = 2\n'
    if request.param == "postgres":
        spaces = postgres_workspace(request, tmp_path)
    elif request.param == "mongo":
        spaces = mongo_workspace(request, tmp_path)
    else:
        spaces = iter([Workspace(tmp_path, stores_for(tmp_path)["sqlite"])])
    space = next(spaces)
    space.settings += settings
    space.write_config()
    (space.root / "jobs.py").write_text(JOBS)
    yield space
    space.reap()
    for _ in spaces:
        pass


def _runs(space: Workspace) -> list[dict[str, object]]:
    listed = space.runce("runs", "list", "--kind", "tick.record", "--limit", "100", "--json")
    assert listed.returncode == 0, output_of(listed)
    runs: list[dict[str, object]] = json.loads(listed.stdout)["runs"]
    return runs


def test_three_workers_enqueue_and_run_each_tick_exactly_once(cronspace: Workspace) -> None:
    log = cronspace.root / "log.txt"
    workers = [cronspace.start("worker", RUNCE_TEST_LOG=str(log)) for _ in range(3)]
    time.sleep(13)
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        _, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err

    runs = _runs(cronspace)
    ticks = sorted(datetime.fromisoformat(str(run["run_at"])) for run in runs)
    assert len(ticks) >= 4, ticks
    # One run per tick: every two seconds, none twice, none skipped.
    assert all(later - earlier == timedelta(seconds=2) for earlier, later in pairwise(ticks))
    assert Counter(str(run["idempotency_key"]) for run in runs).most_common(1)[0][1] == 1
    finished = [run for run in runs if run["state"] == "succeeded"]
    executed = [line.split()[0] for line in log.read_text().splitlines()]
    assert Counter(executed).most_common(1)[0][1] == 1  # no run executed twice
    assert {str(run["id"]) for run in finished} <= set(executed)
    assert {line.split()[1] for line in log.read_text().splitlines()} == {"cron"}

    listed = cronspace.runce("schedules", "list", "--json")
    assert listed.returncode == 0, output_of(listed)
    [stored] = json.loads(listed.stdout)
    assert (stored["name"], stored["enabled"], stored["expression"]) == (
        "every2s",
        True,
        "*/2 * * * * *",
    )
    assert stored["last_run_id"] in {run["id"] for run in runs}


def test_schedules_commands_switch_a_schedule_off_and_on(cronspace: Workspace) -> None:
    empty = cronspace.runce("schedules", "list")
    assert empty.returncode == 0, output_of(empty)
    assert "no schedule is stored yet" in empty.stdout

    drained = cronspace.runce("worker", "--drain", RUNCE_TEST_LOG=str(cronspace.root / "l"))
    assert drained.returncode == 0, output_of(drained)  # a drain stores the schedules too

    off = cronspace.runce("schedules", "disable", "every2s")
    assert (off.returncode, off.stdout.strip()) == (0, "disabled every2s"), output_of(off)
    table = cronspace.runce("schedules", "list")
    assert table.stdout.splitlines()[1].split()[:2] == ["OFF", "every2s"], table.stdout

    on = cronspace.runce("schedules", "enable", "every2s")
    assert on.returncode == 0, output_of(on)
    assert on.stdout.startswith("enabled every2s: next run at ")

    unknown = cronspace.runce("schedules", "enable", "nope")
    assert unknown.returncode == 5  # not found
    assert_one_sentence(unknown.stderr, "no schedule is named 'nope'")


def test_an_invalid_schedule_stops_the_worker_with_the_reason(cronspace: Workspace) -> None:
    (cronspace.root / "jobs.py").write_text(JOBS.replace("*/2 * * * * *", "61 * * * *"))
    started = cronspace.runce("worker", "--drain")
    assert started.returncode == 2
    assert_one_sentence(
        started.stderr, "schedule 'every2s'", "cron expression '61 * * * *' is not valid"
    )
