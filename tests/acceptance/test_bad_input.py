"""Bad input: one clear sentence naming the file or key, a non-zero exit, nothing recorded."""

from __future__ import annotations

import json
import os

import pytest

from tests.acceptance.conftest import Workspace, assert_one_sentence


def _nothing_recorded(workspace: Workspace) -> None:
    history = workspace.runce("history", "--json")
    if history.returncode == 0:
        assert json.loads(history.stdout) == []


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ("def run(ctx)\n    pass\n", ["2025-01-02.broken.py", "line 2", "syntax error"]),
        (
            "raise RuntimeError('no config for the queue')\n",
            ["2025-01-02.broken.py", "line 2", "RuntimeError", "no config for the queue"],
        ),
        ("def run(ctx):\n    pass\n", ["2025-01-02.broken.py", "defines no runce.Task"]),
    ],
    ids=["syntax-error", "raises-on-import", "no-task"],
)
def test_a_broken_task_file(workspace: Workspace, body: str, needles: list[str]) -> None:
    workspace.task("2025-01-01.fine", "@runce.task\ndef run(ctx):\n    pass\n")
    workspace.task("2025-01-02.broken", body)
    result = workspace.runce("run")
    assert result.returncode == 2
    assert_one_sentence(result.stderr, *needles)
    _nothing_recorded(workspace)


def test_two_files_with_one_id(workspace: Workspace) -> None:
    workspace.task("2025-01-01.same", "@runce.task\ndef run(ctx):\n    pass\n")
    (workspace.tasks / "2025").mkdir()
    (workspace.tasks / "2025" / "2025-01-01.same.py").write_text("")
    result = workspace.runce("run")
    assert result.returncode == 2
    assert_one_sentence(result.stderr, "two task files have the id", "2025-01-01.same")
    _nothing_recorded(workspace)


@pytest.mark.parametrize(
    ("config", "needles"),
    [
        ('store = "sqlite:///x.db"\nlokc = { ttl = 3 }\n', ["runce.toml", "unknown key 'lokc'"]),
        ('store = "sqlite:///x.db"\n[lock]\nttl = "soon"\n', ["runce.toml", "lock.ttl"]),
        ('store = "sqlite:///x.db"\non_drift = 3\n', ["runce.toml", "on_drift"]),
        ('store = "redis://localhost/0"\n', ["runce.toml", "store", "redis"]),
        ('store = "sqlite:///x.db\n', ["runce.toml", "not valid TOML"]),
    ],
    ids=["unknown-key", "wrong-duration", "wrong-choice", "unknown-scheme", "bad-toml"],
)
def test_a_bad_config(workspace: Workspace, config: str, needles: list[str]) -> None:
    workspace.task("2025-01-01.fine", "@runce.task\ndef run(ctx):\n    pass\n")
    (workspace.root / "runce.toml").write_text(config)
    result = workspace.runce("run")
    assert result.returncode == 2
    assert_one_sentence(result.stderr, *needles)
    assert not (workspace.root / "x.db").exists()


def test_an_unwritable_sqlite_path(workspace: Workspace) -> None:
    if os.geteuid() == 0:
        target = "sqlite:////proc/runce/runce.db"  # not creatable even by root
    else:
        target = "sqlite:////runce-not-allowed/runce.db"
    workspace.task("2025-01-01.fine", "@runce.task\ndef run(ctx):\n    pass\n")
    result = workspace.runce("run", RUNCE_STORE_URL=target)
    assert result.returncode == 2
    assert_one_sentence(result.stderr, "/proc/runce" if os.geteuid() == 0 else "/runce-not-allowed")


def test_a_bad_env_value_names_the_variable(workspace: Workspace) -> None:
    result = workspace.runce("status", RUNCE_LOCK_TTL="forever")
    assert result.returncode == 2
    assert_one_sentence(result.stderr, "RUNCE_LOCK_TTL", "lock.ttl")


def test_a_missing_tasks_folder(workspace: Workspace) -> None:
    workspace.tasks.rmdir()
    result = workspace.runce("run")
    assert result.returncode == 2
    assert_one_sentence(result.stderr, "tasks folder", "does not exist")


def test_unknown_option_is_a_usage_error(workspace: Workspace) -> None:
    result = workspace.runce("run", "--colour")
    assert result.returncode == 2
    assert "No such option" in result.stderr
