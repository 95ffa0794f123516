"""Transactional jobs as real processes (R-4): a job's database work and its success commit
together, so a worker killed between the two, one whose claim was lost meanwhile, one whose
success cannot be written, or one whose connection is cut at its commit, leaves the work
applied exactly once after retries. The job inserts a row per execution into a table of
the user's on the store's database; the tests count the rows."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.acceptance.conftest import (
    RUNCE,
    Workspace,
    clean_env,
    output_of,
    postgres_workspace,
    stores_for,
)
from tests.proxy import Proxy

pytestmark = pytest.mark.slow

LEASE = 2.0  # every wait below is a generous multiple of it

JOBS = """
import os, signal, time
import runce

HERE = os.path.dirname(os.path.abspath(__file__))
GO = os.path.join(HERE, "go")


def record(*words):
    with open(os.path.join(HERE, "log.txt"), "a") as handle:
        handle.write(" ".join(map(str, words)) + "\\n")


@runce.job("tx.work", transactional=True, max_attempts=5)
def work(params, ctx):
    ctx.db.execute(
        "INSERT INTO {table} (run_id, attempt) VALUES ({ph}, {ph})",
        (ctx.run.id, ctx.run.attempt),
    )
    record("inserted", ctx.run.id, ctx.run.attempt, os.getpid())
    if ctx.run.attempt == 1 and params["fault"] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)  # after the work, before its commit
    if ctx.run.attempt == 1 and params["fault"] == "stall":
        while not os.path.exists(GO):
            time.sleep(0.01)
    return {{"attempt": ctx.run.attempt}}
