"""What only the PostgreSQL run queue does: enqueueing in the caller's transaction, LISTEN/NOTIFY
across processes, the claim's plan, real processes racing, and workers that lose their
connections. The shared behaviour is in the queue contract suite (test_queue_contract.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from runce.domain.runs import ClaimRequest, KindLimit, NewRun, Outcome, RunFilter, run_after
from runce.errors import SchemaError, StoreError, StoreUnavailable, UsageError
from runce.stores.base import StoreSpec
from runce.stores.postgres import PostgresStore, open_store
from runce.stores.postgres.queries import MIGRATIONS, query, query_with
from runce.stores.postgres.queue import COUNTS_SETTINGS, RUNS_VERSION, channel_of
from tests import services
from tests.acceptance.conftest import clean_env

REPO = Path(__file__).resolve().parents[2]
RUNCE = str(Path(sys.executable).with_name("runce"))

Make = Callable[..., PostgresStore]
Conn = psycopg.Connection[Any]


@pytest.fixture
def make(postgres_server: str) -> Iterator[Make]:
    """Opens PostgreSQL stores, each in its own new schema unless one is named."""
    opened: list[PostgresStore] = []
    schemas: set[str] = set()

    def make(schema: str | None = None, **changes: Any) -> PostgresStore:
        name = schema or f"runce_t_{uuid.uuid4().hex[:12]}"
        schemas.add(name)
        store = open_store(
            StoreSpec(type="postgresql", url=postgres_server, schema=name, **changes)
        )
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    for name in schemas:
        services.drop_schema(postgres_server, name)


@pytest.fixture
def admin(postgres_server: str) -> Iterator[Conn]:
    """A plain autocommit connection to the test database, as a DBA would have."""
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        yield conn


def new(**fields: Any) -> NewRun:
    return NewRun(
        id=fields.pop("id", uuid.uuid4().hex),
        kind=fields.pop("kind", "email.send"),
        input_json=fields.pop("input_json", '{"to":"a@example.com"}'),
        max_attempts=fields.pop("max_attempts", 3),
        **fields,
    )


def _table(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def _terminate(admin: Conn, pids: list[int]) -> int:
    rows = admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids]
    ).fetchall()
    return sum(1 for (done,) in rows if done)


# --- enqueue in the caller's transaction ------------------------------------------------------


@pytest.fixture
def orders(admin: Conn) -> Iterator[str]:
    """A user table in a schema of its own, for the caller's own writes."""
    schema = f"app_{uuid.uuid4().hex[:10]}"
    admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    admin.execute(
        sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY, item text)").format(
            _table(schema, "orders")
        )
    )
    yield schema
    admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def _order(conn: Conn, schema: str, item: str) -> None:
    conn.execute(
        sql.SQL("INSERT INTO {} (item) VALUES (%s)").format(_table(schema, "orders")), [item]
    )


def test_a_run_enqueued_in_a_committed_transaction_exists(
    make: Make, postgres_server: str, orders: str
) -> None:
    store, waiter = make(), None
    store.runs.enqueue([new()])  # the schema exists
    waiter = make(store.schema).runs
    waiter.wait_for_work(0.01)  # listening from now on
    with psycopg.connect(postgres_server) as conn:  # psycopg's default: not autocommit
        _order(conn, orders, "book")
        [done] = store.runs.enqueue([new(idempotency_key="order-1")], connection=conn)
        assert done.created
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert store.runs.get(done.run.id) is None  # invisible until the caller commits
        began = time.monotonic()
        waiter.wait_for_work(0.3)
        assert time.monotonic() - began >= 0.25, "announced before the caller committed"
        conn.commit()
    began = time.monotonic()
    waiter.wait_for_work(5)
    assert time.monotonic() - began < 1, "the commit announced nothing"
    assert store.runs.get(done.run.id) == done.run
    claimed = store.runs.claim("w1", None, limit=10, lease=30)
    assert done.run.id in {run.id for run in claimed}


def test_a_rolled_back_transaction_leaves_no_run(
    make: Make, postgres_server: str, orders: str
) -> None:
    store = make()
    store.runs.enqueue([new()])
    with psycopg.connect(postgres_server) as conn:
        _order(conn, orders, "book")
        [done] = store.runs.enqueue([new(idempotency_key="order-2")], connection=conn)
        conn.rollback()
    assert store.runs.get(done.run.id) is None
    [again] = store.runs.enqueue([new(idempotency_key="order-2")])
    assert again.created, "the key of a rolled-back run is free"


