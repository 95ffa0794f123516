"""The async entry points: ``aenqueue`` and its twins, and enqueueing on a caller's
connection that is async (psycopg ``AsyncConnection``) or makes client-side cursors (Django's
default), on a real PostgreSQL database and on SQLite."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import runce
from runce.errors import IdempotencyConflict, UsageError
from runce.runs import library
from tests import services


@pytest.fixture
def pg_config(postgres_server: str) -> Iterator[dict[str, Any]]:
    schema = f"runce_t_{uuid.uuid4().hex[:12]}"
    yield {"store": postgres_server, "schema": schema}
    services.drop_schema(postgres_server, schema)


@pytest.mark.postgres
def test_aenqueue_on_an_async_connection_commits_and_rolls_back_with_it(
    pg_config: dict[str, Any], postgres_server: str
) -> None:
    async def scenario() -> tuple[runce.Run, runce.Run]:
        async with await psycopg.AsyncConnection.connect(postgres_server) as aconn:
            kept = await runce.aenqueue(
                "email.send", {"to": "a"}, connection=aconn, config=pg_config
            )
            assert aconn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            await aconn.commit()
            dropped = await runce.aenqueue(
                "email.send", {"to": "b"}, connection=aconn, config=pg_config
            )
            await aconn.rollback()
        return kept, dropped

    kept, dropped = asyncio.run(scenario())
    assert runce.get_run(kept.id, config=pg_config).input == {"to": "a"}
    with pytest.raises(runce.UnknownRun):
        runce.get_run(dropped.id, config=pg_config)


@pytest.mark.postgres
def test_aenqueue_many_on_an_async_connection_meets_existing_idempotency_keys(
    pg_config: dict[str, Any], postgres_server: str
) -> None:
    async def scenario() -> tuple[list[runce.Run], list[runce.Run]]:
        async with await psycopg.AsyncConnection.connect(postgres_server) as aconn:
            first = await runce.aenqueue_many(
                "email.send",
                [{"n": 1}, {"n": 2}],
                idempotency_keys=["k1", "k2"],
                connection=aconn,
                config=pg_config,
            )
            again = await runce.aenqueue_many(
                "email.send",
                [{"n": 1}, {"n": 3}],
                idempotency_keys=["k1", "k3"],
                connection=aconn,
                config=pg_config,
            )
            with pytest.raises(IdempotencyConflict):
                await runce.aenqueue(
                    "email.send",
                    {"n": 9},
                    idempotency_key="k2",
                    connection=aconn,
                    config=pg_config,
                )
            await aconn.rollback()  # the failed transaction: nothing of it stays
        return first, again

    first, again = asyncio.run(scenario())
    assert again[0].id == first[0].id, "the key met the run inserted earlier in the transaction"
    assert again[1].id not in {run.id for run in first}
    assert runce.list_runs(config=pg_config).runs == []


@pytest.mark.postgres
def test_an_async_connection_in_autocommit_without_a_transaction_is_refused(
    pg_config: dict[str, Any], postgres_server: str
) -> None:
    async def scenario() -> None:
        aconn = await psycopg.AsyncConnection.connect(postgres_server, autocommit=True)
        async with aconn:
            with pytest.raises(UsageError, match="autocommit mode"):
                await runce.aenqueue("email.send", {}, connection=aconn, config=pg_config)

    asyncio.run(scenario())


@pytest.mark.postgres
def test_enqueue_works_on_a_connection_making_client_side_cursors(
    pg_config: dict[str, Any], postgres_server: str
) -> None:
    """Django's PostgreSQL backend makes ClientCursor connections: no binary results."""
    with psycopg.connect(postgres_server, cursor_factory=psycopg.ClientCursor) as conn:
        one = runce.enqueue(
            "email.send", {"to": "a"}, idempotency_key="c1", connection=conn, config=pg_config
        )
        many = runce.enqueue_many(
            "email.send",
            [{"to": "a"}, {"to": "b"}],
            idempotency_keys=["c1", "c2"],
            connection=conn,
            config=pg_config,
        )
        conn.commit()
    assert many[0].id == one.id
    assert {run.id for run in runce.list_runs(config=pg_config).runs} == {one.id, many[1].id}


