"""`runce run` with nothing to do answers without loading runce's machinery (runce.cli.quick):
the same output as the full command, and the full command whenever anything is uncertain."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.conftest import Workspace, output_of

MANY = 12  # more than the run lists one by one


@pytest.fixture
def applied(tmp_path: Path) -> Workspace:
    space = Workspace(tmp_path, "sqlite:///.runce/runce.db")
    for n in range(MANY):
        space.task(f"2026-01-01T0000{n:02d}.noop", "@runce.task()\ndef run(ctx):\n    pass\n")
    first = space.runce("run")
    assert first.returncode == 0, output_of(first)
    return space


def _same_but_time(text: str) -> str:
    return re.sub(r" in \d+\.\d+s$", " in Ns", text.strip())


def _quick_was_used(space: Workspace, *args: str) -> bool:
    """Whether ``runce run`` answered without importing the full command line."""
    probe = (
        "import sys\nfrom runce.cli import main\ntry:\n    main(sys.argv[1:])\nfinally:\n"
        "    print('full' if 'runce.cli.main' in sys.modules else 'quick', file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *args],
        cwd=space.root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stderr.strip().splitlines()[-1] == "quick"


def test_an_idle_run_prints_what_the_full_command_prints(applied: Workspace) -> None:
    quick = applied.runce("run")
    full = applied.runce("run", RUNCE_CONCURRENCY="1")  # any RUNCE_ variable: the full way
    assert (quick.returncode, full.returncode) == (0, 0)
    assert _same_but_time(quick.stdout) == _same_but_time(full.stdout)
    assert f"{MANY} tasks already applied" in quick.stdout
    assert quick.stderr == full.stderr == ""
    assert _quick_was_used(applied, "run")
    assert not _quick_was_used(applied, "run", "--dry-run")


def test_a_pending_task_goes_the_full_way_and_runs(applied: Workspace) -> None:
    marker = applied.root / "ran"
    applied.task(
        "2026-02-01T000000.late",
        f"@runce.task()\ndef run(ctx):\n    open({str(marker)!r}, 'w').close()\n",
    )
    done = applied.runce("run")
    assert done.returncode == 0, output_of(done)
    assert marker.exists()
    assert "OK " in done.stdout


def test_a_changed_file_goes_the_full_way_and_is_refused(applied: Workspace) -> None:
    first = sorted(applied.tasks.iterdir())[0]
    first.write_text(first.read_text() + "# changed\n")
    assert not _quick_was_used(applied, "run")
    done = applied.runce("run")
    assert done.returncode != 0
    assert "changed after it was applied" in done.stderr


@pytest.mark.parametrize(
    "change",
    [
        "config-key",
        "interpolated",
        "pyproject",
        "no-config",
        "few-tasks",
        "open-attempt",
        "old-schema",
        "no-tasks-dir",
        "other-store",
    ],
)
def test_anything_uncertain_goes_the_full_way(applied: Workspace, change: str) -> None:
    root = applied.root
    database = root / ".runce" / "runce.db"
    if change == "config-key":
        applied.write_config('on_drift = "warn"\n')
    elif change == "interpolated":
        (root / "runce.toml").write_text('store = "sqlite:///${DB:-.runce/runce.db}"\n')
    elif change == "pyproject":
        (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    elif change == "no-config":
        (root / "runce.toml").unlink()
    elif change == "few-tasks":
        for path in sorted(applied.tasks.iterdir())[: MANY - 3]:
            path.unlink()
    elif change == "open-attempt":
        with sqlite3.connect(database) as conn:  # as a runner that died mid-task leaves it
            names = [row[1] for row in conn.execute("PRAGMA table_info(runce_history)")]
            started = {"attempt_id": "'open-1'", "status": "'started'"}
            picked = [
                started.get(n, "NULL" if n in ("finished_at", "duration_ms") else n) for n in names
            ]
            conn.execute(
                f"INSERT INTO runce_history ({', '.join(names)}) SELECT {', '.join(picked)} "
                "FROM runce_history WHERE rowid = (SELECT max(rowid) FROM runce_history)"
            )
    elif change == "old-schema":
        with sqlite3.connect(database) as conn:
            conn.execute("PRAGMA user_version = 1")
    elif change == "no-tasks-dir":
        applied.write_config('tasks_dir = "elsewhere"\n')
    elif change == "other-store":
        (root / "runce.toml").write_text('store = "sqlite:///.runce/other db.db"\n')
    assert not _quick_was_used(applied, "run")