def test_an_autocommit_connection_enqueues_inside_its_transaction_block(
    make: Make, postgres_server: str
) -> None:
    store = make()
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        with pytest.raises(UsageError, match="autocommit mode with no transaction open"):
            store.runs.enqueue([new()], connection=conn)
        with conn.transaction():
            [done] = store.runs.enqueue([new()], connection=conn)
            assert store.runs.get(done.run.id) is None
    assert store.runs.get(done.run.id) == done.run


def test_connection_must_be_a_psycopg_connection_to_the_stores_database(
    make: Make, postgres_server: str, tmp_path: Path
) -> None:
    store = make()
    with sqlite3.connect(tmp_path / "x.db") as lite, pytest.raises(UsageError, match="psycopg"):
        store.runs.enqueue([new()], connection=lite)
    other = services.create_database(postgres_server)
    try:
        refused = pytest.raises(UsageError, match="not to the PostgreSQL store's database 'test'")
        with psycopg.connect(other) as conn, refused:
            store.runs.enqueue([new()], connection=conn)
    finally:
        services.drop_database(postgres_server, other)


def test_enqueue_in_a_transaction_migrates_on_runces_own_connection(
    make: Make, postgres_server: str, admin: Conn
) -> None:
    store = make()
    with psycopg.connect(postgres_server) as conn:
        [done] = store.runs.enqueue([new()], connection=conn)
        conn.rollback()
    assert store.runs.get(done.run.id) is None
    assert store.schema_status().current == MIGRATIONS.latest, "the schema stays created"

    frozen = make(auto_migrate=False)
    with psycopg.connect(postgres_server) as conn:
        with pytest.raises(SchemaError, match="runce db upgrade"):
            frozen.runs.enqueue([new()], connection=conn)
        assert conn.execute("SELECT 1").fetchone() == (1,), "the caller's transaction is intact"


# --- reads before the runs tables exist, and the schema ---------------------------------------


def test_a_schema_from_before_the_runs_reads_as_empty_and_upgrades_on_a_write(
    make: Make, admin: Conn
) -> None:
    store = make()
    store.runs.enqueue([new()])
    # Make it a schema of version 1: the once-task tables only.
    for table in (
        "run_attempts",
        "runs",
        "workers",
        "schedules",
        "tokens",
        "checkpoints",
        "controls",
        "flow_buckets",
    ):
        admin.execute(sql.SQL("DROP TABLE {}").format(_table(store.schema, table)))
    admin.execute(
        sql.SQL("DELETE FROM {} WHERE version >= %s").format(
            _table(store.schema, "schema_version")
        ),
        [RUNS_VERSION],
    )
    old = make(store.schema)
    assert old.runs.get("x") is None
    assert old.runs.page(filters=RunFilter(), after=None, limit=10) == []
    assert old.runs.workers() == []
    assert old.runs.attempts("x") == []
    [done] = old.runs.enqueue([new()])
    assert old.runs.get(done.run.id) == done.run


def test_attempts_read_from_a_schema_at_version_7_have_no_traceback(
    make: Make, admin: Conn
) -> None:
    store = make()
    store.runs.enqueue([new()])
    [run] = store.runs.claim("w1", None, limit=1, lease=30)
    store.runs.complete([Outcome(run.fence, "retry", error="E", run_at=store.runs.now())])
    # Make it a schema of version 7: the attempts have no traceback column yet.
    attempts = _table(store.schema, "run_attempts")
    admin.execute(sql.SQL("ALTER TABLE {} DROP COLUMN traceback").format(attempts))
    versions = _table(store.schema, "schema_version")
    admin.execute(sql.SQL("DELETE FROM {} WHERE version >= 8").format(versions))
    [record] = make(store.schema).runs.attempts(run.id)  # reads never migrate
    assert (record.outcome, record.error, record.traceback) == ("retry", "E", None)


