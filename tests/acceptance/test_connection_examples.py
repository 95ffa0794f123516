"""examples/connections run as written: stores on an SQLite path, a psycopg pool and a
pymongo database, and an enqueue awaited in an AsyncConnection's transaction; each a real
subprocess on a real database."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import runce
from tests import services
from tests.acceptance.conftest import clean_env

EXAMPLES = Path(__file__).parents[2] / "examples" / "connections"


def _run(script: str, *args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def database(postgres_server: str) -> Iterator[str]:
    url = services.create_database(postgres_server)
    yield url
    services.drop_database(postgres_server, url)


def test_a_store_on_an_sqlite_path(tmp_path: Path) -> None:
    assert _run("own_connections.py", "sqlite", "app.db", cwd=tmp_path) == "queued"
    [run] = runce.list_runs(config={"store": f"sqlite:///{tmp_path / 'app.db'}"}).runs
    assert run.kind == "report.build"


@pytest.mark.postgres
def test_a_store_on_a_psycopg_pool(tmp_path: Path, database: str) -> None:
    assert _run("own_connections.py", "postgres", database, cwd=tmp_path) == "queued"
    [run] = runce.list_runs(config={"store": database}).runs
    assert run.input == {"month": "2025-06"}


@pytest.mark.mongo
def test_a_store_on_a_pymongo_database(tmp_path: Path, mongo_server: str) -> None:
    name = f"runce_t_{uuid.uuid4().hex[:12]}"
    assert _run("own_connections.py", "mongo", mongo_server, name, cwd=tmp_path) == "queued"
    [run] = runce.list_runs(config={"store": f"{mongo_server}/{name}"}).runs
    assert run.kind == "report.build"


@pytest.mark.postgres
def test_an_enqueue_awaited_in_an_async_transaction(tmp_path: Path, database: str) -> None:
    assert _run("async_enqueue.py", database, cwd=tmp_path) == "queued 1"
