"""A backfill killed with SIGKILL at random moments, on a real database, then finished.

Each row of a table starts with ``hits = 0``; the backfill adds 1 to every row it processes.
Afterwards a transactional backfill must have left every row at exactly 1; one that is not
transactional may have processed, per kill, at most the one batch it was in twice. Used by
the acceptance suite (small tables) and by ``bench/backfill_crash.py`` (a million rows).
"""

from __future__ import annotations

import contextlib
import random
import signal
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tests.acceptance.conftest import Workspace, output_of

TASK_ID = "2025-06-01.backfill-hits"


class Rows(Protocol):
    """The table the backfill works on, in one kind of database."""

    def create(self, count: int) -> None: ...

    def task_body(self, batch_size: int, transactional: bool) -> str: ...

    def touched(self) -> int: ...

    def hits(self) -> Counter[int]: ...

    def drop(self) -> None: ...

    def settle(self) -> None:
        """After a runner was killed: end what the server still holds for it."""


LOOK_MAX = 0.2  # seconds between two looks at a runner's progress, at most


@dataclass
class Outcome:
    kills: int = 0
    outputs: list[str] = field(default_factory=list)
    hits: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def processed_twice(self) -> int:
        """How many row-processings were repeats."""
        return sum((hits - 1) * rows for hits, rows in self.hits.items() if hits > 1)


def kill_and_finish(
    workspace: Workspace,
    rows: Rows,
    count: int,
    *,
    batch_size: int,
    transactional: bool,
    kills: int = 5,
    seed: int | None = None,
    timeout: float = 600,
) -> Outcome:
    """Kill ``runce run`` at ``kills`` random points of progress, then let it finish."""
    rows.create(count)
    workspace.write_config("[lock]\nttl = 2\n")
    workspace.task(TASK_ID, rows.task_body(batch_size, transactional))
    chooser = random.Random(seed)
    marks = sorted(chooser.uniform(0.05, 0.9) * count for _ in range(kills))
    outcome = Outcome()
    began = time.monotonic()
    for mark in marks:
        runner = workspace.start("run")
        if _wait_for_progress(runner, rows, mark, timeout):
            time.sleep(chooser.uniform(0, 0.05))  # land anywhere in a batch
            runner.send_signal(signal.SIGKILL)
            outcome.kills += 1
        runner.wait(timeout=timeout)
        rows.settle()
        out, err = runner.communicate()
        outcome.outputs.append(out + err)
    final = workspace.runce("run", timeout=timeout)
    outcome.outputs.append(output_of(final))
    assert final.returncode == 0, output_of(final)
    outcome.seconds = time.monotonic() - began
    outcome.hits = rows.hits()
    return outcome


def _wait_for_progress(
    runner: subprocess.Popen[str], rows: Rows, mark: float, timeout: float
) -> bool:
    """True once ``mark`` rows were touched while the runner still runs.

    Counting the touched rows scans the table: between two counts the test waits four times
    as long as the last one took, so it never takes more than a fifth of a database that
    counts slowly (SecantusDB, a server in Python, with 100,000 documents) from the runner.
    """
    deadline = time.monotonic() + timeout
    while runner.poll() is None:
        began = time.monotonic()
        if rows.touched() >= mark:
            return True
        assert time.monotonic() < deadline, "the backfill made no progress"
        # ... but never more than LOOK_MAX: a fast runner must not finish between two looks.
        time.sleep(min(LOOK_MAX, max(0.005, 4 * (time.monotonic() - began))))
    return False


# --- PostgreSQL --------------------------------------------------------------------------------


class PostgresRows:
    def __init__(self, url: str) -> None:
        self.url = url
        self.table = f"bf_rows_{uuid.uuid4().hex[:10]}"

    def _run(self, statement: str) -> list[tuple[int, ...]]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(statement)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def create(self, count: int) -> None:
        self._run(
            f"CREATE TABLE public.{self.table} AS SELECT g AS id, 0 AS hits "
            f"FROM generate_series(1, {count}) g; "
            f"ALTER TABLE public.{self.table} ADD PRIMARY KEY (id)"
        )

    def task_body(self, batch_size: int, transactional: bool) -> str:
        table = f"public.{self.table}"
        return f"""
import psycopg

_own = None

def _conn(ctx):
    if {transactional!r}:  # ctx.db: the batch's transaction
        return ctx.db
    global _own
    if _own is None:
        _own = psycopg.connect({self.url!r}, autocommit=True)
    return _own

def fetch(ctx, cursor, size):
    rows = _conn(ctx).execute(
        "SELECT id FROM {table} WHERE id > %s ORDER BY id LIMIT %s", (cursor or 0, size)
    ).fetchall()
    batch = [r[0] for r in rows]
    return batch, (batch[-1] if len(batch) == size else None)

def process(ctx, batch):
    _conn(ctx).execute(
        "UPDATE {table} SET hits = hits + 1 WHERE id = ANY(%s)", (batch,)
    )

task = runce.Backfill(
    title="count hits", fetch=fetch, process=process,
    batch_size={batch_size}, transactional={transactional},
)
"""

    def touched(self) -> int:
        return self._run(f"SELECT count(*) FROM public.{self.table} WHERE hits > 0")[0][0]

    def hits(self) -> Counter[int]:
        found = self._run(f"SELECT hits, count(*) FROM public.{self.table} GROUP BY hits")
        return Counter(dict(found))

    def settle(self) -> None:
        pass  # nothing outlives a killed runner here

    def drop(self) -> None:
        self._run(f"DROP TABLE IF EXISTS public.{self.table}")


