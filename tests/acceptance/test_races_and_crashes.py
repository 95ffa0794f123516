"""Real processes racing for one store, and a runner killed mid-task (T-4, T-5)."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.acceptance.conftest import Workspace, all_lines, output_of, wait_for

pytestmark = pytest.mark.slow


def test_eight_runners_at_once_apply_every_task_exactly_once(workspace: Workspace) -> None:
    log = workspace.root / "side-effects.log"
    ids = [f"2025-01-{day:02d}.append" for day in range(1, 7)]
    for task_id in ids:
        workspace.appending_task(task_id, log, sleep=0.05)

    runners = [workspace.start("run") for _ in range(8)]
    results = [(proc.wait(timeout=120), *proc.communicate()) for proc in runners]

    assert Counter(all_lines(log)) == Counter(ids), "every side effect exactly once"
    for code, stdout, stderr in results:
        assert code in (0, 1), stdout + stderr
        if code == 1:
            assert "lock held by" in stderr, stdout + stderr
            assert "Traceback" not in stderr
    assert any(code == 0 for code, *_ in results)

    status = json.loads(workspace.runce("status", "--json").stdout)
    assert {t["state"] for t in status["tasks"]} == {"APPLIED"}


def test_a_runner_killed_mid_task_leaves_it_interrupted_then_rerun(workspace: Workspace) -> None:
    started = workspace.root / "started"
    log = workspace.root / "done.log"
    workspace.appending_task("2025-01-01.first", log)
    workspace.task(
        "2025-01-02.slow",
        f"""
        import time

        @runce.task(title="slow")
        def run(ctx):
            open({str(started)!r}, "w").close()
            if not ctx.config.base_dir.joinpath("go-fast").exists():
                time.sleep(60)
            with open({str(log)!r}, "a") as handle:
                handle.write("2025-01-02.slow\\n")
        """,
    )
    workspace.write_config("[lock]\nttl = 2\n")

    victim = workspace.start("run")
    wait_for(started)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)

    status = json.loads(workspace.runce("status", "--json").stdout)
    states = {t["id"]: t["state"] for t in status["tasks"]}
    assert states == {"2025-01-01.first": "APPLIED", "2025-01-02.slow": "INTERRUPTED"}
    assert "INTERRUPTED" in workspace.runce("status").stdout

    (workspace.root / "go-fast").touch()
    # No --wait: a lock still held by the dead runner would fail this run at once (exit 1).
    rerun = workspace.runce("run")
    assert rerun.returncode == 0, output_of(rerun)
    assert "lock held" not in rerun.stderr
    assert "interrupted" in rerun.stdout
    assert all_lines(log) == ["2025-01-01.first", "2025-01-02.slow"]

    history = json.loads(workspace.runce("history", "2025-01-02.slow", "--json").stdout)
    assert [h["status"] for h in history] == ["interrupted", "succeeded"]


def test_sigterm_records_the_task_as_failed_and_releases_the_lock(
    sqlite_workspace: Workspace,
) -> None:
    started = sqlite_workspace.root / "started"
    sqlite_workspace.task(
        "2025-01-01.slow",
        f"""
        import time

        @runce.task
        def run(ctx):
            open({str(started)!r}, "w").close()
            time.sleep(60)
        """,
    )
    runner = sqlite_workspace.start("run")
    wait_for(started)
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=20) == 130
    history = json.loads(sqlite_workspace.runce("history", "--json").stdout)
    assert [h["status"] for h in history] == ["failed"]
    assert "KeyboardInterrupt" in history[0]["error_type"]
    assert json.loads(sqlite_workspace.runce("status", "--json").stdout)["lock"] is None


def test_a_waiting_runner_proceeds_when_the_holder_finishes(sqlite_workspace: Workspace) -> None:
    started = sqlite_workspace.root / "started"
    release = sqlite_workspace.root / "release"
    log: Path = sqlite_workspace.root / "log"
    sqlite_workspace.task(
        "2025-01-01.holder",
        f"""
        import os, time

        @runce.task
        def run(ctx):
            open({str(started)!r}, "w").close()
            deadline = time.monotonic() + 60
            while not os.path.exists({str(release)!r}) and time.monotonic() < deadline:
                time.sleep(0.02)
        """,
    )
    first = sqlite_workspace.start("run")
    wait_for(started)
    sqlite_workspace.appending_task("2025-01-02.after", log)
    second = sqlite_workspace.start("run", "--wait", "60")
    assert second.stderr is not None
    assert "waiting for the lock" in second.stderr.readline()  # it is waiting now
    release.touch()
    assert first.wait(timeout=60) == 0
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, out + err
    assert all_lines(log) == ["2025-01-02.after"]
