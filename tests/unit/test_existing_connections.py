"""Stores on what the application already has (``runce.stores.from_*``), without a URL: an
SQLite path, a psycopg pool, a pymongo client or database; on real databases. runce never
closes what it was given, and gives a pool's connections back as it found them."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import runce
from runce.errors import ConfigError
from runce.tasks import library as tasks_library
from tests import services


def _task(root: Path) -> Path:
    tasks = root / "tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "1.hello.py").write_text(
        "import runce\n\n@runce.task(title='hello')\ndef run(ctx):\n    pass\n"
    )
    return tasks


def _exercise(config: dict[str, Any]) -> runce.Run:
    """Tasks (the lock, the tracker) and runs (enqueue, read) on the given store."""
    report = runce.run_tasks(config)
    assert [r.outcome for r in report.results] == ["ok"]
    assert tasks_library.task_history(config, "1.hello")[0].status == "succeeded"
    run = runce.enqueue("email.send", {"to": "a"}, config=config)
    found = runce.get_run(run.id, config=config)
    assert found.input == {"to": "a"}
    assert found.created_at.tzinfo is not None
    assert found.created_at.utcoffset() == UTC.utcoffset(None)
    return found


def test_an_sqlite_path(tmp_path: Path) -> None:
    config = {
        "store": runce.stores.from_sqlite(tmp_path / "app.db"),
        "tasks_dir": str(_task(tmp_path)),
    }
    _exercise(config)
    assert (tmp_path / "app.db").exists()


@pytest.fixture
def schema(postgres_server: str) -> Iterator[str]:
    name = f"runce_t_{uuid.uuid4().hex[:12]}"
    yield name
    services.drop_schema(postgres_server, name)


@pytest.mark.postgres
def test_a_psycopg_pool(tmp_path: Path, postgres_server: str, schema: str) -> None:
    from psycopg_pool import ConnectionPool

    # The application's pool makes dict rows and client-side cursors, outside autocommit.
    kwargs = {"row_factory": dict_row, "cursor_factory": psycopg.ClientCursor}
    with ConnectionPool(postgres_server, kwargs=kwargs, min_size=1, max_size=2) as pool:
        spec = runce.stores.from_postgres_pool(pool)
        config = {"store": spec, "schema": schema, "tasks_dir": str(_task(tmp_path))}
        _exercise(config)
        with pool.connection() as conn:
            assert conn.autocommit is False
            assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
            assert isinstance(conn.cursor(), psycopg.ClientCursor)
            runs = conn.execute(f'SELECT count(*) AS n FROM "{schema}".runs').fetchone()
            assert runs == {"n": 1}
        assert not pool.closed


def test_a_pool_url_hides_its_password_in_the_description() -> None:
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(
        "host=db.internal dbname=shop user=app", kwargs={"password": "s3cret"}, open=False
    )
    spec = runce.stores.from_postgres_pool(pool)
    assert spec.url == "postgresql://app:s3cret@db.internal/shop"
    from runce.stores.registry import open_store

    assert open_store(spec).description == "postgresql://app:***@db.internal/shop (schema runce)"


@pytest.mark.mongo
@pytest.mark.parametrize("given", ["client", "database"])
def test_a_pymongo_client_or_database(tmp_path: Path, mongo_server: str, given: str) -> None:
    import pymongo

    name = f"runce_t_{uuid.uuid4().hex[:12]}"
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_server)  # naive times
    try:
        spec = (
            runce.stores.from_mongo(client, name)
            if given == "client"
            else runce.stores.from_mongo(client[name])
        )
        _exercise({"store": spec, "tasks_dir": str(_task(tmp_path))})
        # run_tasks closed its store: the application's client still works
        assert client[name]["runce.applied"].count_documents({}) == 1
    finally:
        client.drop_database(name)
        client.close()


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: runce.stores.from_postgres_pool("postgresql://x/y"), "ConnectionPool"),
        (lambda: runce.stores.from_mongo("mongodb://x/y"), "MongoClient or Database"),
    ],
)
def test_what_is_not_a_pool_or_client_is_refused_in_one_sentence(call: Any, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        call()


def test_runce_stores_is_reachable_from_a_bare_import_runce() -> None:
    code = "import runce; print(runce.stores.from_sqlite('app.db').options['path'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "app.db", done.stderr
