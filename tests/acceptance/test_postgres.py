"""The real ``runce`` command on PostgreSQL: transactional tasks, the advisory lock seen and
lost with its session, many first runs on an empty database, connection errors and the
``db`` commands. The tests every store shares run here too, through ``workspace``."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runce.stores.postgres.queries import MIGRATIONS
from tests import services
from tests.acceptance.conftest import (
    Workspace,
    all_lines,
    assert_one_sentence,
    output_of,
    wait_for,
)

pytestmark = pytest.mark.slow

# A lease far longer than any test: whatever frees the lock here, it is not its expiry.
LONG_TTL = "lock = { ttl = 60 }\n"


@pytest.fixture
def pg(postgres_server: str, tmp_path: Path) -> Iterator[Workspace]:
    """A workspace on the test PostgreSQL, in a schema of its own, with a 60 s lock ttl."""
    schema = f"runce_t_{uuid.uuid4().hex[:12]}"
    space = Workspace(tmp_path, postgres_server, f'schema = "{schema}"\n{LONG_TTL}')
    yield space
    space.reap()
    services.drop_schema(postgres_server, schema)


@pytest.fixture
def user_table(postgres_server: str) -> Iterator[str]:
    """A table the tasks own, in a schema of the user's (never runce's)."""
    schema = f"app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.things (name text)")
    yield f"{schema}.things"
    services.drop_schema(postgres_server, schema)


def _rows(url: str, table: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute(f"SELECT name FROM {table}")]


def _states(workspace: Workspace) -> dict[str, str]:
    status = json.loads(workspace.runce("status", "--json").stdout)
    return {t["id"]: t["state"] for t in status["tasks"]}


def _transactional_task(workspace: Workspace, task_id: str, table: str, fail: bool) -> None:
    ending = "raise RuntimeError('failed after inserting')" if fail else "pass"
    workspace.task(
        task_id,
        f"""
        @runce.task(title="fill things", transactional=True)
        def run(ctx):
            ctx.db.execute("INSERT INTO {table} (name) VALUES ('one'), ('two')")
            {ending}
        """,
    )


# --- transactional tasks (T-7) --------------------------------------------------------------


def test_a_failing_transactional_task_leaves_neither_rows_nor_an_applied_record(
    pg: Workspace, postgres_server: str, user_table: str
) -> None:
    _transactional_task(pg, "2025-01-01.fill", user_table, fail=True)
    result = pg.runce("run")
    assert result.returncode == 1, output_of(result)
    assert "failed after inserting" in output_of(result)
    assert _rows(postgres_server, user_table) == []
    assert _states(pg) == {"2025-01-01.fill": "FAILED"}
    [record] = json.loads(pg.runce("list", "--json").stdout)
    assert record["status"] == "failed"


def test_a_succeeding_transactional_task_leaves_rows_and_its_record(
    pg: Workspace, postgres_server: str, user_table: str
) -> None:
    _transactional_task(pg, "2025-01-01.fill", user_table, fail=False)
    result = pg.runce("run")
    assert result.returncode == 0, output_of(result)
    assert sorted(_rows(postgres_server, user_table)) == ["one", "two"]
    assert _states(pg) == {"2025-01-01.fill": "APPLIED"}
    again = pg.runce("run")
    assert again.returncode == 0, output_of(again)
    assert len(_rows(postgres_server, user_table)) == 2, "applied once, never again"


# --- the lock (T-4) ---------------------------------------------------------------------------


def _waiting_task(workspace: Workspace, task_id: str, started: Path, log: Path) -> None:
    workspace.task(
        task_id,
        f"""
        import time

        @runce.task(title="waits for go")
        def run(ctx):
            open({str(started)!r}, "w").close()
            deadline = time.monotonic() + 60
            while not ctx.config.base_dir.joinpath("go").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            with open({str(log)!r}, "a") as handle:
                handle.write({task_id!r} + "\\n")
        """,
    )


def test_status_and_unlock_show_who_holds_the_lock(pg: Workspace) -> None:
    started, log = pg.root / "started", pg.root / "log"
    _waiting_task(pg, "2025-01-01.wait", started, log)
    runner = pg.start("run")
    try:
        wait_for(started)
        status = pg.runce("status")
        assert f"pid {runner.pid}" in status.stdout, output_of(status)
        assert "lock: held by" in status.stdout
        assert " since " in status.stdout
        assert "RUNNING" in status.stdout
        lock = json.loads(pg.runce("status", "--json").stdout)["lock"]
        assert (lock["pid"], lock["state"]) == (runner.pid, "live")
        assert lock["host"]
        assert lock["since"]

        unlock = pg.runce("unlock")
        assert unlock.returncode == 1, output_of(unlock)
        assert f"{lock['host']} pid {runner.pid}" in output_of(unlock)
        assert "runce unlock --force" in output_of(unlock)
    finally:
        (pg.root / "go").touch()
        code = runner.wait(timeout=30)
    assert code == 0, runner.communicate()
    assert "lock: free" in pg.runce("status").stdout


def test_unlock_force_ends_the_holders_session(pg: Workspace) -> None:
    started, log = pg.root / "started", pg.root / "log"
    _waiting_task(pg, "2025-01-01.wait", started, log)
    runner = pg.start("run")
    wait_for(started)
    cleared = pg.runce("unlock", "--force", "--yes")
    assert cleared.returncode == 0, output_of(cleared)
    assert "cleared" in cleared.stdout
    (pg.root / "go").touch()
    assert runner.wait(timeout=30) == 1
    _, stderr = runner.communicate()
    assert "lock" in stderr
    assert "Traceback" not in stderr
    assert _states(pg) == {"2025-01-01.wait": "INTERRUPTED"}, "its outcome was not recorded"


def test_a_runner_killed_mid_task_frees_the_lock_at_once(pg: Workspace) -> None:
    started, log = pg.root / "started", pg.root / "log"
    _waiting_task(pg, "2025-01-01.wait", started, log)
    victim = pg.start("run")
    wait_for(started)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    assert _states(pg) == {"2025-01-01.wait": "INTERRUPTED"}

    (pg.root / "go").touch()
    began = time.monotonic()
    rerun = pg.runce("run")
    assert rerun.returncode == 0, output_of(rerun)
    assert time.monotonic() - began < 30, "the lock went with the session, not the 60 s ttl"
    assert "interrupted" in rerun.stdout
    assert all_lines(log) == ["2025-01-01.wait"]
    history = json.loads(pg.runce("history", "2025-01-01.wait", "--json").stdout)
    assert [h["status"] for h in history] == ["interrupted", "succeeded"]


# --- many first runs on an empty database ------------------------------------------------------


@pytest.fixture
def empty_database(postgres_server: str, tmp_path: Path) -> Iterator[Workspace]:
    url = services.create_database(postgres_server)
    space = Workspace(tmp_path, url, LONG_TTL)
    yield space
    space.reap()
    services.drop_database(postgres_server, url)


def test_thirty_first_runs_at_once_on_an_empty_database(empty_database: Workspace) -> None:
    workspace = empty_database
    log = workspace.root / "side-effects.log"
    ids = [f"2025-01-0{n}.append" for n in (1, 2, 3)]
    for task_id in ids:
        workspace.appending_task(task_id, log)

    runners = [workspace.start("run") for _ in range(30)]
    results = [(proc.wait(timeout=120), *proc.communicate()) for proc in runners]

    for code, stdout, stderr in results:
        assert code in (0, 1), stdout + stderr
        assert "Traceback" not in stderr
        if code == 1:
            assert "lock held by" in stderr, stdout + stderr
    assert any(code == 0 for code, *_ in results)
    assert Counter(all_lines(log)) == Counter(ids), "every side effect exactly once"
    assert set(_states(workspace).values()) == {"APPLIED"}


# --- connection errors ----------------------------------------------------------------------


def _url_with(server: str, **changes: Any) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(server)
    user = parts.username or "postgres"
    host = parts.hostname or "127.0.0.1"
    port = changes.get("port", parts.port or 5432)
    database = changes.get("database", parts.path.lstrip("/"))
    return f"postgresql://{user}@{host}:{port}/{database}"


@pytest.mark.parametrize("command", ["run", "status"])
@pytest.mark.parametrize(
    ("change", "needles"),
    [
        ({"port": 1}, ["port 1", "unreachable"]),
        ({"database": "runce_no_such_db"}, ["port 5432", "database runce_no_such_db", "not exist"]),
    ],
    ids=["unreachable", "missing-database"],
)
def test_a_server_that_cannot_be_used_is_one_sentence_and_exit_2(
    pg: Workspace, postgres_server: str, command: str, change: dict[str, Any], needles: list[str]
) -> None:
    pg.task("2025-01-01.fine", "@runce.task\ndef run(ctx):\n    pass\n")
    url = _url_with(postgres_server, **change)
    result = pg.runce(command, RUNCE_STORE_URL=url)
    assert result.returncode == 2, output_of(result)
    assert_one_sentence(result.stderr, "could not connect", "host 127.0.0.1", *needles)


# --- the db commands ----------------------------------------------------------------------------


def test_db_commands_on_postgres(pg: Workspace, postgres_server: str) -> None:
    schema = pg.settings.split('"')[1]
    before = json.loads(pg.runce("db", "status", "--json").stdout)
    assert (before["current"], before["applied"]) == (0, [])
    assert before["pending"] == list(MIGRATIONS.names)
    with psycopg.connect(postgres_server) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchall()
    assert found == [], "read-only commands create nothing"

    upgraded = pg.runce("db", "upgrade")
    assert upgraded.returncode == 0, output_of(upgraded)
    assert "0001_once_tasks.sql" in upgraded.stdout
    assert f"(schema {schema})" in upgraded.stdout
    after = json.loads(pg.runce("db", "status", "--json").stdout)
    assert after["current"] == after["latest"] >= 1
    assert "up to date" in pg.runce("db", "upgrade").stdout

    ddl = pg.runce("db", "sql")
    assert ddl.returncode == 0, output_of(ddl)
    assert f'CREATE TABLE "{schema}".history' in ddl.stdout
    assert f'CREATE SCHEMA IF NOT EXISTS "{schema}"' in ddl.stdout
