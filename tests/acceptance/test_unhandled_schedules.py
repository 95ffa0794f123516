"""A schedule whose kind no job defines is refused with the reason, by the real command:
a worker does not start with it, and `runce schedules enable` does not switch it on."""

from __future__ import annotations

import pytest

from tests.acceptance.conftest import Workspace, assert_one_sentence, output_of
from tests.acceptance.test_schedules import JOBS, cronspace  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow

RENAMED = JOBS.replace('runce.schedule("*/2 * * * * *", "tick.record"', "# no schedule: (").replace(
    '@runce.job("tick.record")', '@runce.job("tick.renamed")'
)


def test_a_worker_refuses_a_schedule_of_an_unknown_kind(cronspace: Workspace) -> None:  # noqa: F811
    (cronspace.root / "jobs.py").write_text(
        JOBS.replace('"*/2 * * * * *", "tick.record"', '"*/2 * * * * *", "tick.ghost"')
    )
    started = cronspace.runce("worker", "--drain")
    assert started.returncode == 2, output_of(started)
    assert_one_sentence(
        started.stderr, "schedule 'every2s' runs kind 'tick.ghost'", "no job in worker.handlers"
    )
    listed = cronspace.runce("schedules", "list")
    assert "no schedule is stored yet" in listed.stdout, output_of(listed)


def test_enabling_a_schedule_whose_job_is_gone_is_refused(cronspace: Workspace) -> None:  # noqa: F811
    drained = cronspace.runce("worker", "--drain", RUNCE_TEST_LOG=str(cronspace.root / "l"))
    assert drained.returncode == 0, output_of(drained)
    off = cronspace.runce("schedules", "disable", "every2s")
    assert off.returncode == 0, output_of(off)

    (cronspace.root / "jobs.py").write_text(RENAMED)
    on = cronspace.runce("schedules", "enable", "every2s")
    assert on.returncode == 2, output_of(on)
    assert_one_sentence(on.stderr, "schedule 'every2s' runs kind 'tick.record'", "tick.renamed")
    table = cronspace.runce("schedules", "list")
    assert table.stdout.splitlines()[1].split()[:2] == ["OFF", "every2s"], table.stdout