def test_the_database_refuses_bad_states_and_progress(make: Make, admin: Conn) -> None:
    store = make()
    [done] = store.runs.enqueue([new()])
    runs = _table(store.schema, "runs")
    with pytest.raises(psycopg.errors.CheckViolation):
        admin.execute(sql.SQL("UPDATE {} SET state = 'lost'").format(runs))
    with pytest.raises(psycopg.errors.CheckViolation):
        admin.execute(sql.SQL("UPDATE {} SET progress = 101").format(runs))
    types = dict(
        admin.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'runs'",
            [store.schema],
        ).fetchall()
    )
    assert (types["input"], types["result"], types["run_at"]) == (
        "jsonb",
        "jsonb",
        "timestamp with time zone",
    )
    [run] = store.runs.claim("w1", None, limit=1, lease=30)
    with pytest.raises(StoreError, match="check constraint"):
        store.runs.progress(run.fence, 150, None)
    assert store.runs.get(done.run.id) == run
    ddl = store.schema_sql()
    assert f'CREATE TABLE "{store.schema}".runs' in ddl
    assert "WHERE state = 'queued'" in ddl


# --- the worker's connections -----------------------------------------------------------------


def _worker_backend(store: PostgresStore) -> int:
    pid: int = store.runs._worker.run(lambda conn: conn.info.backend_pid, what="test")
    return pid


def test_the_worker_connection_plans_each_call_and_names_itself(make: Make, admin: Conn) -> None:
    store = make()
    setting = store.runs._worker.run(
        lambda conn: conn.execute("SHOW plan_cache_mode").fetchone(), what="test"
    )
    assert setting == ("force_custom_plan",)
    # No JIT: a claim on a table of millions of runs is estimated past jit_above_cost, and
    # compiling it took most of each round (bench/large_tables.py: 2,400 runs/s against 16,400).
    jit = store.runs._worker.run(lambda conn: conn.execute("SHOW jit").fetchone(), what="test")
    assert jit == ("off",)
    backend = _worker_backend(store)
    [name] = admin.execute(
        "SELECT application_name FROM pg_stat_activity WHERE pid = %s", [backend]
    ).fetchone() or [None]
    assert name is not None
    assert name.startswith(f"runce worker pid {os.getpid()} ")


def test_a_terminated_worker_connection_fails_one_call_and_the_next_reconnects(
    make: Make, admin: Conn
) -> None:
    store = make()
    store.runs.enqueue([new(), new()])
    first, second = store.runs.claim("w1", None, limit=2, lease=30)
    assert _terminate(admin, [_worker_backend(store)]) == 1
    with pytest.raises(StoreUnavailable, match=r"host 127\.0\.0\.1, port 5432, database test"):
        store.runs.heartbeat([first.fence], lease=30)
    assert store.runs.heartbeat([first.fence, second.fence], lease=30) == {
        first.id: "ok",
        second.id: "ok",
    }
    done, claimed = store.runs.exchange(
        [Outcome(first.fence, "succeeded")], ClaimRequest("w1", None, 5, 30)
    )
    assert done[0] is not None
    assert run_after(first, Outcome(first.fence, "succeeded"), done[0]).state == "succeeded"
    assert claimed == []


def test_a_terminated_worker_connection_fails_a_pipelined_limited_exchange_whole(
    make: Make, admin: Conn
) -> None:
    # The pipeline (BEGIN, outcomes, locks, count and claim, COMMIT) fails as one: the
    # outcome is not recorded, no run is claimed, and the next call reconnects.
    store = make()
    store.runs.enqueue([new(), new(), new()])
    [first] = store.runs.claim("w1", None, limit=1, lease=30)
    limited = ClaimRequest("w1", ("email.send",), 5, 30, (KindLimit("email.send", 100),))
    assert _terminate(admin, [_worker_backend(store)]) == 1
    with pytest.raises(StoreUnavailable):
        store.runs.exchange([Outcome(first.fence, "succeeded")], limited)
    assert store.runs.get(first.id).state == "running"
    assert Counter(run.state for run in store.runs.page(RunFilter(), None, 10)) == {
        "running": 1,
        "queued": 2,
    }
    done, claimed = store.runs.exchange([Outcome(first.fence, "succeeded")], limited)
    assert done[0] is not None
    assert len(claimed) == 2


def test_a_dropped_listening_connection_is_reopened(make: Make, admin: Conn) -> None:
    waiter, writer = make(), None
    waiter.runs.wait_for_work(0.01)
    writer = make(waiter.schema)
    listener = waiter.runs._listener._conn
    assert listener is not None
    assert _terminate(admin, [listener.info.backend_pid]) == 1
    began = time.monotonic()
    waiter.runs.wait_for_work(10)  # the drop ends the wait: news may have been missed
    waiter.runs.wait_for_work(10)  # listening again, it looks at once
    assert time.monotonic() - began < 3
    writer.runs.enqueue([new()])
    began = time.monotonic()
    waiter.runs.wait_for_work(10)
    assert time.monotonic() - began < 1