"""


class Space:
    """A workspace whose store's database also holds the user's table ``table``."""

    def __init__(
        self,
        workspace: Workspace,
        table: str,
        count: Callable[[], list[int]],
        execute: Callable[[str], None],
        refusal: str,
    ) -> None:
        self.workspace = workspace
        self.table = table
        self.attempts = count  # the attempt of each row in the user's table
        self.execute = execute  # SQL run on the store's database, committed
        self.refusal = refusal  # SQL that makes the write of attempt 1's success fail

    def refuse_first_success(self) -> None:
        self.execute(self.refusal)


# A trigger on runce's runs table that fails the statement recording attempt 1's success,
# with the error a full disk gives: the fault of an acknowledgement, not of the job.
REFUSE_ON_SQLITE = """
CREATE TRIGGER refuse_first_success BEFORE UPDATE OF state ON runce_runs
WHEN NEW.state = 'succeeded' AND NEW.attempt = 1
BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;
"""
REFUSE_ON_POSTGRES = """
CREATE FUNCTION {schema}.refuse_first_success() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full';
END $$;
CREATE TRIGGER refuse_first_success BEFORE UPDATE ON {schema}.runs FOR EACH ROW
WHEN (NEW.state = 'succeeded' AND NEW.attempt = 1)
EXECUTE FUNCTION {schema}.refuse_first_success();
"""


SETTINGS = f'[worker]\nhandlers = ["jobs"]\nlease = {LEASE}\npoll = 0.2\nbackoff_base = 0.05\n'


@pytest.fixture(params=["sqlite", "postgres"])
def space(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Space]:
    if request.param == "sqlite":
        workspace = Workspace(tmp_path, stores_for(tmp_path)["sqlite"])
        yield from _sqlite_space(workspace)
        return
    spaces = postgres_workspace(request, tmp_path)
    workspace = next(spaces)
    try:
        yield from _postgres_space(workspace, request.getfixturevalue("postgres_server"))
    finally:
        for _ in spaces:
            pass


@pytest.fixture
def proxied(postgres_server: str, tmp_path: Path) -> Iterator[tuple[Space, Proxy]]:
    """A space on the test PostgreSQL whose runce reaches the server through a proxy."""
    from tests import services

    server = urlsplit(postgres_server)
    proxy = Proxy(server.hostname or "127.0.0.1", server.port or 5432)
    url = server._replace(netloc=server.netloc.replace(f":{server.port}", f":{proxy.port}"))
    schema = f"runce_t_{uuid.uuid4().hex[:12]}"
    workspace = Workspace(tmp_path, url.geturl(), f'schema = "{schema}"\n')
    try:
        for space in _postgres_space(workspace, postgres_server):
            yield space, proxy
    finally:
        workspace.reap()
        proxy.close()
        services.drop_schema(postgres_server, schema)


def _postgres_space(workspace: Workspace, url: str) -> Iterator[Space]:
    import psycopg

    table = f"public.tx_work_{uuid.uuid4().hex[:12]}"
    _prepare(workspace, table, "%s")

    def execute(statement: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(statement.encode())

    def count() -> list[int]:
        with psycopg.connect(url) as conn:
            return [row[0] for row in conn.execute(f"SELECT attempt FROM {table}")]

    execute(f"CREATE TABLE {table} (run_id TEXT NOT NULL, attempt INTEGER NOT NULL)")
    schema = re.search(r'schema = "(\w+)"', workspace.settings)
    assert schema is not None
    try:
        yield Space(workspace, table, count, execute, REFUSE_ON_POSTGRES.format(schema=schema[1]))
    finally:
        execute(f"DROP TABLE {table}")


def _sqlite_space(workspace: Workspace) -> Iterator[Space]:
    table = "tx_work"
    _prepare(workspace, table, "?")
    path = workspace.root / ".runce" / "runce.db"

    def execute(statement: str) -> None:
        with sqlite3.connect(path) as conn:
            conn.executescript(statement)

    def count() -> list[int]:
        with sqlite3.connect(path) as conn:
            return [row[0] for row in conn.execute(f"SELECT attempt FROM {table}")]

    execute(f"CREATE TABLE {table} (run_id TEXT NOT NULL, attempt INTEGER NOT NULL)")
    yield Space(workspace, table, count, execute, REFUSE_ON_SQLITE)
    workspace.reap()


def _prepare(workspace: Workspace, table: str, ph: str) -> None:
    """The workspace's jobs writing to ``table``, and runce's tables made."""
    workspace.settings += SETTINGS
    workspace.write_config()
    (workspace.root / "jobs.py").write_text(JOBS.format(table=table, ph=ph))
    ran = workspace.runce("db", "upgrade")
    assert ran.returncode == 0, output_of(ran)


def _worker(workspace: Workspace) -> tuple[subprocess.Popen[str], Path]:
    err = workspace.root / f"worker-{len(workspace.procs)}.err"
    proc = subprocess.Popen(
        [RUNCE, "worker", "--max-time", "150"],
        cwd=workspace.root,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=err.open("w"),
        text=True,
    )
    workspace.procs.append(proc)
    return proc, err


def _enqueue(workspace: Workspace, fault: str) -> str:
    done = workspace.runce("runs", "enqueue", "tx.work", "--input", f'{{"fault": "{fault}"}}')
    assert done.returncode == 0, output_of(done)
    return done.stdout.strip()


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _inserted(workspace: Workspace, attempt: int) -> bool:
    log = workspace.root / "log.txt"
    lines = log.read_text().splitlines() if log.exists() else []
    return any(line.split()[2] == str(attempt) for line in lines)


def _succeeds(workspace: Workspace, run_id: str) -> None:
    tail = workspace.runce("runs", "tail", run_id, "--timeout", "120", timeout=150)
    assert tail.returncode == 0, output_of(tail)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def test_a_worker_killed_before_its_commit_leaves_the_work_applied_once(space: Space) -> None:
    workspace = space.workspace
    run_id = _enqueue(workspace, "kill")
    first, err = _worker(workspace)
    assert first.wait(timeout=120) == -signal.SIGKILL, err.read_text()
    assert space.attempts() == []  # its insert rolled back with the process
    second, _ = _worker(workspace)
    _succeeds(workspace, run_id)  # reclaimed once the lease ran out, and retried
    _stop(second)
    assert space.attempts() == [2]


def test_a_worker_whose_claim_was_lost_rolls_its_work_back(space: Space) -> None:
    workspace = space.workspace
    run_id = _enqueue(workspace, "stall")
    first, first_err = _worker(workspace)
    _until(lambda: _inserted(workspace, 1), 120, "the first attempt never did its work")
    first.send_signal(signal.SIGSTOP)  # no heartbeats: the lease runs out
    try:
        second, _ = _worker(workspace)
        if "postgres" in workspace.store:
            # Only PostgreSQL lets another worker take the run over meanwhile: on SQLite the
            # stopped transaction holds the file's write lock, so its claim stays current.
            _succeeds(workspace, run_id)
            assert space.attempts() == [2]
        (workspace.root / "go").touch()
    finally:
        first.send_signal(signal.SIGCONT)
    _succeeds(workspace, run_id)
    if "postgres" in workspace.store:
        _until(lambda: "rolled back" in first_err.read_text(), 60, "the fence never failed")
    _stop(first)
    _stop(second)
    shown = workspace.runce("runs", "status", run_id, "--json")
    assert shown.returncode == 0, output_of(shown)
    (attempt,) = space.attempts()  # applied once, by the attempt whose success was recorded
    assert json.loads(shown.stdout)["result"] == {"attempt": attempt}


def test_a_success_that_cannot_be_written_rolls_its_work_back_and_is_retried(
    space: Space,
) -> None:
    """Attempt 1 does its work, then the write of its success fails (a trigger on runce's
    runs table refuses it, as a full disk would): the work rolls back with it, the run is
    retried, and the work is applied once, by the attempt whose success was recorded."""
    workspace = space.workspace
    space.refuse_first_success()
    run_id = _enqueue(workspace, "none")
    worker, err = _worker(workspace)
    _succeeds(workspace, run_id)
    _stop(worker)
    assert _inserted(workspace, 1), err.read_text()  # attempt 1 did its work, then failed
    assert space.attempts() == [2]
    shown = _status(workspace, run_id)
    assert (shown["attempt"], shown["result"]) == (2, {"attempt": 2})
    [first] = shown["attempts"]
    assert "full" in first["error"] or "No space" in first["error"], first


@pytest.mark.parametrize("delivered", [True, False], ids=["committed", "never-committed"])
def test_a_commit_whose_connection_is_cut_applies_the_work_once(
    proxied: tuple[Space, Proxy], delivered: bool
) -> None:
    """PostgreSQL: the connection of attempt 1's transaction is cut at its COMMIT. When the
    server got the COMMIT, it committed and the worker never heard so: the run stays
    succeeded by attempt 1 and is not run again. When it did not, nothing was kept and
    attempt 2 does the work. Either way one row, from the attempt whose success was
    recorded, told as a success by the worker, which goes on working."""
    space, proxy = proxied
    workspace = space.workspace
    proxy.lose_reply(f"INSERT INTO {space.table}".encode(), b"COMMIT", delivered=delivered)
    run_id = _enqueue(workspace, "none")
    worker, err = _worker(workspace)
    _until(proxy.sprung.is_set, 60, "attempt 1 never committed")
    _succeeds(workspace, run_id)
    expected = 1 if delivered else 2
    assert space.attempts() == [expected], err.read_text()
    later = _enqueue(workspace, "none")  # done once the worker has dealt with the cut
    _succeeds(workspace, later)
    _stop(worker)
    said = err.read_text()
    shown = _status(workspace, run_id)
    assert (shown["state"], shown["attempt"]) == ("succeeded", expected), said
    assert shown["result"] == {"attempt": expected}
    assert space.attempts() == [expected, 1], said
    # The worker tells the truth of it: a commit made unheard is a success, not a lost run.
    assert f"run.succeeded id={run_id} kind=tx.work attempt={expected}" in said, said
    assert "run.lost" not in said, said
    assert "stopped: 2 succeeded, 0 failed" in said, said


def _status(workspace: Workspace, run_id: str) -> dict[str, Any]:
    shown = workspace.runce("runs", "status", run_id, "--json")
    assert shown.returncode == 0, output_of(shown)
    status: dict[str, Any] = json.loads(shown.stdout)
    return status


ROOT = Path(__file__).parents[2]


def test_the_example_in_runs_md_runs_as_written(tmp_path: Path) -> None:
    example = ROOT / "examples" / "transactional" / "archive.py"
    docs = (ROOT / "docs" / "runs.md").read_text()
    block = docs.split("```python\n# examples/transactional/archive.py\n", 1)[1].split("```")[0]
    assert block.strip() in example.read_text()
    ran = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, output_of(ran)
    assert ran.stdout.strip().endswith(": succeeded, 1 row"), output_of(ran)