# --- SQLite ---------------------------------------------------------------------------------


class SQLiteRows:
    """The rows live in the store's own file, so ``ctx.db`` reaches them."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    def create(self, count: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("CREATE TABLE bf_rows (id INTEGER PRIMARY KEY, hits INTEGER NOT NULL)")
            conn.executemany(
                "INSERT INTO bf_rows VALUES (?, 0)", ((i,) for i in range(1, count + 1))
            )
        conn.close()

    def task_body(self, batch_size: int, transactional: bool) -> str:
        return f"""
import sqlite3

_own = None

def _conn(ctx):
    if {transactional!r}:  # ctx.db: the batch's transaction
        return ctx.db
    global _own
    if _own is None:
        _own = sqlite3.connect({str(self.path)!r}, timeout=30, isolation_level=None)
    return _own

def fetch(ctx, cursor, size):
    rows = _conn(ctx).execute(
        "SELECT id FROM bf_rows WHERE id > ? ORDER BY id LIMIT ?", (cursor or 0, size)
    ).fetchall()
    batch = [r[0] for r in rows]
    return batch, (batch[-1] if len(batch) == size else None)

def process(ctx, batch):
    marks = ",".join("?" * len(batch))
    _conn(ctx).execute(f"UPDATE bf_rows SET hits = hits + 1 WHERE id IN ({{marks}})", batch)

task = runce.Backfill(
    title="count hits", fetch=fetch, process=process,
    batch_size={batch_size}, transactional={transactional},
)
"""

    def touched(self) -> int:
        conn = self._connect()
        try:
            return int(conn.execute("SELECT count(*) FROM bf_rows WHERE hits > 0").fetchone()[0])
        except sqlite3.OperationalError:  # locked for longer than the wait: ask again
            return 0
        finally:
            conn.close()

    def hits(self) -> Counter[int]:
        conn = self._connect()
        try:
            found = conn.execute("SELECT hits, count(*) FROM bf_rows GROUP BY hits").fetchall()
        finally:
            conn.close()
        return Counter(dict(found))

    def settle(self) -> None:
        pass  # nothing outlives a killed runner here

    def drop(self) -> None:
        pass


# --- MongoDB --------------------------------------------------------------------------------


class MongoRows:
    """``throttle`` paces the task's batches (a Backfill throttle): on a small table a
    runner must not finish between two looks at its progress, or no kill lands."""

    def __init__(self, url: str, throttle: str | None = None) -> None:
        self.url = url  # with the database in its path
        self.collection = f"bf_rows_{uuid.uuid4().hex[:10]}"
        self.throttle = throttle
        self._client: Any = None  # one client for every look: connecting is the slow part

    def _coll(self):  # type: ignore[no-untyped-def]
        import pymongo

        if self._client is None:
            self._client = pymongo.MongoClient(self.url)
        return contextlib.nullcontext(), self._client.get_default_database()[self.collection]

    def create(self, count: int) -> None:
        client, coll = self._coll()
        with client:
            coll.insert_many([{"_id": i, "hits": 0} for i in range(1, count + 1)])

    def task_body(self, batch_size: int, transactional: bool) -> str:
        return f"""
import pymongo

_own = None

def _coll(ctx):
    # A session works only with the client that started it: runce's, when transactional.
    global _own
    if ctx.session is not None:
        client = ctx.session.client
    else:
        client = _own = _own or pymongo.MongoClient({self.url!r})
    return client.get_default_database()[{self.collection!r}]

def fetch(ctx, cursor, size):
    found = _coll(ctx).find({{"_id": {{"$gt": cursor or 0}}}}, {{"_id": 1}}, session=ctx.session)
    batch = [d["_id"] for d in found.sort("_id", 1).limit(size)]
    return batch, (batch[-1] if len(batch) == size else None)

def process(ctx, batch):
    _coll(ctx).update_many(
        {{"_id": {{"$in": batch}}}}, {{"$inc": {{"hits": 1}}}}, session=ctx.session
    )

task = runce.Backfill(
    title="count hits", fetch=fetch, process=process,
    batch_size={batch_size}, transactional={transactional}, throttle={self.throttle!r},
)
"""

    def touched(self) -> int:
        client, coll = self._coll()
        with client:
            return int(coll.count_documents({"hits": {"$gt": 0}}))

    def hits(self) -> Counter[int]:
        client, coll = self._coll()
        with client:
            found = coll.aggregate([{"$group": {"_id": "$hits", "rows": {"$sum": 1}}}])
            return Counter({doc["_id"]: doc["rows"] for doc in found})

    def drop(self) -> None:
        client, coll = self._coll()
        with client:
            coll.drop()
        self._client.close()
        self._client = None

    def settle(self) -> None:
        # A killed runner may leave a transaction open (MongoDB aborts it after a minute,
        # SecantusDB much later), holding the next runner's writes: end it now, as the
        # server would, so the next runner is timed and not the server's patience.
        self._coll()
        self._client.admin.command("killAllSessions", [])