def test_an_unreachable_server_makes_waits_sleep_instead_of_raising(postgres_server: str) -> None:
    url = "postgresql://postgres@127.0.0.1:1/test"  # nothing listens on port 1
    store = open_store(StoreSpec(type="postgresql", url=url, schema="runce_t_nowhere"))
    try:
        began = time.monotonic()
        store.runs.wait_for_work(0.3)
        assert 0.25 <= time.monotonic() - began < 3
        with pytest.raises(StoreUnavailable, match="connection refused"):
            store.runs.claim("w1", None, limit=1, lease=30)
    finally:
        store.close()


# --- NOTIFY across processes ------------------------------------------------------------------

_ENQUEUER = """
import sys, time, uuid
from runce.stores.base import StoreSpec
from runce.stores.postgres import open_store
from runce.stores.queue import NewRun

url, schema = sys.argv[1:3]
store = open_store(StoreSpec(type="postgresql", url=url, schema=schema))
store.runs.now()  # connected
print("ready", flush=True)
sys.stdin.readline()
time.sleep(0.2)  # let the parent start waiting
store.runs.enqueue([NewRun(id=uuid.uuid4().hex, kind="k", input_json="{}", max_attempts=1)])
print(time.time(), flush=True)
store.close()
"""


def test_a_notify_wakes_a_waiter_in_another_process_within_a_second(
    make: Make, postgres_server: str
) -> None:
    store = make()
    store.runs.enqueue([new()])
    store.runs.wait_for_work(0.01)  # LISTEN from now on
    child = subprocess.Popen(
        [sys.executable, "-c", _ENQUEUER, postgres_server, store.schema],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        child.stdin.write("go\n")
        child.stdin.flush()
        store.runs.wait_for_work(20)
        woke = time.time()
        enqueued = float(child.stdout.readline())
    finally:
        child.communicate(timeout=30)
    assert child.returncode == 0
    assert woke - enqueued < 1.0, f"woke {woke - enqueued:.3f}s after the enqueue"
    assert channel_of(store.schema) == f"runce.runs.{store.schema}"


# --- the claim's plan -------------------------------------------------------------------------


def _plan(conn: Conn, statement: sql.Composed, params: dict[str, Any]) -> str:
    rows = conn.execute(sql.SQL("EXPLAIN ") + statement, params).fetchall()
    return "\n".join(row[0] for row in rows)


def _worker_plan(store: PostgresStore, name: str, params: dict[str, Any]) -> str:
    """The plan on the queue's own worker connection, with its settings."""
    statement = query(name, store.schema)
    plan: str = store.runs._worker.run(lambda conn: _plan(conn, statement, params), what="test")
    return plan


def test_the_claim_reads_the_partial_claim_index(make: Make, admin: Conn) -> None:
    store = make()
    q = store.runs
    for _ in range(6):
        q.enqueue([new(input_json=json.dumps({"n": i})) for i in range(1000)])
    for _ in range(4):  # a third of them finished: rows a claim must never read
        runs = q.claim("w1", None, limit=500, lease=30)
        q.complete([Outcome(run.fence, "succeeded") for run in runs])
    claim = {"worker_id": "w", "claim_kinds": None, "limit": 100, "lease": 30.0}
    running = q.claim("w1", None, limit=100, lease=30)
    outcomes = {
        "ids": [r.id for r in running],
        "attempts": [r.attempt for r in running],
        "workers": ["w1"] * len(running),
        "kinds": ["succeeded"] * len(running),
        "results": [None] * len(running),
        "output_refs": [None] * len(running),
        "errors": [None] * len(running),
        "run_ats": [None] * len(running),
        "tracebacks": [None] * len(running),
    }

    # No statistics yet (autovacuum has not analyzed the table): the worker's connection
    # still reads the claim index in claim order, and acknowledges by primary key.
    fresh = _worker_plan(store, "claim_runs", claim)
    assert "Index Scan using runs_claim" in fresh, fresh
    assert "Seq Scan" not in fresh, fresh
    assert "Sort" not in fresh, fresh
    exchange = _worker_plan(store, "exchange_runs", {**claim, **outcomes})
    assert "Index Scan using runs_pkey on runs r " in exchange, exchange
    assert "Seq Scan" not in exchange, exchange
    assert "Index Scan using runs_claim" in exchange, exchange

    # With statistics, any connection plans the claim on the claim index.
    admin.execute(sql.SQL("ANALYZE {}").format(_table(store.schema, "runs")))
    for kinds in (None, ["email.send", "other"]):
        params = {**claim, "claim_kinds": kinds}
        for plan in (
            _plan(admin, query("claim_runs", store.schema), params),
            _worker_plan(store, "claim_runs", params),
        ):
            assert "Index Scan using runs_claim" in plan, plan
            assert "Seq Scan" not in plan, plan

    # Acknowledging a batch never goes by the statistics of states: the ANALYZE above saw
    # 100 running runs of 6,000; read through runs_lease, many more would look like few.
    plan = _plan(admin, query("exchange_runs", store.schema), {**claim, **outcomes})
    assert "runs_lease" not in plan, plan
    assert "runs_state" not in plan, plan


def test_a_limited_claim_of_a_kind_without_keys_reads_only_its_first_due_runs(
    make: Make, admin: Conn
) -> None:
    # A limit per kind that binds: the claim needs the kind's first due runs, which the
    # claim index gives in order. Numbering every queued run per key (a window over the
    # whole backlog, sorted) is only for kinds whose queued runs have keys.
    store = make()
    q = store.runs
    for _ in range(3):
        q.enqueue([new(input_json=json.dumps({"n": i})) for i in range(1000)])
    q.enqueue([new(kind="keyed", concurrency_key=f"c{i % 7}") for i in range(50)])
    admin.execute(sql.SQL("ANALYZE {}").format(_table(store.schema, "runs")))
    statement = sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + query("flow_candidates", store.schema)

    def candidates(kinds: list[str]) -> tuple[list[dict[str, Any]], int]:
        def work(conn: Conn) -> tuple[list[dict[str, Any]], int]:
            [(plan,)] = conn.execute(statement, {"kinds": kinds, "most": 5}).fetchall()
            rows = conn.execute(
                query("flow_candidates", store.schema), {"kinds": kinds, "most": 5}
            ).fetchall()
            return _nodes(plan[0]["Plan"]), len(rows)

        found: tuple[list[dict[str, Any]], int] = store.runs._worker.run(work, what="test")
        return found

    nodes, rows = candidates(["email.send"])
    assert rows == 5
    read = sum(node.get("Actual Rows", 0) * node.get("Actual Loops", 0) for node in nodes)
    assert read < 50, [(n["Node Type"], n.get("Actual Rows"), n.get("Index Name")) for n in nodes]
    # A kind with keys is numbered per key: five of each of its seven keys.
    nodes, rows = candidates(["keyed", "email.send"])
    assert rows == 7 * 5 + 5


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


# --- real processes racing --------------------------------------------------------------------

_RACER = """
import json, sys, uuid
from runce.stores.base import StoreSpec
from runce.stores.postgres import open_store
from runce.stores.queue import ClaimRequest, NewRun, Outcome, RunFilter

url, schema, name = sys.argv[1:4]
store = open_store(StoreSpec(type="postgresql", url=url, schema=schema))
q = store.runs
q.now()
print("ready", flush=True)
sys.stdin.readline()
claimed, lost, held = [], 0, []
for i in range(25):
    q.enqueue([NewRun(uuid.uuid4().hex, "race", "{}", 3) for _ in range(8)])
    done, runs = q.exchange(
        [Outcome(r.fence, "succeeded") for r in held], ClaimRequest(name, None, 7, 30)
    )
    lost += sum(d is None for d in done)
    claimed += [r.id for r in runs]
    held = runs
while True:
    done, runs = q.exchange(
        [Outcome(r.fence, "succeeded") for r in held], ClaimRequest(name, None, 7, 30)
    )
    lost += sum(d is None for d in done)
    if not runs:
        break
    claimed += [r.id for r in runs]
    held = runs
print(json.dumps({"claimed": claimed, "lost": lost}), flush=True)
store.close()
"""


@pytest.mark.slow
def test_eight_processes_racing_enqueue_and_claim_never_share_a_run(
    make: Make, postgres_server: str, admin: Conn
) -> None:
    store = make()
    store.runs.enqueue([new()])  # the schema exists; this run is claimed too
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, postgres_server, store.schema, f"w{i}"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=30)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    claimed: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        report = json.loads(out)
        assert report["lost"] == 0
        claimed += report["claimed"]
    counts = Counter(claimed)
    assert len(counts) == 8 * 25 * 8 + 1
    assert set(counts.values()) == {1}, "a run was claimed twice"
    states = admin.execute(
        sql.SQL("SELECT state, count(*) FROM {} GROUP BY state").format(
            _table(store.schema, "runs")
        )
    ).fetchall()
    assert states == [("succeeded", 8 * 25 * 8 + 1)]


