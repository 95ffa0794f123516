"""Backfills survive SIGKILL (T-12): killed at five random moments, then finished, on
PostgreSQL, SQLite and MongoDB, transactional (exactly once) or not (at most one batch per
kill twice). On MongoDB each runner ends the transaction its killed predecessor left open
(killSessions) instead of waiting a minute for the server to. The million-row run is
``bench/backfill_crash.py``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.backfill_crash import (
    MongoRows,
    PostgresRows,
    Rows,
    SQLiteRows,
    kill_and_finish,
)
from tests.acceptance.conftest import (
    Workspace,
    mongo_workspace,
    postgres_workspace,
    stores_for,
)

pytestmark = pytest.mark.slow

# (rows, batch size): PostgreSQL and SQLite at 100,000 rows finish well inside half a minute
# here. SecantusDB (the suite's MongoDB) is a server written in Python, far slower: 100,000
# rows take it many minutes, so the suite uses fewer; `bench/backfill_crash.py --store mongo
# --rows 100000` runs the full size, on a real MongoDB too (RUNCE_TEST_MONGODB_URL).
SIZES = {"postgres": (100_000, 1000), "sqlite": (100_000, 1000), "mongo": (2_000, 100)}
# Its 20 batches paced so that one runner takes a second or more: a runner must not finish
# between two looks at its progress (each a count on that slow server), or no kill lands.
MONGO_THROTTLE = "50ms"


@pytest.fixture(params=["postgres", "sqlite", "mongo"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, Workspace, Rows]]:
    name = request.param
    if name == "postgres":
        for space in postgres_workspace(request, tmp_path):
            rows: Rows = PostgresRows(request.getfixturevalue("postgres_server"))
            yield name, space, rows
            rows.drop()
    elif name == "mongo":
        for space in mongo_workspace(request, tmp_path):
            rows = MongoRows(space.store, throttle=MONGO_THROTTLE)
            yield name, space, rows
            rows.drop()
    else:
        space = Workspace(tmp_path, stores_for(tmp_path)["sqlite"])
        yield name, space, SQLiteRows(tmp_path / ".runce" / "runce.db")
        space.reap()


@pytest.mark.parametrize("transactional", [True, False], ids=["transactional", "plain"])
def test_a_killed_backfill_resumes_from_its_checkpoints(
    backend: tuple[str, Workspace, Rows], transactional: bool
) -> None:
    name, workspace, rows = backend
    count, batch_size = SIZES[name]
    outcome = kill_and_finish(
        workspace,
        rows,
        count,
        batch_size=batch_size,
        transactional=transactional,
        kills=5,
        seed=uuid.uuid4().int,
    )
    assert outcome.kills >= 3, outcome.outputs
    assert sum(outcome.hits.values()) == count
    assert outcome.hits[0] == 0, "every row was processed"
    if transactional:
        assert outcome.hits == {1: count}, "exactly once"
    else:
        assert outcome.processed_twice <= outcome.kills * batch_size, outcome.hits
    resumed = [text for text in outcome.outputs[1:] if "resuming from cursor" in text]
    assert resumed, outcome.outputs
