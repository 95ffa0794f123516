"""The CLI in-process (click's runner): terminal output, health checks and run options."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from runce.cli import output
from runce.cli.main import cli
from runce.domain.runs import WorkerInfo
from runce.runs import library
from runce.runtime import shared_store
from runce.stores import memory


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "runce.toml").write_text(f'store = "memory://{uuid.uuid4().hex}"\n')
    yield tmp_path
    memory.reset()
    library._configs.clear()


def _invoke(project: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli, [*args, "--config", str(project / "runce.toml")], catch_exceptions=False
    )


def test_a_run_on_a_terminal_shows_live_progress(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "tasks" / "2025-01-01.steps.py").write_text(
        "import runce\n@runce.task(title='steps')\ndef run(ctx):\n"
        "    for i in range(3):\n"
        "        ctx.progress(i + 1, 3)\n"
        "        ctx.log.info('step %d', i)\n"
    )
    monkeypatch.setattr(output, "is_terminal", lambda: True)
    result = _invoke(project, "run")
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    assert "2025-01-01.steps" in result.output


def test_healthcheck_needs_a_fresh_worker_on_this_host(project: Path) -> None:
    missing = _invoke(project, "healthcheck")
    assert missing.exit_code == 1
    import socket

    queue = library.queue_of(shared_store(library._config(project / "runce.toml").store))
    now = queue.now()
    queue.worker_seen(
        WorkerInfo(
            id="w1",
            host=socket.gethostname(),
            pid=1,
            started_at=now,
            last_seen=now - timedelta(hours=1),
            concurrency=1,
        )
    )
    stale = _invoke(project, "healthcheck")
    assert stale.exit_code == 1
    assert "older than" in stale.output
    queue.worker_seen(
        WorkerInfo(
            id="w1", host=socket.gethostname(), pid=1, started_at=now, last_seen=now, concurrency=1
        )
    )
    fresh = _invoke(project, "healthcheck")
    assert fresh.exit_code == 0, fresh.output
    listed = _invoke(project, "workers")
    assert "w1" in listed.output


def test_run_at_takes_a_delay_or_a_time(project: Path) -> None:
    later = _invoke(project, "runs", "enqueue", "x", "--any-kind", "--run-at", "+10m", "--json")
    assert later.exit_code == 0, later.output
    at = _invoke(
        project, "runs", "enqueue", "x", "--any-kind", "--run-at", "2030-01-31T09:00", "--json"
    )
    assert '"run_at": "2030-01-31T09:00:00Z"' in at.output
    bad = CliRunner().invoke(
        cli,
        [
            "runs",
            "enqueue",
            "x",
            "--any-kind",
            "--run-at",
            "soon",
            "--config",
            str(project / "runce.toml"),
        ],
    )
    assert bad.exit_code != 0
    assert "not an ISO-8601 time" in str(bad.exception)
    listed = _invoke(project, "runs", "list", "--state", "queued")
    assert listed.output.count("QUEUED") == 2


def test_tail_on_a_terminal_ends_with_the_run(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = library.enqueue("x", {}, config=project / "runce.toml")
    library.cancel_run(run.id, config=project / "runce.toml")
    monkeypatch.setattr(output, "is_terminal", lambda: True)
    result = CliRunner().invoke(
        cli, ["runs", "tail", run.id, "--config", str(project / "runce.toml")]
    )
    assert result.exit_code == 4
    assert "CANCELED" in result.output


def test_status_and_retry_of_a_canceled_run(project: Path) -> None:
    run = library.enqueue("x", {"a": 1}, config=project / "runce.toml")
    _invoke(project, "runs", "cancel", run.id, "--yes")
    shown = _invoke(project, "runs", "status", run.id)
    assert "CANCELED" in shown.output
    retried = _invoke(project, "runs", "retry", run.id)
    assert "queued" in retried.output
    assert "attempt 1 of 1" in retried.output


def test_the_input_can_come_from_stdin(project: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "runs",
            "enqueue",
            "x",
            "--any-kind",
            "--stdin",
            "--json",
            "--config",
            str(project / "runce.toml"),
        ],
        input='{"from": "stdin"}',
    )
    assert result.exit_code == 0, result.output
    assert '"from": "stdin"' in result.output


def test_help_lists_the_job_queue_commands_that_load_lazily() -> None:
    import subprocess
    import sys

    probe = "import sys, runce.cli; print('runce.cli.runs' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert loaded.stdout.strip() == "False", "runce run must not import the queue's commands"
    shown = CliRunner().invoke(cli, ["--help"])
    assert shown.exit_code == 0
    for name in ("run", "status", "worker", "workers", "healthcheck", "runs"):
        assert f"\n  {name} " in shown.output, name
    assert CliRunner().invoke(cli, ["runs", "--help"]).exit_code == 0
