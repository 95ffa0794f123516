"""`runce run` and `runce status` with every task applied answer without loading runce's
machinery (runce.cli.quick): the same output as the full command, and the full command
whenever anything is uncertain."""

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


@pytest.mark.parametrize("command", ["run", "status"])
def test_the_quick_answer_is_what_the_full_command_prints(applied: Workspace, command: str) -> None:
    quick = applied.runce(command)
    full = applied.runce(command, RUNCE_CONCURRENCY="1")  # any RUNCE_ variable: the full way
    assert (quick.returncode, full.returncode) == (0, 0)
    assert _same_but_time(quick.stdout) == _same_but_time(full.stdout)
    assert quick.stderr == full.stderr == ""
    assert _quick_was_used(applied, command)
    assert not _quick_was_used(applied, command, "--json")


def test_the_quick_path_shares_the_full_commands_settings() -> None:
    import importlib

    from runce import config
    from runce.cli import quick

    full = importlib.import_module("runce.cli.tasks")
    assert quick.MAX_SKIP_LINES == full.MAX_SKIP_LINES
    assert quick.CONFIG_FILES == config.CONFIG_FILES
    assert quick.DEFAULT_STORE_URL == config.DEFAULT_STORE_URL
    defaults = {key.name: key.default for key in config.KEYS}
    assert defaults["tasks_dir"] == quick.DEFAULT_TASKS_DIR


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
        "lock-held",
        "file-gone",
        "failed-record",
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
    elif change == "lock-held":  # status names the holder; run would still answer
        with sqlite3.connect(database) as conn:
            conn.execute(
                "INSERT INTO runce_lock (name, token, owner) VALUES ('global', 't', 'someone')"
            )
        assert not _quick_was_used(applied, "status")
        return
    elif change == "file-gone":  # status lists it as MISSING; run ignores it
        sorted(applied.tasks.iterdir())[0].unlink()
        assert not _quick_was_used(applied, "status")
        return
    elif change == "failed-record":
        with sqlite3.connect(database) as conn:
            conn.execute("UPDATE runce_applied SET status = 'failed' WHERE rowid = 1")
    assert not _quick_was_used(applied, "status")
    assert not _quick_was_used(applied, "run")  # last: the full run may change the store
