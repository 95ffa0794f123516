"""The command line as a machine contract: every ``--json`` output parses, its keys are
snake_case and its times RFC 3339 UTC ending in ``Z`` (``runce list --json`` keeps the
seed's field names); errors under ``--json`` are one JSON object on stderr; a name that
matches nothing exits 5."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, get_args

import pytest

from runce.domain.tasks import AppliedStatus
from tests.acceptance.conftest import Workspace, output_of, stores_for

JOBS = """
import runce

runce.schedule("0 0 1 1 *", "fine.job", {"source": "cron"}, name="new_year")


@runce.job("fine.job")
def fine(params, ctx):
    return {"done_for": params.get("source")}


@runce.job("bad.job", max_attempts=1)
def bad(params, ctx):
    raise RuntimeError("no luck")
"""

SNAKE = re.compile(r"[a-z][a-z0-9_]*")
A_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
SEED_FIELDS = ["id", "name", "checksum", "appliedAt", "durationMs", "status", "error"]


@pytest.fixture
def space(tmp_path: Path) -> Workspace:
    settings = '[worker]\nhandlers = ["jobs"]\nlease = 6\npoll = 0.2\nshutdown_timeout = 1\n'
    made = Workspace(tmp_path, stores_for(tmp_path)["sqlite"], settings)
    (made.root / "jobs.py").write_text(JOBS)
    made.task("20260101_first", "@runce.task()\ndef run(ctx):\n    pass\n")
    made.task("20260102_second", "@runce.task()\ndef run(ctx):\n    pass\n")
    return made


def check_shape(value: Any, where: str = "$") -> None:
    """Keys snake_case, times ending in Z, all the way down."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert SNAKE.fullmatch(key), f"{where}: key {key!r} is not snake_case"
            check_shape(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_shape(item, f"{where}[{index}]")
    elif isinstance(value, str) and A_TIME.match(value):
        assert value.endswith("Z"), f"{where}: time {value!r} does not end in Z"


def machine(space: Workspace, *args: str, code: int = 0) -> Any:
    """Run a command with --json, check its exit code and return the parsed stdout."""
    done = space.runce(*args, "--json")
    assert done.returncode == code, output_of(done)
    data = json.loads(done.stdout)
    check_shape(data, " ".join(args))
    return data


def error_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON error object a failed --json command wrote on stderr."""
    assert done.stdout == "", output_of(done)
    error: dict[str, Any] = json.loads(done.stderr)["error"]
    assert set(error) == {"type", "message", "exit_code"}
    assert error["exit_code"] == done.returncode
    return error


def test_every_json_output_is_snake_case_with_z_times(space: Workspace) -> None:
    machine(space, "run", "--only", "20260101_first")
    machine(space, "baseline", "20260102_second")
    machine(space, "status")
    machine(space, "history")
    machine(space, "db", "status")
    assert machine(space, "unlock") == {"lock": None, "cleared": False}
    (space.tasks / "20260101_first.py").write_text(
        "import runce\n@runce.task()\ndef run(ctx):\n    print('changed')\n"
    )
    [repaired] = machine(space, "repair", "20260101_first")
    assert (repaired["task_id"], repaired["status"]) == ("20260101_first", "repaired")

    fine = machine(space, "runs", "enqueue", "fine.job", "--input", '{"n": 1}')
    bad = machine(space, "runs", "enqueue", "bad.job")
    machine(space, "worker", "--drain")
    assert machine(space, "runs", "tail", fine["id"])["state"] == "succeeded"
    assert machine(space, "runs", "tail", bad["id"], code=1)["state"] == "failed"
    assert machine(space, "runs", "retry", bad["id"])["state"] == "queued"
    assert machine(space, "runs", "cancel", bad["id"], "--yes")["state"] == "canceled"
    assert machine(space, "runs", "status", fine["id"])["attempts"] == []
    newest = machine(space, "runs", "list")["runs"]
    oldest = machine(space, "runs", "list", "--order", "oldest")["runs"]
    assert [r["id"] for r in oldest] == [fine["id"], bad["id"]]
    assert [r["id"] for r in newest] == [bad["id"], fine["id"]]
    assert machine(space, "runs", "prune") == {"pruned": 0}
    machine(space, "workers")

    assert machine(space, "schedules", "enable", "new_year")["enabled"] is True
    assert machine(space, "schedules", "disable", "new_year")["enabled"] is False
    machine(space, "schedules", "list")


def test_list_json_keeps_the_seed_field_names(space: Workspace) -> None:
    machine(space, "run")
    done = space.runce("list", "--json")
    assert done.returncode == 0, output_of(done)
    records = json.loads(done.stdout)
    assert [list(r) for r in records] == [SEED_FIELDS, SEED_FIELDS]
    assert {r["status"] for r in records} == {"success"}
    assert all(r["appliedAt"].endswith("Z") for r in records)


def test_list_json_says_each_status_its_help_and_cli_md_name(space: Workspace) -> None:
    """A task applied, one whose already_done said the work was there and one that failed:
    every status `runce list --json` can print appears, and its help and docs/cli.md name
    each one."""
    space.task(
        "20260103_there", "@runce.task(already_done=lambda ctx: True)\ndef run(ctx):\n    pass\n"
    )
    space.task("20260104_broken", "@runce.task()\ndef run(ctx):\n    raise RuntimeError('no')\n")
    assert space.runce("run", "--keep-going").returncode == 1
    done = space.runce("list", "--json")
    assert done.returncode == 0, output_of(done)
    shown = {r["id"]: r["status"] for r in json.loads(done.stdout)}
    assert shown == {
        "20260101_first": "success",
        "20260102_second": "success",
        "20260103_there": "skipped",
        "20260104_broken": "failed",
    }
    assert set(shown.values()) == set(get_args(AppliedStatus))
    helped = " ".join(space.runce("list", "--help").stdout.split())
    documented = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for status in get_args(AppliedStatus):
        assert status in helped.partition("status (")[2].partition(")")[0], helped
        assert f"`{status}`" in documented.partition("`status` is ")[2].partition(";")[0]


def test_an_unknown_name_exits_5_with_a_json_error(space: Workspace) -> None:
    space.runce("db", "upgrade")
    for args, kind in (
        (["runs", "tail", "no-such-run"], "UnknownRun"),
        (["runs", "status", "no-such-run"], "UnknownRun"),
        (["runs", "cancel", "no-such-run", "--yes"], "UnknownRun"),
        (["runs", "retry", "no-such-run"], "UnknownRun"),
        (["schedules", "enable", "no_such_schedule"], "UnknownSchedule"),
        (["pause", "20991231_nothing"], "UnknownTask"),
        (["repair", "20991231_nothing"], "UnknownTask"),
    ):
        done = space.runce(*args, "--json")
        assert done.returncode == 5, output_of(done)
        assert error_of(done)["type"] == kind
        plain = space.runce(*args)
        assert plain.returncode == 5, output_of(plain)
        assert plain.stderr.splitlines()[-1].startswith("runce: "), output_of(plain)


def test_usage_errors_under_json_are_json_too(space: Workspace) -> None:
    bad_choice = space.runce("runs", "list", "--order", "sideways", "--json")
    assert bad_choice.returncode == 2
    error = error_of(bad_choice)
    assert error["type"] == "UsageError"
    assert "sideways" in error["message"]
    bad_input = space.runce("runs", "enqueue", "fine.job", "--input", "{nope", "--json")
    assert bad_input.returncode == 2
    assert error_of(bad_input)["type"] == "InvalidInput"
