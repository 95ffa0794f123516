"""A transactional task cannot end runce's transaction: ctx.db (SQLite, PostgreSQL) and
ctx.session (MongoDB) refuse commit, rollback and the like, so a task that tries and then
fails keeps none of its work, and its record says what happened."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import runce
from runce.tasks import library
from tests.stores.conftest import BACKENDS, StoreMaker
from tests.stores.test_escaping_code import task_config

SQL_BACKENDS = [name for name in ("sqlite", "postgres") if name in BACKENDS]


@pytest.fixture(autouse=True)
def _forget_task_modules() -> Iterator[None]:
    yield
    for name in [n for n in sys.modules if n.startswith("runce_tasks.")]:
        del sys.modules[name]


@pytest.fixture(params=SQL_BACKENDS)
def sql_maker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreMaker]:
    made = BACKENDS[request.param](request, tmp_path)
    yield made
    made.close_all()


@pytest.fixture
def table() -> str:
    """A table of the test's own: on PostgreSQL, tasks' tables live outside runce's schema."""
    return f"guarded_{uuid.uuid4().hex[:10]}"


def _task(action: str, table: str) -> str:
    return f"""
    @runce.task(transactional=True)
    def run(ctx):
        ctx.db.execute("CREATE TABLE {table} (n INTEGER)")
        ctx.db.execute("INSERT INTO {table} VALUES (1)")
        {action}
        raise RuntimeError("failed after trying to end the transaction")
    """


REFUSED = {
    "commit": ("ctx.db.commit()", "ctx.db.commit() is refused"),
    "rollback": ("ctx.db.rollback()", "ctx.db.rollback() is refused"),
    "close": ("ctx.db.close()", "ctx.db.close() is refused"),
    "sql-commit": ("ctx.db.execute('commit')", "ctx.db.execute('COMMIT' ...) is refused"),
    "sql-end": ("ctx.db.execute('  END')", "ctx.db.execute('END' ...) is refused"),
    "autocommit": ("ctx.db.autocommit = True", "setting ctx.db.autocommit is refused"),
    "isolation": ("ctx.db.isolation_level = None", "setting ctx.db.isolation_level"),
    "with": ("with ctx.db:\n            pass", "`with ctx.db:`"),
    "executescript": ("ctx.db.executescript('COMMIT;')", "ctx.db.executescript() is refused"),
    "cursor-commit": ("ctx.db.cursor().execute('COMMIT')", "cursor().execute('COMMIT' ...)"),
    "cursor-connection": ("ctx.db.cursor().connection.commit()", "ctx.db.commit() is refused"),
}


def _table_exists(maker: StoreMaker, table: str) -> bool:
    store = maker.open()
    spec = maker.spec
    if spec.type == "sqlite":
        import sqlite3

        path = (spec.base_dir / ".runce" / "runce.db") if spec.base_dir else None
        assert path is not None
        with sqlite3.connect(path) as conn:
            found = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchall()
        return bool(found)
    import psycopg

    assert spec.url is not None
    with psycopg.connect(spec.url) as conn:
        row = conn.execute("SELECT to_regclass(%s)", (f"public.{table}",)).fetchone()
        conn.execute(f"DROP TABLE IF EXISTS public.{table}")
    store.close()
    return row is not None and row[0] is not None


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_ending_the_transaction_is_refused_and_nothing_is_kept(
    sql_maker: StoreMaker, tmp_path: Path, case: str, table: str
) -> None:
    action, needle = REFUSED[case]
    config = task_config(sql_maker, tmp_path, {"1.sneaky": _task(action, table)})
    report = runce.run_tasks(config)
    result = report.result("1.sneaky")
    assert result.outcome == "failed"
    assert needle in (result.error or ""), result.error
    assert "UsageError" in (result.error or "")
    [attempt] = library.task_history(config)
    assert attempt.status == "failed"
    assert not _table_exists(sql_maker, table), "the refused task's work must be rolled back"
    assert runce.task_status(config).tasks[0].state.value == "FAILED"


def test_everything_else_is_forwarded(sql_maker: StoreMaker, tmp_path: Path, table: str) -> None:
    body = f"""
    @runce.task(transactional=True)
    def run(ctx):
        db = ctx.db
        db.execute("CREATE TABLE {table} (n INTEGER)")
        mark = "?" if ctx.config.store.type == "sqlite" else "%s"
        db.cursor().executemany(f"INSERT INTO {table} VALUES ({{mark}})", [(1,)])
        cur = db.cursor()
        assert cur.execute("SELECT count(*) FROM {table}").fetchone()[0] == 1
        assert [tuple(r) for r in cur.execute("SELECT n FROM {table}")] == [(1,)]
        db.execute(f"INSERT INTO {table} VALUES ({{mark}})", (2,))
        if ctx.config.store.type != "sqlite":  # psycopg's cursors are context managers
            with db.cursor() as inner:
                assert inner.execute("SELECT 41 + 1").fetchone()[0] == 42
        if ctx.config.store.type == "sqlite":
            db.executemany(f"INSERT INTO {table} VALUES (?)", [(3,)])
            db.row_factory = None
        rows = db.execute("SELECT n FROM {table} ORDER BY n").fetchall()
        assert [r[0] for r in rows][:2] == [1, 2], rows
        db.execute("SAVEPOINT inner_work")
        db.execute("ROLLBACK TO SAVEPOINT inner_work")
        runce.enqueue("inside.tx", {{"n": 3}}, connection=db, config=ctx.config)
    """
    config = task_config(sql_maker, tmp_path, {"1.fine": body})
    report = runce.run_tasks(config)
    assert report.ok, report.result("1.fine").error
    assert _table_exists(sql_maker, table)
    [run] = runce.list_runs(config=config).runs
    assert run.kind == "inside.tx"


def test_ctx_db_outside_a_transactional_task_says_why(
    sql_maker: StoreMaker, tmp_path: Path
) -> None:
    body = "@runce.task\ndef run(ctx):\n    ctx.db.execute('SELECT 1')\n"
    config = task_config(sql_maker, tmp_path, {"1.plain": body})
    report = runce.run_tasks(config)
    assert "ctx.db is there only in a transactional task" in (report.result("1.plain").error or "")


@pytest.mark.skipif("mongo" not in BACKENDS, reason="needs the mongo store")
@pytest.mark.parametrize("method", ["commit_transaction", "abort_transaction", "end_session"])
def test_the_mongodb_session_refuses_ending_its_transaction(
    request: pytest.FixtureRequest, tmp_path: Path, method: str
) -> None:
    maker = BACKENDS["mongo"](request, tmp_path)
    database = (maker.spec.url or "").rsplit("/", 1)[1]
    body = f"""
    @runce.task(transactional=True)
    def run(ctx):
        things = ctx.session.client[{database!r}]["guarded_things"]
        things.insert_one({{"n": 1}}, session=ctx.session)
        ctx.session.{method}()
        raise RuntimeError("failed after trying to end the transaction")
    """
    try:
        config = task_config(maker, tmp_path, {"1.sneaky": body})
        report = runce.run_tasks(config)
        error = report.result("1.sneaky").error or ""
        assert f"ctx.session.{method}() is refused" in error, error
        store = maker.open()
        client = store.runs._conn.client  # type: ignore[attr-defined]
        assert client[database]["guarded_things"].count_documents({}) == 0
        [attempt] = library.task_history(config)
        assert attempt.status == "failed"
    finally:
        maker.close_all()
