"""Applying once tasks when an application starts: a missing tasks folder is nothing to do,
and what happens is reported through ``logging``."""

from __future__ import annotations

import logging
import re
import shutil

import pytest

import runce
from runce.errors import DriftError, LockHeld, TaskLoadError, TasksFailed
from runce.stores.liveness import current_owner
from runce.stores.registry import open_store
from runce.tasks import library
from tests.unit.conftest import Project


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "runce.boot"]


def test_a_missing_tasks_folder_is_nothing_to_do_on_boot_but_an_error_for_run(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.rmtree(project.tasks)
    caplog.set_level(logging.INFO, logger="runce.boot")
    report = runce.run_pending_on_boot(project.config(), wait=1)
    assert report.ok
    assert report.results == []
    [message] = _messages(caplog)
    assert message.startswith(f"runce: no tasks folder at {project.tasks}")
    with pytest.raises(TaskLoadError, match="does not exist"):
        runce.run_tasks(project.config())


def test_boot_logs_the_pending_count_and_each_outcome_with_its_duration(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    project.simple("1.a")
    runce.run_tasks(project.config())
    project.simple("2.b")
    project.simple("3.c")
    caplog.set_level(logging.INFO, logger="runce.boot")
    runce.run_pending_on_boot(project.config(), wait=1)
    messages = _messages(caplog)
    assert messages[0] == "runce: 2 of 3 once task(s) pending; applying them"
    finished = [m for m in messages if re.fullmatch(r"runce: \S+ OK in \d+ ms", m)]
    assert [m.split()[1] for m in finished] == ["2.b", "3.c"]
    assert re.fullmatch(r"runce: boot applied 2 once task\(s\) in \d+ ms", messages[-1])
    caplog.clear()
    runce.run_pending_on_boot(project.config(), wait=1)
    assert _messages(caplog)[0] == "runce: all 3 once task(s) applied; nothing to do on boot"


def test_a_failure_on_boot_says_how_many_tasks_were_not_attempted(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    project.simple("1.a")
    project.simple("2.bad", "raise RuntimeError('boom')")
    project.simple("3.c")
    project.simple("4.d")
    caplog.set_level(logging.INFO, logger="runce.boot")
    with pytest.raises(TasksFailed) as caught:
        runce.run_pending_on_boot(project.config(), wait=1)
    error = caught.value
    assert str(error) == "once tasks did not complete on boot: 2.bad; 2 task(s) not attempted"
    assert error.failed == ["2.bad"]
    assert error.not_attempted == 2
    failed = [r for r in caplog.records if r.name == "runce.boot" and r.levelno == logging.ERROR]
    assert re.fullmatch(r"runce: 2\.bad FAILED in \d+ ms: .*boom.*", failed[0].getMessage())
    assert failed[-1].getMessage() == (
        "runce: once tasks did not complete on boot: 2.bad failed, 2 not attempted"
    )
    assert [s.state.value for s in library.task_status(project.config()).tasks] == [
        "APPLIED",
        "FAILED",
        "PENDING",
        "PENDING",
    ]


def test_a_lock_still_held_after_the_wait_is_summed_up_on_boot(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    project.simple("1.a")
    project.simple("2.b")
    store = open_store(project.config().store)
    lease = store.lock.try_acquire(current_owner("deployer-7"), ttl=30)
    assert lease is not None
    caplog.set_level(logging.INFO, logger="runce.boot")
    try:
        with pytest.raises(LockHeld) as caught:
            runce.run_pending_on_boot(project.config(), wait=0.2)
    finally:
        store.lock.release(lease)
        store.close()
    messages = _messages(caplog)
    assert messages[0] == "runce: 2 of 2 once task(s) pending; applying them"
    assert re.fullmatch(
        r"runce: once tasks did not complete on boot: 2 not attempted \(.*deployer-7.*\)",
        messages[-1],
    )
    assert caught.value.not_attempted == 2
    assert caught.value.__notes__ == ["2 once task(s) not attempted on boot"]


def test_a_drifted_task_is_summed_up_on_boot(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    project.simple("1.a")
    runce.run_tasks(project.config())
    project.simple("1.a", "print('changed')")
    project.simple("2.b")
    project.simple("3.c")
    caplog.set_level(logging.INFO, logger="runce.boot")
    with pytest.raises(DriftError) as caught:
        runce.run_pending_on_boot(project.config(), wait=1)
    messages = _messages(caplog)
    assert messages[0] == "runce: 2 of 3 once task(s) pending; applying them"
    assert messages[-1].startswith("runce: once tasks did not complete on boot: 2 not attempted (")
    assert "1.a.py changed after it was applied" in messages[-1]
    assert caught.value.not_attempted == 2