# --- workers while their connections are cut --------------------------------------------------

_JOBS = """
import os, time
import runce

LOG = os.environ["RUNCE_TEST_LOG"]


@runce.job("noop.record")
def noop_record(params, ctx):
    time.sleep(0.05)
    with open(LOG, "a") as handle:  # one short O_APPEND write: lines never interleave
        handle.write(f"{ctx.run.id} {ctx.run.attempt} {os.getpid()}\\n")
"""


@pytest.mark.slow
def test_workers_whose_connections_are_cut_finish_every_run_once(
    make: Make, postgres_server: str, admin: Conn, tmp_path: Path
) -> None:
    """A server restart, as far as the workers can tell: every connection of theirs is cut,
    again and again, while they work (pg_terminate_backend on their backends only: other
    tests share this server, and a real restart would break them)."""
    store = make()
    schema = store.schema
    total = 500
    ids = [
        r.run.id
        for r in store.runs.enqueue(
            [
                new(kind="noop.record", input_json=json.dumps({"i": i}), max_attempts=5)
                for i in range(total)
            ]
        )
    ]
    (tmp_path / "jobs.py").write_text(_JOBS)
    (tmp_path / "runce.toml").write_text(
        textwrap.dedent(
            f"""
            store = "{postgres_server}"
            schema = "{schema}"
            [worker]
            handlers = ["jobs"]
            lease = 3
            poll = 0.2
            backoff_base = 0.05
            shutdown_timeout = 2
            """
        )
    )
    log = tmp_path / "log.txt"
    workers = [
        subprocess.Popen(
            [RUNCE, "worker", "--concurrency", "4", "--max-time", "100"],
            cwd=tmp_path,
            env=clean_env(RUNCE_TEST_LOG=str(log)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    pattern = "^runce [a-z]+ pid (" + "|".join(str(w.pid) for w in workers) + ") "
    runs = _table(schema, "runs")

    def finished() -> int:
        row = admin.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE state = 'succeeded'").format(runs)
        ).fetchone()
        return int(row[0]) if row else 0

    cuts = 0
    try:
        deadline = time.monotonic() + 90
        while finished() < total:
            assert time.monotonic() < deadline, f"only {finished()} of {total} runs finished"
            assert all(w.poll() is None for w in workers), "a worker exited"
            if cuts < 8 and log.exists():
                backends = [
                    pid
                    for (pid,) in admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE application_name ~ %s",
                        [pattern],
                    ).fetchall()
                ]
                cuts += 1 if _terminate(admin, backends) else 0
            time.sleep(0.35)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=30) for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert cuts >= 3, "the workers were never cut off"
    assert "worker.error" in "".join(err for _, err in outputs), "no worker noticed"

    executed: dict[str, list[int]] = defaultdict(list)
    for line in log.read_text().splitlines():
        run_id, attempt, _pid = line.split()
        executed[run_id].append(int(attempt))
    assert set(executed) == set(ids)
    for run_id in ids:
        run = store.runs.get(run_id)
        assert run is not None
        assert run.state == "succeeded", run
        attempts = executed[run_id]
        assert attempts.count(run.attempt) == 1, (run_id, attempts)
        assert len(attempts) == len(set(attempts)), (run_id, attempts)
        # Executed again only when the earlier attempt's outcome was never recorded: its
        # lease expired and it was reclaimed.
        unrecorded = {
            a.attempt for a in store.runs.attempts(run_id) if a.outcome == "lease-expired"
        }
        assert set(attempts) - {run.attempt} <= unrecorded, (run_id, attempts)
    assert store.runs.page(RunFilter(), None, 1)[0].finished


