"""What only the PostgreSQL store does: its URL and schema, versioned migrations, the
advisory lock on a dedicated session, transactional tasks and connection errors. The shared
behaviour is in the contract suite (test_contract.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runce.domain.locks import Lease
from runce.errors import ConfigError, LockLost, SchemaError, StoreError, StoreUnavailable
from runce.stores.base import StoreSpec
from runce.stores.liveness import current_owner
from runce.stores.postgres import PostgresStore, open_store
from runce.stores.postgres.lock import application_name
from runce.stores.postgres.queries import MIGRATIONS
from runce.stores.sql.files import migration_version
from tests import services
from tests.stores.records import applied_for, finished, started

REPO = Path(__file__).resolve().parents[2]

Make = Callable[..., PostgresStore]


def _schema_name() -> str:
    return f"runce_t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make(postgres_server: str) -> Iterator[Make]:
    """Opens PostgreSQL stores, each in its own new schema unless one is named."""
    opened: list[PostgresStore] = []
    schemas: set[str] = set()

    def make(schema: str | None = None, url: str | None = None, **changes: Any) -> PostgresStore:
        name = schema or _schema_name()
        schemas.add(name)
        spec = StoreSpec(type="postgresql", url=url or postgres_server, schema=name, **changes)
        store = open_store(spec)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    for name in schemas:
        services.drop_schema(postgres_server, name)


@pytest.fixture
def sql(postgres_server: str) -> Iterator[psycopg.Connection[Any]]:
    """A plain autocommit connection to the test database, as a user or a DBA would have."""
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        yield conn


def _record(store: PostgresStore, task_id: str, lease: Lease | None = None) -> None:
    row = finished(started(task_id))
    store.tracker.record(row, applied_for(row), lease)


def _schema_exists(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()
    return row is not None and row[0] == 1


def _leased(store: PostgresStore, label: str = "tester") -> Lease:
    lease = store.lock.try_acquire(current_owner(label), ttl=30)
    assert lease is not None
    return lease


def _eventually(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


# --- where the store is -------------------------------------------------------------------


def test_the_description_masks_the_password_and_names_the_schema(make: Make) -> None:
    store = make("runce", url="postgresql://app:s3cret@db.example:6543/prod")
    assert store.description == "postgresql://app:***@db.example:6543/prod (schema runce)"
    assert "s3cret" not in store.description


def test_the_url_may_come_from_the_tracker_options(postgres_server: str) -> None:
    spec = StoreSpec(type="postgres", options={"uri": postgres_server, "schema": "runce_opt"})
    store = open_store(spec)
    assert store.schema == "runce_opt"
    assert store.description.startswith(postgres_server)
    store.close()


def test_the_urls_parameters_reach_every_session(make: Make, postgres_server: str) -> None:
    # docs/runs.md's knob: server settings for runce's sessions go in the URL's `options`.
    joiner = "&" if "?" in postgres_server else "?"
    store = make(url=f"{postgres_server}{joiner}options=-c%20synchronous_commit%3Doff")
    row = finished(started("t.async"))
    store.tracker.record(row, applied_for(row), None)
    setting = store._db.plain(  # the store's own session
        lambda conn: conn.execute("SHOW synchronous_commit").fetchone(), what="read a setting"
    )
    assert setting == ("off",)
    assert list(store.tracker.applied()) == ["t.async"]


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        (StoreSpec(type="postgresql"), "needs a URL"),
        (StoreSpec(type="postgresql", url="postgresql://h/db", schema="bad-name"), "bad-name"),
        (StoreSpec(type="postgresql", url="postgresql://h/db", schema="pg_mine"), "pg_mine"),
        (StoreSpec(type="postgresql", url="postgresql://h/db", options={"colour": 1}), "colour"),
    ],
    ids=["no-url", "bad-schema", "reserved-schema", "unknown-option"],
)
def test_bad_settings_are_config_errors(spec: StoreSpec, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        open_store(spec)


# --- reads never create ----------------------------------------------------------------------


def test_reads_on_a_missing_schema_create_nothing(make: Make, sql: psycopg.Connection[Any]) -> None:
    store = make()
    assert store.tracker.applied() == {}
    assert store.tracker.history() == []
    assert store.tracker.history("x") == []
    assert store.tracker.open_attempts() == []
    assert store.lock.holder() is None
    status = store.schema_status()
    assert (status.current, status.latest) == (0, MIGRATIONS.latest)
    assert status.pending == tuple(MIGRATIONS.names)
    assert not _schema_exists(sql, store.schema)


def test_the_first_write_creates_the_schema_and_migrates(
    make: Make, sql: psycopg.Connection[Any]
) -> None:
    store = make()
    _record(store, "t.first")
    assert _schema_exists(sql, store.schema)
    assert store.schema_status().up_to_date
    rows = sql.execute(f'SELECT version, name FROM "{store.schema}".schema_version').fetchall()
    assert rows == [(migration_version(n), n) for n in MIGRATIONS.names]
    assert set(make(store.schema).tracker.applied()) == {"t.first"}


def test_a_schema_made_by_a_dba_without_tables_reads_as_empty(
    make: Make, sql: psycopg.Connection[Any]
) -> None:
    name = _schema_name()
    sql.execute(f'CREATE SCHEMA "{name}"')
    store = make(name)
    assert store.tracker.applied() == {}
    assert store.schema_status().current == 0
    _record(store, "t.x")
    assert set(store.tracker.applied()) == {"t.x"}


# --- schema versions ----------------------------------------------------------------------


def test_without_auto_migrate_a_write_asks_for_an_upgrade(
    make: Make, sql: psycopg.Connection[Any]
) -> None:
    store = make(auto_migrate=False)
    with pytest.raises(SchemaError, match="runce db upgrade"):
        _record(store, "t.x")
    with pytest.raises(SchemaError, match="runce db upgrade"):
        store.lock.try_acquire(current_owner(), ttl=5)
    assert not _schema_exists(sql, store.schema), "refused before creating anything"
    assert store.upgrade() == list(MIGRATIONS.names)
    assert store.upgrade() == []
    _record(store, "t.x")
    assert set(store.tracker.applied()) == {"t.x"}


def test_a_schema_newer_than_this_runce_is_refused(
    make: Make, sql: psycopg.Connection[Any]
) -> None:
    store = make()
    _record(store, "t.old")
    newer = MIGRATIONS.latest + 1
    sql.execute(
        f'INSERT INTO "{store.schema}".schema_version (version, name) VALUES (%s, %s)',
        [newer, f"{newer:04d}_from_the_future.sql"],
    )
    other = make(store.schema)
    for action in (
        other.tracker.applied,
        other.schema_status,
        other.upgrade,
        lambda: _record(other, "t.new"),
        lambda: other.lock.try_acquire(current_owner(), ttl=5),
    ):
        with pytest.raises(SchemaError) as caught:
            action()
        message = str(caught.value)
        assert store.schema in message
        assert f"version {newer}, newer than the {MIGRATIONS.latest}" in message


def test_schema_status_before_and_after_upgrade(make: Make) -> None:
    store = make()
    before = store.schema_status()
    assert not before.up_to_date
    assert (before.current, before.applied) == (0, ())
    assert store.upgrade() == list(MIGRATIONS.names)
    after = store.schema_status()
    assert after.up_to_date
    assert (after.applied, after.pending) == (tuple(MIGRATIONS.names), ())


_CATALOG = {
    "tables": """
        SELECT table_name, table_type FROM information_schema.tables
        WHERE table_schema = %(s)s""",
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity
        FROM information_schema.columns WHERE table_schema = %(s)s""",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %(s)s",
    "constraints": """
        SELECT c.conrelid::regclass::text, c.conname, c.contype, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = %(s)s""",
    "triggers": """
        SELECT t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = r.relnamespace
        WHERE n.nspname = %(s)s AND NOT t.tgisinternal""",
    "functions": """
        SELECT p.proname, pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %(s)s""",
    "versions": "SELECT version, name FROM {schema}.schema_version",
}


