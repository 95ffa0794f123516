"""Debounced enqueues on a caller's connection: merged in its transaction on PostgreSQL
(synchronous) and SQLite, and refused in one sentence on an async PostgreSQL connection."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import runce
from runce.errors import UnsupportedFeature
from runce.runs.jobs import registry
from tests import services


@pytest.fixture
def kind() -> Iterator[str]:
    name = f"deb.{uuid.uuid4().hex[:8]}"
    runce.job(name, concurrency_key="customer", debounce="30s")(lambda params: None)
    yield name
    registry.forget(name)


@pytest.fixture
def pg_config(postgres_server: str) -> Iterator[dict[str, Any]]:
    schema = f"runce_t_{uuid.uuid4().hex[:12]}"
    yield {"store": postgres_server, "schema": schema}
    services.drop_schema(postgres_server, schema)


@pytest.mark.postgres
def test_a_debounced_enqueue_merges_in_the_callers_postgres_transaction(
    kind: str, pg_config: dict[str, Any], postgres_server: str
) -> None:
    first = runce.enqueue(kind, {"customer": "a", "n": 1}, config=pg_config)
    with psycopg.connect(postgres_server) as conn:
        merged = runce.enqueue(kind, {"customer": "a", "n": 2}, connection=conn, config=pg_config)
        assert merged.id == first.id
        conn.rollback()  # the merge goes with the caller's transaction
    assert runce.get_run(first.id, config=pg_config).input == {"customer": "a", "n": 1}


@pytest.mark.postgres
def test_a_debounced_enqueue_on_an_async_connection_is_refused(
    kind: str, pg_config: dict[str, Any], postgres_server: str
) -> None:
    runce.enqueue(kind, {"customer": "a", "n": 1}, config=pg_config)  # the schema exists

    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(postgres_server) as aconn:
            await runce.aenqueue(kind, {"customer": "a"}, connection=aconn, config=pg_config)

    with pytest.raises(UnsupportedFeature) as err:
        asyncio.run(scenario())
    assert str(err.value).startswith("a debounced job cannot be enqueued on an async connection")
    assert "\n" not in str(err.value)


def test_a_debounced_enqueue_merges_in_the_callers_sqlite_transaction(
    kind: str, tmp_path: Path
) -> None:
    path = tmp_path / "runce.db"
    config = {"store": f"sqlite:///{path}"}
    first = runce.enqueue(kind, {"customer": "a", "n": 1}, config=config)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        merged = runce.enqueue(kind, {"customer": "a", "n": 2}, connection=conn, config=config)
        assert merged.id == first.id
        conn.execute("COMMIT")
    finally:
        conn.close()
    assert runce.get_run(first.id, config=config).input == {"customer": "a", "n": 2}