def test_lease_expiry_is_measured_on_the_servers_clock(make: Make) -> None:
    store = make()
    store.runs.enqueue([new()])
    [run] = store.runs.claim("w1", None, limit=1, lease=30)
    assert run.lease_expires_at is not None
    assert run.started_at is not None
    assert run.lease_expires_at - run.started_at == timedelta(seconds=30)
    assert run.claimed_at == run.started_at == run.updated_at


def test_a_run_named_twice_in_one_batch_of_outcomes_is_applied_in_order(make: Make) -> None:
    queue = make().runs
    queue.enqueue([new(), new()])
    run, other = queue.claim("w1", None, limit=2, lease=30)
    stale = Outcome(run.fence, "released")
    done = queue.complete([stale, Outcome(run.fence, "succeeded")])
    assert done[0] is not None
    assert done[1] is None  # the claim it names was handed back by the first
    assert queue.get(run.id) == run_after(run, stale, done[0])
    acked, _ = queue.exchange(
        [Outcome(other.fence, "retry", run_at=queue.now()), Outcome(other.fence, "failed")],
        ClaimRequest("w1", None, 1, 30),
    )
    assert acked[0] is not None
    assert acked[1] is None


# --- listing reads indexes, never the whole table -------------------------------------------


def _scans(plan: dict[str, Any]) -> list[str]:
    """Each scan of a plan: its type, index and index condition."""
    found = []
    if "Scan" in plan["Node Type"]:
        found.append(f"{plan['Node Type']} {plan.get('Index Name')} {plan.get('Index Cond')}")
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


