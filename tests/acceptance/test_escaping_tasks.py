"""Task code that escapes (sys.exit, unprintable errors, a raising already_done, Ctrl-C)
fails its task: recorded, reported in one line, exit 1 (130 for Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.acceptance.conftest import Workspace, output_of, wait_for

LATER = "@runce.task\ndef run(ctx):\n    pass\n"


def _history(workspace: Workspace) -> list[dict[str, object]]:
    result = workspace.runce("history", "--json")
    assert result.returncode == 0, output_of(result)
    history: list[dict[str, object]] = json.loads(result.stdout)
    return history


def test_a_task_calling_sys_exit_fails_and_stops_the_run(workspace: Workspace) -> None:
    workspace.task("2025-01-01.exits", "import sys\n@runce.task\ndef run(ctx):\n    sys.exit(0)\n")
    workspace.task("2025-01-02.later", LATER)
    result = workspace.runce("run", "--keep-going")
    assert result.returncode == 1, output_of(result)
    assert "Traceback" not in output_of(result)
    assert "the task called sys.exit(0)" in result.stdout
    assert [(h["task_id"], h["status"]) for h in _history(workspace)] == [
        ("2025-01-01.exits", "failed")
    ]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("@runce.task\ndef run(ctx):\n    raise ValueError('bad \\ud800 \\x00 text')\n", "\\ud800"),
        (
            "class Odd(Exception):\n    def __str__(self):\n        raise TypeError('no')\n\n"
            "@runce.task\ndef run(ctx):\n    raise Odd()\n",
            "could not be read",
        ),
        (
            "def check(ctx):\n    raise LookupError('cannot tell')\n\n"
            "@runce.task(already_done=check)\ndef run(ctx):\n    pass\n",
            "cannot tell",
        ),
    ],
    ids=["surrogate-and-nul", "str-raises", "already-done-raises"],
)
def test_an_unprintable_failure_is_recorded(workspace: Workspace, body: str, needle: str) -> None:
    workspace.task("2025-01-01.odd", body)
    result = workspace.runce("run")
    assert result.returncode == 1, output_of(result)
    assert "Traceback" not in output_of(result)
    assert needle in result.stdout
    [attempt] = _history(workspace)
    assert attempt["status"] == "failed"
    assert needle in str(attempt["error_message"])
    again = workspace.runce("status", "--json")
    assert [t["state"] for t in json.loads(again.stdout)["tasks"]] == ["FAILED"]


def _signal_masks(pid: int, tid: int | None = None) -> str:
    """Each thread's blocked, ignored, caught and pending signals, from /proc (hex masks)."""
    keys = ("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
    tasks = Path(f"/proc/{pid}/task")
    lines = []
    for task in sorted(tasks.iterdir()) if tasks.exists() else []:
        if tid is not None and task.name != str(tid):
            continue
        status = (task / "status").read_text().splitlines()
        found = [line.replace("\t", " ") for line in status if line.split(":")[0] in keys]
        lines.append(f"{task.name}: " + ", ".join(found))
    return "\n".join(lines)


def test_ctrl_c_stops_the_runner_and_says_so(sqlite_workspace: Workspace) -> None:
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
    sqlite_workspace.task("2025-01-02.later", LATER)
    # With faulthandler on, a runner that does not stop says where each of its threads is.
    runner = sqlite_workspace.start("run", PYTHONFAULTHANDLER="1")
    wait_for(started)
    runner.send_signal(signal.SIGINT)
    try:
        _, stderr = runner.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        masks = _signal_masks(runner.pid)
        runner.send_signal(signal.SIGABRT)
        _, stuck = runner.communicate(timeout=30)
        pytest.fail(
            f"the runner did not stop within 30 s of Ctrl-C; its signal masks:\n{masks}\n"
            f"the test's own: {_signal_masks(os.getpid(), threading.get_native_id())}\n"
            f"its threads:\n{stuck}"
        )
    assert runner.returncode == 130
    assert "interrupted by Ctrl-C" in stderr
    assert "Traceback" not in stderr
    [attempt] = _history(sqlite_workspace)
    assert attempt["status"] == "failed"
    assert attempt["error_message"] == "interrupted by Ctrl-C"
