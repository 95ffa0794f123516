"""The real command refuses out-of-range numbers and empty selections with one sentence."""

from __future__ import annotations

import json

import pytest

from tests.acceptance.conftest import Workspace, assert_one_sentence

FINE = "@runce.task\ndef run(ctx):\n    pass\n"


def _pending(workspace: Workspace) -> list[str]:
    status = workspace.runce("status", "--json")
    assert status.returncode == 0, status.stderr
    return [t["id"] for t in json.loads(status.stdout)["tasks"] if t["state"] == "PENDING"]


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ("[lock]\nttl = 0\n", "lock.ttl"),
        ('[lock]\nttl = "99999999999d"\n', "lock.ttl"),
        ("[worker]\nlease = 0\n", "worker.lease"),
        ("[worker]\nconcurrency = 100000\n", "worker.concurrency"),
    ],
    ids=["ttl-zero", "ttl-absurd", "lease-zero", "concurrency-huge"],
)
def test_a_number_outside_its_range_in_the_config(
    sqlite_workspace: Workspace, settings: str, key: str
) -> None:
    sqlite_workspace.task("2025-01-01.fine", FINE)
    sqlite_workspace.write_config(settings)
    for command in (["run"], ["worker", "--drain"]):
        result = sqlite_workspace.runce(*command)
        assert result.returncode == 2, result
        assert_one_sentence(result.stderr, "runce.toml", key, "must be between")
    sqlite_workspace.write_config()
    assert _pending(sqlite_workspace) == ["2025-01-01.fine"]


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--concurrency", "0"],
        ["run", "--concurrency", "5000"],
        ["run", "--wait", "1e12"],
        ["worker", "--max-time", "1e12"],
        ["worker", "--concurrency", "5000"],
    ],
    ids=["run-concurrency-0", "run-concurrency-huge", "wait-huge", "max-time-huge", "worker-c"],
)
def test_an_option_outside_its_range(sqlite_workspace: Workspace, args: list[str]) -> None:
    sqlite_workspace.task("2025-01-01.fine", FINE)
    result = sqlite_workspace.runce(*args)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert "is not in the range" in result.stderr
    assert _pending(sqlite_workspace) == ["2025-01-01.fine"]


@pytest.mark.parametrize("only", ["", ",", " , "])
def test_an_empty_only_applies_nothing(workspace: Workspace, only: str) -> None:
    workspace.task("2025-01-01.one", FINE)
    workspace.task("2025-01-02.two", FINE)
    result = workspace.runce("run", "--only", only)
    assert result.returncode == 2, result
    assert_one_sentence(result.stderr, "--only names no task id")
    assert _pending(workspace) == ["2025-01-01.one", "2025-01-02.two"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--since", ""], "--since is empty"),
        (["run", "--until", ""], "--until is empty"),
        (["baseline", "--all", "--until", ""], "--until is empty"),
        (["worker", "--drain", "--kinds", ""], "--kinds names no job kind"),
        (["worker", "--drain", "--kinds", ","], "--kinds names no job kind"),
    ],
    ids=["since", "until", "baseline-until", "kinds-empty", "kinds-comma"],
)
def test_other_empty_selections(sqlite_workspace: Workspace, args: list[str], needle: str) -> None:
    sqlite_workspace.task("2025-01-01.one", FINE)
    result = sqlite_workspace.runce(*args)
    assert result.returncode == 2, result
    assert_one_sentence(result.stderr, needle)
    assert _pending(sqlite_workspace) == ["2025-01-01.one"]