def _catalog(conn: psycopg.Connection[Any], schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the migrations make in ``schema``, with the schema's name taken out."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for part, statement in _CATALOG.items():
        text = statement.replace("{schema}", f'"{schema}"')
        rows = conn.execute(text, {"s": schema}).fetchall()
        found[part] = sorted(
            tuple(str(v).replace(f'"{schema}"', "<S>").replace(schema, "<S>") for v in row)
            for row in rows
        )
    return found


def test_a_fresh_schema_equals_a_migrated_one(make: Make, sql: psycopg.Connection[Any]) -> None:
    migrated = make()
    assert migrated.upgrade() == list(MIGRATIONS.names)
    by_hand = make()
    script = by_hand.schema_sql()
    for name in MIGRATIONS.names:
        assert f"-- {name}" in script
    assert f'"{by_hand.schema}".history' in script
    sql.execute(script)  # as a DBA would, with psql -f

    fresh, upgraded = _catalog(sql, by_hand.schema), _catalog(sql, migrated.schema)
    assert fresh == upgraded
    assert len(fresh["tables"]) >= 4
    assert any("history_open" in row[0] for row in fresh["indexes"])
    assert len(fresh["triggers"]) == 2
    assert by_hand.schema_status().up_to_date, "runce sees the schema a DBA applied as current"


def test_the_database_refuses_to_rewrite_or_delete_history(
    make: Make, sql: psycopg.Connection[Any]
) -> None:
    store = make()
    _record(store, "t.kept")
    table = f'"{store.schema}".history'
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="never changed"):
        sql.execute(f"UPDATE {table} SET status = 'failed'")
    for statement in (f"DELETE FROM {table}", f"TRUNCATE {table}"):
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="never deleted"):
            sql.execute(statement)
    with pytest.raises(psycopg.errors.CheckViolation):
        sql.execute(f"UPDATE \"{store.schema}\".applied SET status = 'done'")
    assert len(store.tracker.history()) == 1


