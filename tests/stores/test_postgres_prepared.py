"""The one-run enqueue on PostgreSQL goes as a statement prepared on the store's connection
and sent through libpq (runce.stores.postgres.prepared): what it answers is what is stored,
to the microsecond; a connection that lost the statement prepares it again; the server's
refusals are runce's errors; and the helpers turn placeholders and values as the server
reads them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from runce.errors import StoreError
from runce.stores.postgres.prepared import numbered, text_value
from runce.stores.queue import RunQueue
from tests.stores.conftest import BACKENDS, StoreMaker
from tests.stores.test_queue_contract import new

pytestmark = pytest.mark.skipif("postgres" not in BACKENDS, reason="no PostgreSQL driver")


@pytest.fixture
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunQueue]:
    made: StoreMaker = BACKENDS["postgres"](request, tmp_path)
    runs: RunQueue = made.open().runs  # type: ignore[attr-defined]
    yield runs
    made.close_all()


def _session(queue: RunQueue) -> Any:
    return queue._db.session()  # type: ignore[attr-defined]


def test_one_run_is_stored_as_answered_to_the_microsecond(queue: RunQueue) -> None:
    due = datetime(2031, 5, 6, 7, 8, 9, 123457, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    sent = new("one.kind", {"a": [1, "ż"], "n": None}, run_at=due, priority=-4, project_id="p")
    [answer] = queue.enqueue([sent])
    stored = queue.get(sent.id)
    assert stored is not None
    assert answer.created
    assert answer.run == stored
    assert stored.run_at == due
    assert stored.created_at == stored.updated_at
    assert (stored.priority, stored.project_id, stored.input) == (
        -4,
        "p",
        json.loads(sent.input_json),
    )


def test_a_run_due_now_takes_the_servers_clock(queue: RunQueue) -> None:
    [answer] = queue.enqueue([new("one.kind")])
    assert answer.run.run_at == answer.run.created_at
    assert abs(answer.run.created_at - datetime.now(UTC)) < timedelta(seconds=30)


def test_a_key_met_again_answers_the_existing_run(queue: RunQueue) -> None:
    [first] = queue.enqueue([new("one.kind", idempotency_key="k-1")])
    [again] = queue.enqueue([new("one.kind", idempotency_key="k-1")])
    assert (first.created, again.created) == (True, False)
    assert again.run.id == first.run.id


def test_a_connection_that_lost_the_statement_prepares_it_again(queue: RunQueue) -> None:
    queue.enqueue([new("one.kind")])
    with _session(queue) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM pg_prepared_statements")]
        assert any(name.startswith("runce_enqueue_run_") for name in names)
        conn.execute("DEALLOCATE ALL")
    [answer] = queue.enqueue([new("one.kind")])
    assert queue.get(answer.run.id) == answer.run


def test_store_objects_share_a_pools_connection_and_schemas_never_share_a_name(
    queue: RunQueue, postgres_server: str
) -> None:
    import psycopg

    from runce.stores.postgres.prepared import Prepared

    queue.enqueue([new("one.kind")])  # the schema exists
    ours: Prepared = queue._db.prepared  # type: ignore[attr-defined]
    again = Prepared(ours._schema)  # another store object on the same schema
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        for prepared in (ours, again):  # the second finds the statement there already
            assert prepared.run(conn, "get_run", {"run_id": "none"}).ntuples == 0
        prepared_here = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
        assert prepared_here == (1,)
    elsewhere = Prepared("runce_another_schema")
    assert elsewhere._statement("get_run")[0] != ours._statement("get_run")[0]


def test_a_refusal_is_a_store_error_naming_the_run_and_keeps_the_connection(
    queue: RunQueue,
) -> None:
    sent = new("one.kind")
    queue.enqueue([sent])
    with pytest.raises(StoreError, match=f"enqueue run {sent.id}.*duplicate key") as caught:
        queue.enqueue([sent])  # the same id again: the primary key refuses it
    assert caught.value.__cause__ is not None
    [answer] = queue.enqueue([new("one.kind")])
    assert queue.get(answer.run.id) is not None


def test_placeholders_are_numbered_in_order_and_a_name_keeps_its_number() -> None:
    text, names = numbered("SELECT %(a)s, %(b)b, %(a)s::int, 'x' || %(c)s")
    assert names == ("a", "b", "c")
    assert text.startswith("SELECT $1, $2, $1::int")


def test_a_literal_percent_is_refused() -> None:
    with pytest.raises(ValueError, match="literal"):
        numbered("SELECT '100%%'")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        ("ż", "ż".encode()),
        (True, b"true"),
        (-(2**63), b"-9223372036854775808"),
        (datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=UTC), b"2030-01-02T03:04:05.000006+00:00"),
        ({"traceparent": "00-ab"}, b'{"traceparent": "00-ab"}'),
    ],
)
def test_values_go_as_the_server_reads_them(value: object, text: bytes | None) -> None:
    assert text_value(value) == text


def test_a_value_with_no_text_form_is_refused() -> None:
    with pytest.raises(TypeError, match="float"):
        text_value(1.5)