def test_a_page_with_no_leading_filter_is_read_by_index_not_sorted_whole(
    make: Make, admin: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make()
    queue = store.runs
    queue.enqueue([new()])  # creates the schema
    schema = queue._db.target.schema
    admin.execute(
        sql.SQL(
            "INSERT INTO {} (id, kind, input, state, max_attempts, run_at, created_at, "
            "updated_at) SELECT 'r' || g, 'k', '{{}}', (ARRAY['queued', 'succeeded', "
            "'failed'])[1 + g % 3], 3, now(), now() - g * interval '1 second', now() "
            "FROM generate_series(1, 3000) AS g"
        ).format(_table(schema, "runs"))
    )
    admin.execute(sql.SQL("ANALYZE {}").format(_table(schema, "runs")))
    sent: list[tuple[Any, Any]] = []
    import runce.stores.postgres.queue as pg_queue

    original = pg_queue._runs

    def recorded(conn: Conn, statement: Any, params: Any) -> Any:
        sent.append((statement, params))
        return original(conn, statement, params)

    monkeypatch.setattr(pg_queue, "_runs", recorded)
    page = queue.page(RunFilter(), None, 51)
    assert [r.created_at for r in page] == sorted((r.created_at for r in page), reverse=True)
    assert len(page) == 51
    statement, params = sent[-1]
    text = psycopg.ClientCursor(admin).mogrify(statement, params)
    with admin.transaction():
        admin.execute("SET LOCAL enable_seqscan = off")
        admin.execute("SET LOCAL enable_bitmapscan = off")
        [(plan,)] = admin.execute(f"EXPLAIN (FORMAT JSON) {text}".encode()).fetchall()
    # Each state's newest, from its range of the state index: never every run, sorted.
    scans = _scans(plan[0]["Plan"])
    assert len(scans) == 5, scans
    # runs_lease, runs_flow and runs_claim are partial indexes of one state each.
    pattern = (
        r"Index Scan (runs_state \(state = '\w+'::text\)|runs_lease None|runs_flow None"
        r"|runs_claim None)"
    )
    assert all(re.fullmatch(pattern, scan) for scan in scans), scans


def test_a_claim_of_kinds_never_reads_their_finished_history(make: Make, admin: Conn) -> None:
    """A kind with much finished history and a few due runs, statistics taken before the
    kind had runs (a queue's statistics are always stale): the claim walks runs_claim's due
    runs, not every run of the kind through the listing index; a page of the kind uses it."""
    store = make()
    queue = store.runs
    queue.enqueue([new()])  # creates the schema
    runs = _table(store.schema, "runs")
    admin.execute(  # what the statistics know: other kinds, finished, and a backlog
        sql.SQL(
            "INSERT INTO {} (id, kind, input, state, attempt, max_attempts, run_at, created_at, "
            "updated_at, finished_at) SELECT 'o' || g, 'other.kind', '{{}}', CASE WHEN g % 5 = 0 "
            "THEN 'queued' ELSE 'succeeded' END, 1, 3, now() + interval '1 day', now(), now(), "
            "CASE WHEN g % 5 = 0 THEN NULL ELSE now() END FROM generate_series(1, 10000) AS g"
        ).format(runs)
    )
    admin.execute(sql.SQL("ANALYZE {}").format(runs))
    admin.execute(
        sql.SQL(
            "INSERT INTO {} (id, kind, input, state, attempt, max_attempts, run_at, created_at, "
            "updated_at, finished_at) SELECT 'f' || g, 'report.build', '{{}}', 'succeeded', 1, "
            "3, now(), now() - g * interval '1 second', now(), now() FROM generate_series(1, "
            "5000) AS g"
        ).format(runs)
    )
    queue.enqueue([new(kind="report.build") for _ in range(300)])
    claim = {"worker_id": "w", "claim_kinds": ["report.build"], "limit": 100, "lease": 30.0}
    for plan in (
        _worker_plan(store, "claim_runs", claim),
        _plan(admin, query("claim_runs", store.schema), claim),
    ):
        assert "Index Scan using runs_claim" in plan, plan
        assert "runs_kind" not in plan, plan
        assert "runs_queued" not in plan, plan
    assert len(queue.claim("w1", ["report.build"], limit=100, lease=30)) == 100

    page = queue.page(RunFilter(kind="report.build", state="succeeded"), None, 10)
    assert [r.id for r in page] == [f"f{g}" for g in range(1, 11)]
    statement = sql.SQL(
        "SELECT id FROM {} WHERE kind || '' = 'report.build' ORDER BY created_at DESC LIMIT 10"
    ).format(runs)
    with admin.transaction():
        admin.execute("SET LOCAL enable_seqscan = off")
        plan = _plan(admin, statement, {})
    assert "runs_kind" in plan, plan


def _rows_read(plan: dict[str, Any]) -> int:
    """The rows every scan of an executed plan returned, over all its loops."""
    found = plan["Actual Rows"] * plan["Actual Loops"] if "Scan" in plan["Node Type"] else 0
    return found + sum(_rows_read(child) for child in plan.get("Plans", []))


def test_the_counts_read_bounded_index_ranges_never_the_history(make: Make, admin: Conn) -> None:
    """20,000 runs finished two days ago, 3,000 queued of one kind and a few of another:
    the counts (metrics, dashboard) read at most the cap per queued kind and the cap of
    running and recently finished runs, through indexes, whatever the statistics say."""
    store = make()
    queue = store.runs
    queue.enqueue([new(kind="k.small", run_at=queue.now() + timedelta(hours=1))])
    runs = _table(store.schema, "runs")
    admin.execute(
        sql.SQL(
            "INSERT INTO {} (id, kind, input, state, attempt, max_attempts, run_at, created_at, "
            "updated_at, finished_at) SELECT 'f' || g, 'k.' || (g % 4), '{{}}', 'succeeded', 1, "
            "3, now() - interval '2 days', now() - interval '2 days', now(), "
            "now() - interval '2 days' FROM generate_series(1, 20000) AS g"
        ).format(runs)
    )
    admin.execute(sql.SQL("ANALYZE {}").format(runs))  # statistics without the backlog
    admin.execute(
        sql.SQL(
            "INSERT INTO {} (id, kind, input, state, max_attempts, run_at, created_at, "
            "updated_at) SELECT 'q' || g, 'k.big', '{{}}', 'queued', 3, "
            "now() - g * interval '1 second', now(), now() FROM generate_series(1, 3000) AS g"
        ).format(runs)
    )
    done = [queue.claim("w1", ["k.big"], limit=1, lease=30)[0] for _ in range(2)]
    queue.complete([Outcome(done[0].fence, "succeeded")])

    counts = queue.run_counts(cap=1000)
    assert dict(counts.counts) == {
        ("k.big", "queued"): 1000,  # 2,998: cut at the cap
        ("k.big", "running"): 1,
        ("k.big", "succeeded"): 1,  # the 20,000 older than an hour are not counted
        ("k.small", "queued"): 1,
    }
    assert counts.capped == {"queued"}
    oldest = admin.execute(
        sql.SQL("SELECT min(run_at) FROM {} WHERE state = 'queued' AND kind = 'k.big'").format(runs)
    ).fetchone()
    assert oldest is not None
    assert counts.oldest_due == {"k.big": oldest[0]}

    since = sql.SQL("now() - interval '1 hour'")
    statement = query_with("run_counts", store.schema, since=since, limit=sql.Literal(1001))
    with admin.transaction():
        admin.execute(COUNTS_SETTINGS)
        [(plan,)] = admin.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + statement).fetchall()
    scans = _scans(plan[0]["Plan"])
    assert not [scan for scan in scans if "Seq Scan" in scan or "Bitmap" in scan], scans
    assert _rows_read(plan[0]["Plan"]) < 1100, scans  # of 23,001 runs
