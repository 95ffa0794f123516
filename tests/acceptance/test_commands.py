"""The CLI as users meet it: quick start, drift and repair, make, status, unlock, db."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.acceptance.conftest import RUNCE, Workspace, clean_env, copy_example, output_of


def _run_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RUNCE, *args],
        cwd=folder,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_quick_start_applies_then_skips_everything(tmp_path: Path) -> None:
    example = copy_example(tmp_path / "quickstart")
    first = _run_in(example, "run")
    assert first.returncode == 0, output_of(first)
    assert first.stdout.count("OK ") == 3
    assert f"store: sqlite:///{example}/.runce/runce.db" in first.stdout
    assert (example / "var" / "plans.json").exists()

    second = _run_in(example, "run")
    assert second.returncode == 0, output_of(second)
    assert second.stdout.count("SKIP") == 3
    assert "OK " not in second.stdout
    assert "3 already applied" in second.stdout


def test_drift_is_refused_then_repaired_and_both_records_kept(sqlite_workspace: Workspace) -> None:
    path = sqlite_workspace.task("2025-01-01.backfill", "@runce.task\ndef run(ctx):\n    pass\n")
    assert sqlite_workspace.runce("run").returncode == 0
    path.write_text(path.read_text() + "# a later edit\n")

    refused = sqlite_workspace.runce("run")
    assert refused.returncode == 1
    assert str(path) in refused.stderr
    assert "runce repair 2025-01-01.backfill" in refused.stderr
    assert "DRIFTED" in sqlite_workspace.runce("status").stdout

    repaired = sqlite_workspace.runce("repair", "2025-01-01.backfill")
    assert repaired.returncode == 0, output_of(repaired)
    assert sqlite_workspace.runce("run").returncode == 0
    history = json.loads(sqlite_workspace.runce("history", "2025-01-01.backfill", "--json").stdout)
    assert [h["status"] for h in history] == ["succeeded", "repaired"]
    assert history[0]["checksum"] != history[1]["checksum"]


def test_make_writes_a_template_that_runs_as_is(sqlite_workspace: Workspace) -> None:
    made = sqlite_workspace.runce("make", "Init Queues")
    assert made.returncode == 0, output_of(made)
    [path] = sqlite_workspace.tasks.glob("*.py")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{6}\.init-queues\.py", path.name)
    assert str(path) in made.stdout

    status = json.loads(sqlite_workspace.runce("status", "--json").stdout)
    assert [(t["id"], t["state"]) for t in status["tasks"]] == [(path.stem, "PENDING")]
    assert sqlite_workspace.runce("status", "--fail-if-pending").returncode == 3

    ran = sqlite_workspace.runce("run")
    assert ran.returncode == 0, output_of(ran)
    assert sqlite_workspace.runce("status", "--fail-if-pending").returncode == 0


def test_status_fails_on_drift_when_asked(sqlite_workspace: Workspace) -> None:
    path = sqlite_workspace.task("2025-01-01.a", "@runce.task\ndef run(ctx):\n    pass\n")
    sqlite_workspace.runce("run")
    path.write_text(path.read_text() + "# edit\n")
    assert sqlite_workspace.runce("status", "--fail-if-pending").returncode == 1


def test_a_failing_task_exits_1_and_names_how_many_were_not_attempted(workspace: Workspace) -> None:
    workspace.task(
        "2025-01-01.bad", "@runce.task\ndef run(ctx):\n    raise ValueError('no bucket')\n"
    )
    workspace.task("2025-01-02.next", "@runce.task\ndef run(ctx):\n    pass\n")
    result = workspace.runce("run")
    assert result.returncode == 1
    assert "FAIL" in result.stdout
    assert "ValueError: no bucket" in result.stdout
    assert "1 later task not attempted" in result.stdout
    listed = json.loads(workspace.runce("list", "--json").stdout)
    assert [(r["id"], r["status"]) for r in listed] == [("2025-01-01.bad", "failed")]


def test_json_report_of_a_run(workspace: Workspace) -> None:
    workspace.task("2025-01-01.a", "@runce.task(title='A')\ndef run(ctx):\n    pass\n")
    report = json.loads(workspace.runce("run", "--json").stdout)
    assert report["ok"] is True
    assert report["tasks"] == [
        {
            "id": "2025-01-01.a",
            "outcome": "ok",
            "title": "A",
            "duration_ms": report["tasks"][0]["duration_ms"],
            "error": None,
            "note": None,
        }
    ]
    dry = json.loads(workspace.runce("run", "--dry-run", "--json").stdout)
    assert dry["dry_run"] is True


def test_unlock_shows_a_free_lock(workspace: Workspace) -> None:
    result = workspace.runce("unlock")
    assert result.returncode == 0
    assert "lock: free" in result.stdout


def test_db_commands_on_sqlite(sqlite_workspace: Workspace) -> None:
    before = json.loads(sqlite_workspace.runce("db", "status", "--json").stdout)
    assert before["current"] == 0
    assert not (sqlite_workspace.root / ".runce").exists(), "read-only commands create nothing"
    upgraded = sqlite_workspace.runce("db", "upgrade")
    assert upgraded.returncode == 0, output_of(upgraded)
    after = json.loads(sqlite_workspace.runce("db", "status", "--json").stdout)
    assert after["current"] == after["latest"] >= 1
    assert "CREATE TABLE" in sqlite_workspace.runce("db", "sql").stdout


def test_help_and_version() -> None:
    result = subprocess.run([RUNCE, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for command in (
        "run",
        "status",
        "list",
        "make",
        "repair",
        "baseline",
        "unlock",
        "history",
        "db",
    ):
        assert command in result.stdout
    run_help = subprocess.run([RUNCE, "run", "--help"], capture_output=True, text=True, check=False)
    assert "RUNCE_WAIT" in run_help.stdout
    version = subprocess.run([RUNCE, "--version"], capture_output=True, text=True, check=False)
    assert version.stdout.startswith("runce, version ")


def test_unlock_shows_and_clears_a_lock_left_by_a_dead_runner(sqlite_workspace: Workspace) -> None:
    import signal

    from tests.acceptance.conftest import wait_for

    started = sqlite_workspace.root / "started"
    sqlite_workspace.task(
        "2025-01-01.hang",
        f"import time\n@runce.task\ndef run(ctx):\n    open({str(started)!r}, 'w').close()\n"
        "    time.sleep(60)\n",
    )
    victim = sqlite_workspace.start("run")
    wait_for(started)
    held = sqlite_workspace.runce("unlock")
    assert "lock: held by" in held.stdout
    assert f"pid {victim.pid}" in held.stdout
    assert held.returncode == 1
    assert "runce unlock --force" in held.stderr

    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    cleared = sqlite_workspace.runce("unlock")
    assert cleared.returncode == 0, output_of(cleared)
    assert "left by a dead process" in cleared.stdout
    assert "cleared" in cleared.stdout
    assert "lock: free" in sqlite_workspace.runce("unlock").stdout


def test_repair_all_and_baseline_from_the_command_line(sqlite_workspace: Workspace) -> None:
    first = sqlite_workspace.task("2025-01-01.a", "@runce.task\ndef run(ctx):\n    pass\n")
    sqlite_workspace.runce("run")
    first.write_text(first.read_text() + "# edited\n")
    repaired = sqlite_workspace.runce("repair", "--all")
    assert repaired.returncode == 0, output_of(repaired)
    assert "REPAIRED" in repaired.stdout
    assert "nothing drifted" in sqlite_workspace.runce("repair", "--all").stdout

    sqlite_workspace.task("2025-02-01.old", "@runce.task\ndef run(ctx):\n    raise SystemExit(9)\n")
    baselined = sqlite_workspace.runce("baseline", "2025-02-01.old")
    assert baselined.returncode == 0, output_of(baselined)
    assert "BASELINED" in baselined.stdout
    assert "nothing to baseline" in sqlite_workspace.runce("baseline", "--all").stdout
    assert sqlite_workspace.runce("run").returncode == 0
    wrong = sqlite_workspace.runce("baseline")
    assert wrong.returncode == 2
    assert "name the tasks, or pass --all" in wrong.stderr


def test_empty_listings_say_so(sqlite_workspace: Workspace) -> None:
    assert "nothing applied yet" in sqlite_workspace.runce("list").stdout
    assert "no attempts yet" in sqlite_workspace.runce("history").stdout
    assert "no tasks yet" in sqlite_workspace.runce("status").stdout
