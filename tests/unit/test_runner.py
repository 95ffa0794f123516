"""Running once tasks in-process (T-2 to T-11), on the memory and SQLite stores."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

import runce
from runce.errors import (
    DriftError,
    LockHeld,
    OutOfOrderError,
    TaskLoadError,
    TasksFailed,
    UnsupportedFeature,
    UsageError,
)
from runce.stores.liveness import current_owner
from runce.stores.registry import open_store
from runce.tasks import library
from tests.unit.conftest import Project


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_pending_tasks_run_once_in_id_order(project: Project) -> None:
    log = project.root / "log.txt"
    for task_id in ("2025-02.b", "2025-01.a", "2025-03.c"):
        project.simple(task_id, f"open({str(log)!r}, 'a').write({task_id!r} + '\\n')")

    first = project.run()
    assert first.ok
    assert [r.outcome for r in first.results] == ["ok", "ok", "ok"]
    assert _lines(log) == ["2025-01.a", "2025-02.b", "2025-03.c"]

    second = project.run()
    assert set(project.outcomes(second).values()) == {"applied"}
    assert len(_lines(log)) == 3
    assert set(project.states().values()) == {"APPLIED"}


def test_a_failure_is_recorded_and_stops_later_tasks(project: Project) -> None:
    project.simple("1.ok")
    project.simple("2.bad", "raise ValueError('no queue service')")
    project.simple("3.later")

    report = project.run()
    assert not report.ok
    assert report.exit_code == 1
    assert project.outcomes(report) == {"1.ok": "ok", "2.bad": "failed", "3.later": "not-run"}
    assert report.result("2.bad").error == "ValueError: no queue service"
    assert project.states() == {"1.ok": "APPLIED", "2.bad": "FAILED", "3.later": "PENDING"}

    [failed] = library.task_history(project.config(), "2.bad")
    assert failed.status == "failed"
    assert failed.error_type == "ValueError"
    assert failed.traceback is not None
    assert "no queue service" in failed.traceback


def test_a_failed_task_runs_again_next_time(project: Project) -> None:
    flag = project.root / "fixed"
    project.simple("1.flaky", f"assert os.path.exists({str(flag)!r}), 'not yet'")
    project.task(
        "1.flaky",
        f"import os\n@runce.task\ndef run(ctx):\n    assert os.path.exists({str(flag)!r})\n",
    )
    assert not project.run().ok
    flag.touch()
    assert project.outcomes(project.run()) == {"1.flaky": "ok"}
    statuses = [a.status for a in library.task_history(project.config(), "1.flaky")]
    assert statuses == ["failed", "succeeded"]


def test_keep_going_runs_the_tasks_after_a_failure(project: Project) -> None:
    project.simple("1.bad", "raise RuntimeError('x')")
    project.simple("2.fine")
    report = project.run(keep_going=True)
    assert project.outcomes(report) == {"1.bad": "failed", "2.fine": "ok"}


def test_already_done_records_skipped_and_counts_as_applied(project: Project) -> None:
    marker = project.root / "ran"
    project.task(
        "1.check",
        f"""
        def already_done(ctx):
            return True

        @runce.task(already_done=already_done)
        def run(ctx):
            open({str(marker)!r}, "w").close()
        """,
    )
    report = project.run()
    assert project.outcomes(report) == {"1.check": "skipped"}
    assert not marker.exists()
    assert project.states() == {"1.check": "SKIPPED"}
    assert [a.status for a in library.task_history(project.config())] == ["skipped"]
    assert project.outcomes(project.run()) == {"1.check": "applied"}


def test_a_skippable_task_is_skipped_while_its_variable_is_set(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.simple("2026-05-20.fix-roles", skippable=True)
    monkeypatch.setenv("RUNCE_SKIP_2026_05_20_FIX_ROLES", "1")
    report = project.run()
    assert project.outcomes(report) == {"2026-05-20.fix-roles": "skipped-by-env"}
    assert project.states() == {"2026-05-20.fix-roles": "PENDING"}
    monkeypatch.delenv("RUNCE_SKIP_2026_05_20_FIX_ROLES")
    assert project.outcomes(project.run()) == {"2026-05-20.fix-roles": "ok"}
    history = [a.status for a in library.task_history(project.config())]
    assert history == ["skipped-by-env", "succeeded"]


def test_a_task_not_marked_skippable_ignores_the_variable(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.simple("1.strict")
    monkeypatch.setenv("RUNCE_SKIP_1_STRICT", "1")
    assert project.outcomes(project.run()) == {"1.strict": "ok"}


def test_drift_is_refused_until_repaired(project: Project) -> None:
    path = project.simple("1.drifty")
    project.run()
    path.write_text(path.read_text() + "# changed\n")
    assert project.states() == {"1.drifty": "DRIFTED"}
    with pytest.raises(DriftError, match=r"1\.drifty\.py.*runce repair 1\.drifty"):
        project.run()

    [row] = library.repair(project.config(), ["1.drifty"])
    assert row.status == "repaired"
    assert project.states() == {"1.drifty": "APPLIED"}
    assert project.run().ok
    assert [a.status for a in library.task_history(project.config(), "1.drifty")] == [
        "succeeded",
        "repaired",
    ]


def test_drift_only_warns_when_configured(project: Project) -> None:
    path = project.simple("1.drifty")
    project.run()
    path.write_text(path.read_text() + "# changed\n")
    report = project.run(config=project.config(on_drift="warn"))
    assert report.ok
    assert project.outcomes(report) == {"1.drifty": "drifted"}


def test_repair_refuses_a_task_that_did_not_drift(project: Project) -> None:
    project.simple("1.same")
    project.run()
    with pytest.raises(UsageError, match="not DRIFTED"):
        library.repair(project.config(), ["1.same"])


def test_a_missing_file_is_reported_not_fatal(project: Project) -> None:
    path = project.simple("1.gone")
    project.simple("2.here")
    project.run()
    path.unlink()
    assert project.states() == {"2.here": "APPLIED", "1.gone": "MISSING"}
    assert project.run().ok


def test_an_out_of_order_task_runs_and_is_flagged(project: Project) -> None:
    project.simple("2025-02.applied")
    project.run()
    project.simple("2025-01.late")
    status = {s.id: s for s in runce.task_status(project.config()).tasks}
    assert status["2025-01.late"].out_of_order
    report = project.run()
    assert report.result("2025-01.late").outcome == "ok"
    assert "out of order" in (report.result("2025-01.late").note or "")


def test_an_out_of_order_task_can_be_refused(project: Project) -> None:
    project.simple("2025-02.applied")
    project.run()
    project.simple("2025-01.late")
    with pytest.raises(OutOfOrderError, match=r"2025-01\.late"):
        project.run(config=project.config(on_out_of_order="fail"))


def test_dry_run_records_nothing_and_runs_only_already_done(project: Project) -> None:
    marker = project.root / "ran"
    asked = project.root / "asked"
    project.task(
        "1.maybe",
        f"""
        def check(ctx):
            assert ctx.dry_run
            open({str(asked)!r}, "w").close()
            return False

        @runce.task(already_done=check)
        def run(ctx):
            open({str(marker)!r}, "w").close()
        """,
    )
    report = project.run(dry_run=True)
    assert project.outcomes(report) == {"1.maybe": "dry-run"}
    assert asked.exists()
    assert not marker.exists()
    assert library.task_history(project.config()) == []
    assert runce.list_applied(project.config()) == []


def test_filters_select_by_id(project: Project) -> None:
    for task_id in ("2025-01-01.a", "2025-02-01.b", "2025-03-01.c", "2025-04-01.d"):
        project.simple(task_id)
    report = project.run(since="2025-02", until="2025-03")
    assert project.outcomes(report) == {
        "2025-01-01.a": "not-selected",
        "2025-02-01.b": "ok",
        "2025-03-01.c": "ok",
        "2025-04-01.d": "not-selected",
    }
    report = project.run(only=["2025-04-01.d"])
    assert report.result("2025-04-01.d").outcome == "ok"
    assert report.result("2025-01-01.a").outcome == "not-selected"
    with pytest.raises(UsageError, match="no file: nope"):
        project.run(only=["nope"])


def test_concurrency_runs_tasks_side_by_side(project: Project) -> None:
    barrier_file = project.root / "barrier"
    for name in ("1.a", "2.b", "3.c"):
        project.task(
            name,
            f"""
            import os, time
            @runce.task
            def run(ctx):
                open({str(barrier_file)!r} + {name!r}, "w").close()
                deadline = time.monotonic() + 5
                names = ("1.a", "2.b", "3.c")
                while not all(os.path.exists({str(barrier_file)!r} + n) for n in names):
                    assert time.monotonic() < deadline, "tasks did not run side by side"
                    time.sleep(0.01)
            """,
        )
    report = project.run(concurrency=3)
    assert set(project.outcomes(report).values()) == {"ok"}


def test_concurrency_starts_nothing_after_a_failure(project: Project) -> None:
    project.simple("1.bad", "raise RuntimeError('stop')")
    project.simple("2.slow", "import time; time.sleep(0.2)")
    project.simple("3.a")
    project.simple("4.b")
    report = project.run(concurrency=2)
    outcomes = project.outcomes(report)
    assert outcomes["1.bad"] == "failed"
    assert outcomes["4.b"] == "not-run"


def test_progress_is_stored_with_the_attempt(project: Project) -> None:
    seen = project.root / "seen"
    cfg = project.config()
    project.task(
        "1.long",
        f"""
        import json, os, time
        @runce.task
        def run(ctx):
            ctx.progress(3, 10)
            deadline = time.monotonic() + 5
            while not os.path.exists({str(seen)!r}):
                assert time.monotonic() < deadline
                time.sleep(0.01)
        """,
    )
    thread = threading.Thread(target=runce.run_tasks, args=(cfg,))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while True:
            [status] = runce.task_status(cfg).tasks
            if status.attempt is not None and status.attempt.progress_done == 3:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.02)
        assert status.state is runce.TaskState.RUNNING
        assert status.attempt.progress_total == 10
    finally:
        seen.touch()
        thread.join()


def test_async_tasks_and_checks_run(project: Project) -> None:
    out = project.root / "async"
    project.task(
        "1.async",
        f"""
        import asyncio

        async def done(ctx):
            await asyncio.sleep(0)
            return False

        @runce.task(already_done=done)
        async def run(ctx):
            await asyncio.sleep(0.01)
            open({str(out)!r}, "w").close()
        """,
    )
    assert project.run().ok
    assert out.exists()


def test_async_twins_work_from_an_event_loop(project: Project) -> None:
    project.simple("1.a")
    cfg = project.config()

    async def main() -> tuple[runce.RunReport, runce.StatusReport]:
        return await runce.arun_tasks(cfg), await runce.atask_status(cfg)

    report, status = asyncio.run(main())
    assert report.ok
    assert status.tasks[0].state is runce.TaskState.APPLIED
    assert len(asyncio.run(runce.alist_applied(cfg))) == 1


def test_services_are_made_once_and_shared(project: Project) -> None:
    module = f"services_{uuid.uuid4().hex}"
    (project.root / f"{module}.py").write_text(
        "calls = []\ndef make():\n    calls.append(1)\n    return {'greeting': 'hi'}\n"
    )
    for name in ("1.a", "2.b"):
        project.simple(name, "assert ctx.services['greeting'] == 'hi'")
    report = project.run(config=project.config(services=f"{module}:make"))
    assert report.ok
    assert sys.modules[module].calls == [1]


def test_the_log_is_bound_to_the_task(project: Project, caplog: pytest.LogCaptureFixture) -> None:
    project.simple("1.talks", "ctx.log.info('hello from %s', ctx.id)")
    with caplog.at_level("INFO"):
        project.run()
    [record] = [r for r in caplog.records if r.getMessage() == "hello from 1.talks"]
    assert record.task_id == "1.talks"  # type: ignore[attr-defined]


def test_a_broken_task_file_records_nothing(project: Project) -> None:
    project.simple("1.fine")
    project.task("2.broken", "def run(ctx)\n    pass\n")
    with pytest.raises(TaskLoadError, match=r"2\.broken\.py, line 2"):
        project.run()
    assert library.task_history(project.config()) == []


def test_a_transactional_task_needs_a_store_with_transactions(tmp_path: Path) -> None:
    project = Project(tmp_path, "memory://tx")
    project.simple("1.tx", transactional=True)
    with pytest.raises(UnsupportedFeature, match=r"1\.tx is transactional"):
        project.run()


def test_a_held_lock_fails_fast_and_names_the_holder(project: Project) -> None:
    project.simple("1.a")
    store = open_store(project.config().store)
    lease = store.lock.try_acquire(current_owner("deployer-7"), ttl=30)
    assert lease is not None
    try:
        with pytest.raises(LockHeld, match="lock held by deployer-7"):
            project.run()
        started = time.monotonic()
        with pytest.raises(LockHeld, match=r"after waiting 0\.3s"):
            project.run(wait=0.3)
        assert time.monotonic() - started >= 0.3
    finally:
        store.lock.release(lease)
        store.close()
    assert project.run().ok


def test_waiting_gets_the_lock_when_it_is_released(project: Project) -> None:
    project.simple("1.a")
    store = open_store(project.config().store)
    lease = store.lock.try_acquire(current_owner("briefly"), ttl=30)
    assert lease is not None
    timer = threading.Timer(0.3, store.lock.release, args=(lease,))
    timer.start()
    try:
        assert project.run(wait=10).ok
    finally:
        timer.join()
        store.close()


def test_an_interrupted_attempt_is_reported_and_run_again(project: Project) -> None:
    project.simple("1.resumable")
    cfg = project.config()
    store = open_store(cfg.store)
    dead_pid = int(subprocess.check_output([sys.executable, "-c", "import os; print(os.getpid())"]))
    ghost = replace(current_owner("ghost"), pid=dead_pid)
    lease = store.lock.try_acquire(ghost, ttl=300)
    assert lease is not None
    from tests.stores.records import started

    attempt = replace(started("1.resumable", token=lease.token, owner=ghost))
    store.tracker.begin(attempt, lease)
    store.close()

    assert project.states() == {"1.resumable": "INTERRUPTED"}
    report = project.run()
    result = report.result("1.resumable")
    assert result.outcome == "ok"
    assert result.note is not None
    assert "interrupted" in result.note
    statuses = [a.status for a in library.task_history(cfg, "1.resumable")]
    assert statuses == ["interrupted", "succeeded"]


def test_run_pending_on_boot_raises_when_a_task_fails(project: Project) -> None:
    project.simple("1.bad", "raise RuntimeError('boom')")
    with pytest.raises(TasksFailed, match=r"1\.bad") as caught:
        runce.run_pending_on_boot(project.config(), wait=1)
    assert caught.value.report.failed[0].id == "1.bad"
    [attempt] = library.task_history(project.config())
    assert attempt.applied_by == "boot"


def test_run_pending_on_boot_applies_everything(project: Project) -> None:
    project.simple("1.a")
    report = asyncio.run(runce.arun_pending_on_boot(project.config(), wait=1))
    assert report.ok


def test_baseline_records_without_running(project: Project) -> None:
    marker = project.root / "ran"
    project.simple("1.old", f"open({str(marker)!r}, 'w').close()")
    project.simple("2.old", f"open({str(marker)!r}, 'w').close()")
    project.simple("3.new", "pass")
    rows = library.baseline(project.config(), all_pending=True, until="2")
    assert [r.task_id for r in rows] == ["1.old", "2.old"]
    assert project.outcomes(project.run()) == {
        "1.old": "applied",
        "2.old": "applied",
        "3.new": "ok",
    }
    assert not marker.exists()
    with pytest.raises(UsageError, match="only tasks not yet applied"):
        library.baseline(project.config(), ["3.new"])
    with pytest.raises(UsageError, match="name the tasks"):
        library.baseline(project.config())


def test_errors_are_capped(project: Project) -> None:
    project.simple("1.loud", "raise ValueError('x' * 100_000)")
    project.run()
    [attempt] = library.task_history(project.config())
    assert attempt.error_message is not None
    assert len(attempt.error_message.encode()) <= 16 * 1024
    assert attempt.traceback is not None
    assert len(attempt.traceback.encode()) <= 16 * 1024


def test_applied_by_is_ci_inside_ci(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.simple("1.a")
    monkeypatch.setenv("CI", "true")
    runce.run_tasks(project.config(), applied_by="cli")
    [attempt] = library.task_history(project.config())
    assert attempt.applied_by == "ci"
    assert attempt.runce_version == runce.__version__
    assert attempt.pid == os.getpid()