# --- many processes at once on a new database -------------------------------------------------

_FIRST_WRITER = """
import pathlib, sys, time
from runce.stores.base import StoreSpec
from runce.stores.liveness import current_owner
from runce.stores.postgres import open_store
from tests.stores.records import applied_for, finished, started

url, go, name = sys.argv[1:4]
store = open_store(StoreSpec(type="postgresql", url=url))
print("ready", flush=True)
while not pathlib.Path(go).exists():
    time.sleep(0.001)
if int(name) % 2:
    store.upgrade()
row = finished(started("t." + name))
store.tracker.record(row, applied_for(row), None)
lease = store.lock.try_acquire(current_owner(name), ttl=60)
print("won" if lease else "lost", flush=True)
sys.stdin.read()  # stay alive: the winner keeps its lock
"""


@pytest.fixture
def new_database(postgres_server: str) -> Iterator[str]:
    url = services.create_database(postgres_server)
    yield url
    services.drop_database(postgres_server, url)


@pytest.mark.slow
def test_thirty_processes_writing_first_at_once_on_a_new_database_all_succeed(
    new_database: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _FIRST_WRITER, new_database, str(go), str(n)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(30)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready", child.stderr
        go.touch()
        outcomes = [child.stdout.readline().strip() for child in children if child.stdout]
    finally:
        results = [child.communicate("", timeout=60) for child in children]
    for child, (_, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
    assert sorted(outcomes) == ["lost"] * 29 + ["won"]

    store = open_store(StoreSpec(type="postgresql", url=new_database))
    try:
        assert len(store.tracker.applied()) == 30
        assert len(store.tracker.history()) == 30
        assert store.schema_status().up_to_date
    finally:
        store.close()


# --- the lock -----------------------------------------------------------------------------

_HOLDER = """
import sys, time
from runce.stores.base import StoreSpec
from runce.stores.liveness import current_owner
from runce.stores.postgres import open_store

store = open_store(StoreSpec(type="postgresql", url=sys.argv[1], schema=sys.argv[2]))
lease = store.lock.try_acquire(current_owner("doomed"), ttl=300)
print("held" if lease else "missed", flush=True)
time.sleep(300)
"""


@pytest.mark.slow
def test_a_lock_held_by_a_killed_process_is_free_at_once(
    make: Make, postgres_server: str, sql: psycopg.Connection[Any]
) -> None:
    store = make()
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, postgres_server, store.schema],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        holder = store.lock.holder()
        assert holder is not None
        assert (holder.state, holder.owner, holder.pid) == ("live", "doomed", child.pid)
        assert holder.host == current_owner().host
        assert holder.token is not None
        assert holder.since is not None
        assert abs(time.time() - holder.since.timestamp()) < 30
        names = [row[0] for row in sql.execute("SELECT application_name FROM pg_stat_activity")]
        assert f"runce doomed {holder.host} pid {child.pid}"[:63] in names
        assert store.lock.try_acquire(current_owner(), ttl=30) is None
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    began = time.monotonic()
    lease = None
    while lease is None and time.monotonic() - began < 5:
        lease = store.lock.try_acquire(current_owner("heir"), ttl=30)
        time.sleep(0.01)
    assert lease is not None, "the dead runner's session took its lock with it"
    holder = store.lock.holder()
    assert holder is not None
    assert (holder.owner, holder.token) == ("heir", lease.token)


_FORKING_HOLDER = """
import os, sys, time
from runce.stores.base import StoreSpec
from runce.stores.liveness import current_owner
from runce.stores.postgres import open_store

store = open_store(StoreSpec(type="postgresql", url=sys.argv[1], schema=sys.argv[2]))
lease = store.lock.try_acquire(current_owner("forker"), ttl=300)
child = os.fork()
if child == 0:  # keeps the lock session's socket open after its parent dies
    time.sleep(300)
    os._exit(0)
print(child, flush=True)
time.sleep(300)
"""


@pytest.mark.slow
def test_a_session_outliving_its_dead_holder_is_ended_by_the_next_one(
    make: Make, postgres_server: str
) -> None:
    store = make()
    parent = subprocess.Popen(
        [sys.executable, "-c", _FORKING_HOLDER, postgres_server, store.schema],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    orphan = int(parent.stdout.readline())
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        holder = store.lock.holder()
        assert holder is not None
        assert (holder.owner, holder.pid, holder.state) == ("forker", parent.pid, "dead")
        assert store.lock.try_acquire(current_owner("heir"), ttl=30) is not None
    finally:
        os.kill(orphan, signal.SIGKILL)
    holder = store.lock.holder()
    assert holder is not None
    assert (holder.owner, holder.state) == ("heir", "live")


def test_a_stale_info_row_is_not_a_holder(make: Make) -> None:
    store = make()
    lease = _leased(store)
    store.lock.close()  # the session ends without releasing: the info row stays behind
    _eventually(lambda: store.lock.holder() is None)  # the server ends the session soon after
    assert not store.lock.renew(lease)


def test_the_application_name_fits_the_server_limit() -> None:
    owner = current_owner("é" * 80)
    name = application_name(owner)
    assert len(name.encode()) <= 63
    assert name.startswith("runce é")


def test_force_clearing_ends_the_holders_session_and_fences_it_off(make: Make) -> None:
    holder_store = make()
    other = make(holder_store.schema)
    lease = _leased(holder_store, "busy")
    attempt = started("t.cut", token=lease.token)
    holder_store.tracker.begin(attempt, lease)

    cleared = other.lock.clear(force=True)
    assert cleared is not None
    assert (cleared.owner, cleared.token) == ("busy", lease.token)
    assert not holder_store.lock.renew(lease)
    with pytest.raises(LockLost):
        holder_store.tracker.finish(finished(attempt), applied_for(finished(attempt)), lease)
    with pytest.raises(LockLost):
        holder_store.tracker.progress(attempt.attempt_id, 1, 2, lease)
    with pytest.raises(LockLost):
        _record(holder_store, "t.late", lease)
    with pytest.raises(LockLost), holder_store.tracker.transaction(lease):
        pass
    holder_store.lock.release(lease)  # a session already gone: nothing to give up, no error

    assert other.lock.try_acquire(current_owner("next"), ttl=30) is not None
    assert other.tracker.applied() == {}
    assert [a.status for a in other.tracker.history()] == ["started"]


def test_create_index_concurrently_is_not_blocked_by_the_lock_or_its_waiters(
    make: Make, sql: psycopg.Connection[Any]
) -> None:
    """A runner waiting for the lock must hold no snapshot: the holder's task may be running
    ``CREATE INDEX CONCURRENTLY``, which waits for every older snapshot (a blocking
    ``pg_advisory_lock`` waiter would deadlock with it)."""
    store = make()
    waiter = make(store.schema)
    lease = _leased(store)
    store.tracker.begin(started("t.index", token=lease.token), lease)
    assert store.tracker.open_attempts()  # the store's own connection has been used too
    stop = threading.Event()
    tries: list[Lease | None] = []

    def wait_for_the_lock() -> None:  # as runce.tasks.lease.acquire polls, only faster
        while not stop.is_set():
            tries.append(waiter.lock.try_acquire(current_owner("waiter"), ttl=30))
            time.sleep(0.02)

    polling = threading.Thread(target=wait_for_the_lock)
    polling.start()
    table = f"user_{uuid.uuid4().hex[:8]}"
    sql.execute(f"CREATE TABLE {table} (n integer)")
    try:
        # Deadlocked, it would wait forever: the timeout turns that into a failure.
        sql.execute("SET statement_timeout = '20s'")
        _eventually(lambda: len(tries) >= 2)  # the waiter is polling now
        sql.execute(f"CREATE INDEX CONCURRENTLY {table}_n ON {table} (n)")
        assert store.lock.renew(lease)
    finally:
        stop.set()
        polling.join()
        sql.execute(f"DROP TABLE {table}")
    assert len(tries) >= 2
    assert not any(tries)


# --- transactional tasks --------------------------------------------------------------------


@pytest.fixture
def user_table(sql: psycopg.Connection[Any]) -> Iterator[str]:
    """A table of the task's own, outside runce's schema."""
    name = f"public.things_{uuid.uuid4().hex[:8]}"
    sql.execute(f"CREATE TABLE {name} (name text)")
    yield name
    sql.execute(f"DROP TABLE {name}")


def _rows_in(sql: psycopg.Connection[Any], table: str) -> list[str]:
    return [row[0] for row in sql.execute(f"SELECT name FROM {table}")]


def test_a_transaction_commits_the_task_rows_with_the_records(
    make: Make, sql: psycopg.Connection[Any], user_table: str
) -> None:
    store = make()
    lease = _leased(store)
    attempt = started("t.tx", token=lease.token)
    store.tracker.begin(attempt, lease)
    with store.tracker.transaction(lease) as tx:
        assert isinstance(tx.handle, psycopg.Connection)
        assert tx.handle.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        [search_path] = tx.handle.execute("SHOW search_path").fetchone() or [None]
        assert search_path == '"$user", public', "the task's connection is left as it is"
        tx.handle.execute(f"INSERT INTO {user_table} VALUES ('made')")
        with pytest.raises(psycopg.ProgrammingError):
            tx.handle.commit()  # runce commits, with the records
        tx.finish(finished(attempt), applied_for(finished(attempt)))
        assert _rows_in(sql, user_table) == []
        assert store.tracker.applied() == {}, "nothing is visible before the commit"

    assert _rows_in(sql, user_table) == ["made"]
    assert store.tracker.applied()["t.tx"].is_applied
    assert store.tracker.open_attempts() == []
    assert store.lock.renew(lease)


def test_an_exception_in_a_transaction_rolls_back_rows_and_records(
    make: Make, sql: psycopg.Connection[Any], user_table: str
) -> None:
    store = make()
    lease = _leased(store)
    attempt = started("t.tx.bad", token=lease.token)
    store.tracker.begin(attempt, lease)
    # The block stands for the task: statements, its outcome written, then its failure.
    with pytest.raises(ZeroDivisionError), store.tracker.transaction(lease) as tx:  # noqa: PT012
        tx.handle.execute(f"INSERT INTO {user_table} VALUES ('half')")
        tx.finish(finished(attempt), applied_for(finished(attempt)))
        _ = 1 / 0

    assert _rows_in(sql, user_table) == []
    assert store.tracker.applied() == {}
    assert [a.attempt_id for a in store.tracker.open_attempts()] == [attempt.attempt_id]
    assert store.lock.renew(lease)


def test_a_driver_error_of_the_task_passes_unchanged(make: Make) -> None:
    store = make()
    lease = _leased(store)
    with pytest.raises(psycopg.errors.UndefinedTable), store.tracker.transaction(lease) as tx:
        tx.handle.execute("SELECT * FROM no_such_table_anywhere")


def test_a_transaction_whose_lease_was_taken_meanwhile_commits_nothing(
    make: Make, sql: psycopg.Connection[Any], user_table: str
) -> None:
    store = make()
    other = make(store.schema)
    lease = _leased(store)
    attempt = started("t.tx.cut", token=lease.token)
    store.tracker.begin(attempt, lease)
    with pytest.raises(LockLost), store.tracker.transaction(lease) as tx:  # noqa: PT012
        tx.handle.execute(f"INSERT INTO {user_table} VALUES ('late')")
        other.lock.clear(force=True)
        assert other.lock.try_acquire(current_owner("next"), ttl=30) is not None
        tx.finish(finished(attempt), applied_for(finished(attempt)))
    assert _rows_in(sql, user_table) == []
    assert other.tracker.applied() == {}


# --- connection errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "where", "reason"),
    [
        ({"port": 1}, "host 127.0.0.1, port 1, database test", "unreachable"),
        ({"user": "runce_no_such_role"}, "port 5432, database test", "authentication failed"),
        ({"database": "runce_no_such_db"}, "database runce_no_such_db", "database does not exist"),
    ],
    ids=["unreachable", "unknown-role", "missing-database"],
)
def test_connection_errors_are_one_sentence_naming_the_server(
    make: Make, postgres_server: str, change: dict[str, Any], where: str, reason: str
) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(postgres_server)
    host = parts.hostname or "127.0.0.1"
    user = change.get("user", parts.username or "postgres")
    port = change.get("port", parts.port or 5432)
    database = change.get("database", parts.path.lstrip("/"))
    store = make(url=f"postgresql://{user}@{host}:{port}/{database}")
    for action in (store.tracker.applied, lambda: _record(store, "t.x"), store.lock.holder):
        with pytest.raises(StoreUnavailable) as caught:
            action()
        message = str(caught.value)
        assert "\n" not in message
        assert where in message
        assert reason in message
        assert isinstance(caught.value.__cause__, psycopg.OperationalError)


def test_an_sql_failure_is_a_store_error_with_its_cause(
    make: Make, sql: psycopg.Connection[Any]
) -> None:
    store = make()
    _record(store, "t.x")
    sql.execute(f'DROP TABLE "{store.schema}".applied')
    with pytest.raises(StoreError, match="read the applied tasks") as caught:
        store.tracker.applied()
    assert isinstance(caught.value.__cause__, psycopg.errors.UndefinedTable)
    assert not isinstance(caught.value, StoreUnavailable)


def test_a_dropped_connection_is_replaced_on_the_next_call(
    make: Make, sql: psycopg.Connection[Any]
) -> None:
    store = make()
    _record(store, "t.x")
    assert set(store.tracker.applied()) == {"t.x"}
    # The store's connection is the one whose last query named its schema.
    ended = sql.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE pid <> pg_backend_pid() AND query LIKE %s",
        [f"%{store.schema}%"],
    ).fetchall()
    assert ended == [(True,)]
    time.sleep(0.1)
    with pytest.raises(StoreUnavailable):
        store.tracker.applied()
    assert set(store.tracker.applied()) == {"t.x"}
