"""Bad run input through the real `runce runs` commands, on every store with a queue: one
sentence and exit 2, nothing stored; and a row no store should hold stops no other run."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest

from tests.acceptance.conftest import Workspace, assert_one_sentence, output_of
from tests.acceptance.test_runs import qspace  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow

# Arguments after `runce runs enqueue`, and what the sentence names. "\udcff" reaches the
# command as the byte 0xff, which Python reads back as that lone surrogate.
BAD_ENQUEUES: list[tuple[list[str], list[str]]] = [
    (["k", "--input", '{"a": "\\ud800"}'], ["input['a']", "lone surrogate"]),
    (["k", "--input", '{"a": "\\u0000"}'], ["input['a']", "NUL"]),
    (["k", "--input", "[" * 1000 + "]" * 1000], ["nested deeper than 64 levels"]),
    (["k", "--input", '{"n": 9223372036854775808}'], ["input['n']", "signed 64-bit"]),
    (["k", "--input", "[-9223372036854775809]"], ["input[0]", "signed 64-bit"]),
    (["k\udcff"], ["kind", "lone surrogate"]),
    (["k", "--project", "p\udcff"], ["project_id", "lone surrogate"]),
    (["k", "--idempotency-key", "k\udcff"], ["idempotency key", "lone surrogate"]),
    (["k", "--max-attempts", "99999999999999999999"], ["--max-attempts"]),
    (["k", "--priority", "9223372036854775808"], ["--priority"]),
    (["k", "--run-at", "+99999999999d"], ["--run-at", "out of range"]),
    (["k", "--run-at", "0001-01-01T00:00"], ["--run-at", "out of range", "1970 to 9999"]),
]


def test_bad_run_input_is_one_sentence_exit_2_and_nothing_stored(qspace: Workspace) -> None:  # noqa: F811
    for args, needles in BAD_ENQUEUES:
        result = qspace.runce("runs", "enqueue", "--any-kind", *args)
        assert result.returncode == 2, (args, output_of(result))
        assert_one_sentence(result.stderr, *needles)
    listed = qspace.runce("runs", "list", "--json")
    assert listed.returncode == 0, output_of(listed)
    assert json.loads(listed.stdout)["runs"] == []


def test_an_unreadable_row_is_listed_and_failed_while_the_others_run(
    sqlite_workspace: Workspace,
) -> None:
    space = sqlite_workspace
    space.settings = '[worker]\nhandlers = ["jobs"]\nlease = 6\npoll = 0.2\n'
    space.write_config()
    (space.root / "jobs.py").write_text(
        "import runce\n\n@runce.job('noop.record')\ndef noop(params):\n    return params\n"
    )
    ids = []
    for n in range(4):
        made = space.runce("runs", "enqueue", "noop.record", "--input", json.dumps({"n": n}))
        assert made.returncode == 0, output_of(made)
        ids.append(made.stdout.strip())
    with closing(sqlite3.connect(space.root / ".runce" / "runce.db")) as conn, conn:
        conn.execute(  # what SQLite's JSON functions once made of "\ud800": not UTF-8
            "UPDATE runce_runs SET input = CAST(x'7b2261223a22eda080227d' AS TEXT) WHERE id = ?",
            (ids[1],),
        )

    listed = space.runce("runs", "list")
    assert listed.returncode == 0, output_of(listed)
    assert ids[1] in listed.stdout
    canceled = space.runce("runs", "cancel", "--yes", ids[3])
    assert canceled.returncode == 0, output_of(canceled)
    worked = space.runce("worker", "--drain", "--max-time", "60", timeout=120)
    assert worked.returncode == 0, output_of(worked)

    states = {
        run["id"]: run for run in json.loads(space.runce("runs", "list", "--json").stdout)["runs"]
    }
    assert [states[i]["state"] for i in ids] == ["succeeded", "failed", "succeeded", "canceled"]
    assert states[ids[1]]["input"].startswith("<unreadable: ")
    assert states[ids[1]]["error"].startswith("InvalidInput: its stored input cannot be read: ")


# -- configuration and task files: a sentence, not a traceback ---------------------------------


def test_a_config_file_that_is_not_utf8_is_one_sentence(sqlite_workspace: Workspace) -> None:
    space = sqlite_workspace
    (space.root / "runce.toml").write_bytes(b'store = "sqlite:///x.db"\n# caf\xe9\n')
    result = space.runce("status")
    assert result.returncode == 2, output_of(result)
    assert_one_sentence(result.stderr, "runce.toml", "not UTF-8")
    (space.root / "runce.toml").unlink()
    (space.root / "pyproject.toml").write_bytes(b'[tool.runce]\nstore = "sqlite:///\xff.db"\n')
    result = space.runce("status", "--config", "pyproject.toml")
    assert result.returncode == 2, output_of(result)
    assert_one_sentence(result.stderr, "pyproject.toml", "not UTF-8")


def test_a_task_file_with_a_nul_byte_is_named_without_a_line(sqlite_workspace: Workspace) -> None:
    path = sqlite_workspace.task("2025-01-01.nul", "@runce.task\ndef run(ctx):\n    pass\n")
    path.write_bytes(path.read_bytes() + b"# \x00\n")
    result = sqlite_workspace.runce("run")
    assert result.returncode == 2, output_of(result)
    assert_one_sentence(result.stderr, "2025-01-01.nul.py", "null bytes")
    assert "line None" not in result.stderr


def test_a_tasks_dir_that_is_a_file_is_said_to_be_one(sqlite_workspace: Workspace) -> None:
    (sqlite_workspace.root / "jobs").write_text("")
    sqlite_workspace.write_config('tasks_dir = "jobs"\n')
    result = sqlite_workspace.runce("run")
    assert result.returncode == 2, output_of(result)
    assert_one_sentence(result.stderr, "jobs", "is a file, not a folder")
    made = sqlite_workspace.runce("make", "first")
    assert made.returncode == 2, output_of(made)
    assert_one_sentence(made.stderr, "jobs", "is a file, not a folder")


def test_make_with_a_very_long_name_makes_a_file_with_a_short_name(
    sqlite_workspace: Workspace,
) -> None:
    result = sqlite_workspace.runce("make", "backfill the orders " * 250)
    assert result.returncode == 0, output_of(result)
    [made] = sqlite_workspace.tasks.glob("*.py")
    assert len(made.name) <= 100
    assert made.name.endswith(
        ".backfill-the-orders-backfill-the-orders-backfill-the-orders-backfill-the-orders.py"
    )
    assert sqlite_workspace.runce("status").returncode == 0