@pytest.mark.postgres
def test_the_async_reads_and_cancel(pg_config: dict[str, Any]) -> None:
    async def scenario() -> None:
        run = await runce.aenqueue("email.send", {"to": "x"}, config=pg_config)
        assert (await runce.aget_run(run.id, config=pg_config)).id == run.id
        page = await runce.alist_runs(kind="email.send", config=pg_config)
        assert [r.id for r in page.runs] == [run.id]
        assert (await runce.acancel_run(run.id, config=pg_config)).state == "canceled"

    asyncio.run(scenario())


def test_job_alater_enqueues_on_sqlite(tmp_path: Path) -> None:
    config = {"store": f"sqlite:///{tmp_path / 'runce.db'}"}
    job = runce.job(f"test.alater.{uuid.uuid4().hex[:8]}")(lambda params: None)

    async def scenario() -> runce.Run:
        return await job.alater({"a": 1}, idempotency_key="once", config=config)

    run = asyncio.run(scenario())
    assert asyncio.run(scenario()).id == run.id
    assert runce.get_run(run.id, config=config).input == {"a": 1}


def _given_as(form: str, values: dict[str, Any], folder: Path) -> Any:
    """``values`` as a caller passes them: a loaded Config, the dict itself, or a file."""
    if form == "Config":
        return runce.load_config(values=values, env={})
    if form == "dict":
        return dict(values)
    path = folder / "runce.toml"
    path.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items()))
    return str(path)


@pytest.mark.postgres
@pytest.mark.parametrize("form", ["Config", "dict", "path"])
def test_an_enqueue_on_an_async_connection_stays_on_the_event_loop(
    pg_config: dict[str, Any],
    postgres_server: str,
    monkeypatch: pytest.MonkeyPatch,
    form: str,
    tmp_path: Path,
) -> None:
    """After the first call (which may read files and check the schema on a thread), an
    enqueue on the caller's AsyncConnection is awaited statements only: no thread, whether
    the configuration is a Config, a dict or a file."""
    config = _given_as(form, pg_config, tmp_path)

    async def enqueue(aconn: psycopg.AsyncConnection[Any], n: int) -> runce.Run:
        return await runce.aenqueue("email.send", {"n": n}, connection=aconn, config=config)

    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(postgres_server) as aconn:
            await enqueue(aconn, 1)

            def no_thread(*args: object, **kwargs: object) -> None:
                raise AssertionError("a thread hop")

            monkeypatch.setattr(asyncio, "to_thread", no_thread)
            await enqueue(aconn, 2)
            await aconn.commit()

    asyncio.run(scenario())
    assert len(runce.list_runs(config=config).runs) == 2


def test_an_async_caller_s_config_file_is_read_once_until_it_changes(tmp_path: Path) -> None:
    """Its service is kept by the file's modification time and size: the same file gives the
    same service, an edited one is read again."""
    path = tmp_path / "runce.toml"
    path.write_text('store = "sqlite:///one.db"\n')
    kind = f"test.file.{uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[bool, runce.Run, runce.Run]:
        first = await runce.aenqueue(kind, {}, config=path)
        kept = await library._aservice(path) is await library._aservice(path)
        path.write_text('store = "sqlite:///two.db"  # another store\n')
        return kept, first, await runce.aenqueue(kind, {}, config=path)

    kept, first, second = asyncio.run(scenario())
    assert kept, "the same file, the same service: no thread to read it again"
    one, two = ({"store": f"sqlite:///{tmp_path / name}"} for name in ("one.db", "two.db"))
    assert [run.id for run in runce.list_runs(config=one).runs] == [first.id]
    assert [run.id for run in runce.list_runs(config=two).runs] == [second.id]
