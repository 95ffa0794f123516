"""What only the MongoDB store does: the seed's documents and configuration, indexes, the
lease on the server's clock, fencing with and without transactions, transactional tasks and
connection errors. The shared behaviour is in the contract suite (test_contract.py).

The tests run on the session's SecantusDB server, or on the MongoDB that
``RUNCE_TEST_MONGODB_URL`` names; what SecantusDB cannot show faithfully (a standalone
server refusing transactions, a failover) runs only on the latter.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
import pytest
from pymongo.errors import OperationFailure, PyMongoError

import runce
from runce.errors import (
    ConfigError,
    LockHeld,
    LockLost,
    SchemaError,
    StoreUnavailable,
    UnsupportedFeature,
)
from runce.stores.base import StoreSpec
from runce.stores.liveness import current_owner, this_machine
from runce.stores.mongo import MongoStore, open_store
from runce.stores.mongo.errors import translate
from runce.stores.mongo.location import location_of
from runce.stores.mongo.schema import LATEST, MIGRATIONS
from runce.stores.registry import open_store as open_any_store
from tests.stores.records import applied_for, finished, started

pytestmark = pytest.mark.mongo

Make = Callable[..., MongoStore]
Raw = pymongo.database.Database[dict[str, Any]]


@pytest.fixture
def database(mongo_server: str) -> Iterator[str]:
    name = f"runce_t_{uuid.uuid4().hex[:12]}"
    yield name
    with pymongo.MongoClient(mongo_server) as client:
        client.drop_database(name)


@pytest.fixture
def raw(mongo_server: str, database: str) -> Iterator[Raw]:
    """The test database, straight through pymongo."""
    with pymongo.MongoClient(mongo_server, tz_aware=True) as client:
        yield client[database]


@pytest.fixture
def make(mongo_server: str, database: str) -> Iterator[Make]:
    """Opens stores on the test database: make(**StoreSpec fields, transactions=...)."""
    opened: list[MongoStore] = []

    def make(transactions: bool | None = None, **changes: Any) -> MongoStore:
        values: dict[str, Any] = {"type": "mongodb", "url": f"{_base(mongo_server)}/{database}"}
        store = open_store(StoreSpec(**{**values, **changes}), transactions=transactions)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def _base(server: str) -> str:
    return server.rstrip("/")


def _record(store: MongoStore, task_id: str) -> None:
    row = finished(started(task_id))
    store.tracker.record(row, applied_for(row), None)


def _server_now(raw: Raw) -> datetime:
    local_time = raw.client.admin.command("hello")["localTime"]
    return local_time if local_time.tzinfo else local_time.replace(tzinfo=UTC)


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    return int(child.stdout)


# --- the seed's documents and configuration ------------------------------------------------


def test_records_written_by_the_seed_are_read_as_applied(make: Make, raw: Raw) -> None:
    # As the seed's TypeScript tool writes them: no attemptId, naive dates, JS numbers.
    raw["runce.applied"].insert_many(
        [
            {
                "id": "2025-10-01T120000.init-queues",
                "name": "Initialize message queues",
                "checksum": "9f86d081884c7d65",
                "appliedAt": datetime(2025, 10, 1, 12, 0, 5),
                "durationMs": 812.0,
                "status": "success",
            },
            {
                "id": "2025-10-02T090000.backfill",
                "name": "Backfill",
                "checksum": "abc",
                "appliedAt": datetime(2025, 10, 2, 9, 0, 1),
                "durationMs": 3,
                "status": "failed",
                "error": "Error: boom\n    at run (backfill.ts:3:9)",
            },
        ]
    )
    applied = make().tracker.applied()

    queues = applied["2025-10-01T120000.init-queues"]
    assert queues.is_applied
    assert (queues.name, queues.checksum, queues.duration_ms) == (
        "Initialize message queues",
        "9f86d081884c7d65",
        812,
    )
    assert queues.applied_at == datetime(2025, 10, 1, 12, 0, 5, tzinfo=UTC)
    assert queues.attempt_id == ""
    assert queues.error is None
    backfill = applied["2025-10-02T090000.backfill"]
    assert not backfill.is_applied
    assert backfill.error is not None
    assert backfill.error.startswith("Error: boom")


def test_runce_writes_the_seeds_field_names(make: Make, raw: Raw) -> None:
    store = make()
    _record(store, "t.fields")
    doc = raw["runce.applied"].find_one({"id": "t.fields"}, {"_id": 0})
    assert doc is not None
    assert set(doc) == {
        "id",
        "name",
        "checksum",
        "appliedAt",
        "durationMs",
        "status",
        "error",
        "attemptId",
    }
    assert doc["status"] == "success"
    assert isinstance(doc["appliedAt"], datetime)
    [attempt] = raw["runce.history"].find({}, {"_id": 0})
    assert attempt["taskId"] == "t.fields"
    assert attempt["status"] == "succeeded"
    assert isinstance(attempt["startedAt"], datetime)


def test_the_seeds_tracker_table_opens_the_store(mongo_server: str, database: str) -> None:
    config = runce.load_config(
        values={
            "tracker": {
                "type": "mongo",
                "options": {
                    "uri": _base(mongo_server),
                    "db": database,
                    "appliedCollection": "runce.applied",
                    "lockCollection": "runce.lock",
                },
            }
        }
    )
    store = open_any_store(config.store)
    try:
        assert isinstance(store, MongoStore)
        assert store.description == f"{_base(mongo_server)} (database {database})"
        _record(store, "t.seed-config")
        assert set(store.tracker.applied()) == {"t.seed-config"}
    finally:
        store.close()


def test_collection_names_are_configurable(make: Make, raw: Raw) -> None:
    options = {
        "appliedCollection": "ops.applied",
        "historyCollection": "ops.history",
        "lockCollection": "ops.lock",
    }
    store = make(options=options)
    _record(store, "t.named")
    lease = store.lock.try_acquire(current_owner(), ttl=30)
    assert lease is not None
    assert set(raw.list_collection_names()) >= set(options.values())
    assert not {"runce.applied", "runce.history", "runce.lock"} & set(raw.list_collection_names())
    assert set(make().tracker.applied()) == set()  # the default names hold nothing
    assert set(make(options=options).tracker.applied()) == {"t.named"}


def test_options_are_checked() -> None:
    def spec(url: str | None, **options: Any) -> StoreSpec:
        return StoreSpec(type="mongo", url=url, options=options)

    with pytest.raises(ConfigError, match=r"unknown options 'appliedCollecton', 'ttl'"):
        location_of(spec("mongodb://h/db", appliedCollecton="x", ttl=3))
    with pytest.raises(ConfigError, match="names no database"):
        location_of(spec("mongodb://h:27017"))
    with pytest.raises(ConfigError, match="needs a URL"):
        location_of(spec(None, db="infra"))
    with pytest.raises(ConfigError, match="cannot be a MongoDB database name"):
        location_of(spec("mongodb://h/bad.name"))
    with pytest.raises(ConfigError, match="lockCollection"):
        location_of(spec("mongodb://h/db", lockCollection="bad$name"))
    # The db option wins over the URL's path, which may only name the auth database.
    where = location_of(spec("mongodb://u:p@h1,h2:27018/admin?replicaSet=rs", db="infra"))
    assert (where.database, where.servers) == ("infra", "h1:27017,h2:27018")
    assert where.description == "mongodb://u:***@h1,h2:27018/admin?replicaSet=rs (database infra)"


def test_the_description_masks_the_password_and_opening_contacts_nobody() -> None:
    store = open_store(StoreSpec(type="mongodb", url="mongodb://app:s3cret@127.0.0.1:1/infra"))
    try:
        assert store.description == "mongodb://app:***@127.0.0.1:1/infra"
    finally:
        store.close()


# --- indexes ---------------------------------------------------------------------------------


def test_reads_create_nothing(make: Make, raw: Raw) -> None:
    store = make()
    assert store.tracker.applied() == {}
    assert store.tracker.history() == []
    assert store.tracker.open_attempts() == []
    assert store.lock.holder() is None
    assert store.lock.clear() is None
    assert store.schema_status().current == 0
    assert raw.name not in raw.client.list_database_names()
    assert raw.list_collection_names() == []


def test_indexes_are_created_by_the_first_write_and_idempotently(make: Make, raw: Raw) -> None:
    first = make()
    assert first.schema_status().pending == MIGRATIONS
    _record(first, "t.one")
    status = first.schema_status()
    assert (status.current, status.latest, status.up_to_date) == (LATEST, LATEST, True)
    indexes = {name: dict(info) for name, info in raw["runce.history"].index_information().items()}
    applied_indexes = raw["runce.applied"].index_information()

    assert make().upgrade() == []
    _record(make(), "t.two")  # another store object prepares again: nothing changes
    assert {n: dict(i) for n, i in raw["runce.history"].index_information().items()} == indexes
    assert raw["runce.applied"].index_information() == applied_indexes
    assert applied_indexes["id_1"]["unique"]
    keys = {tuple(info["key"]) for info in indexes.values()}
    assert {(("attemptId", 1),), (("taskId", 1), ("startedAt", 1))} <= keys
    with pytest.raises(PyMongoError):  # the unique index on id holds
        raw["runce.applied"].insert_one({"id": "t.one"})


def test_an_index_the_seeds_tool_made_on_id_is_kept(make: Make, raw: Raw) -> None:
    raw["runce.applied"].create_index("id", unique=True)  # the seed's createIndex({id: 1})
    store = make()
    _record(store, "t.after-seed")
    assert store.schema_status().up_to_date
    assert list(raw["runce.applied"].index_information()) == ["_id_", "id_1"]


def test_upgrade_and_schema_description(make: Make, raw: Raw) -> None:
    store = make()
    assert store.upgrade() == list(MIGRATIONS)
    assert store.upgrade() == []
    described = json.loads(store.schema_sql())
    assert described["database"] == raw.name
    assert described["collections"]["applied"]["name"] == "runce.applied"
    assert described["collections"]["applied"]["indexes"][0]["key"] == {"id": 1}
    assert described["collections"]["lock"]["name"] == "runce.lock"


def test_without_auto_migrate_writes_wait_for_an_upgrade(make: Make, raw: Raw) -> None:
    store = make(auto_migrate=False)
    with pytest.raises(SchemaError, match="runce db upgrade"):
        _record(store, "t.refused")
    with pytest.raises(SchemaError):
        store.lock.try_acquire(current_owner(), ttl=30)
    assert raw.list_collection_names() == []
    assert make(auto_migrate=False).upgrade() == list(MIGRATIONS)
    _record(make(auto_migrate=False), "t.accepted")
    assert set(store.tracker.applied()) == {"t.accepted"}


# --- the lock --------------------------------------------------------------------------------


def test_sixteen_threads_race_and_exactly_one_wins(make: Make) -> None:
    stores = [make() for _ in range(16)]
    barrier = threading.Barrier(len(stores))
    won: list[object] = []

    def race(store: MongoStore) -> None:
        barrier.wait()
        lease = store.lock.try_acquire(current_owner(), ttl=30)
        if lease is not None:
            won.append(lease)

    threads = [threading.Thread(target=race, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1


def test_the_lease_document_keeps_the_seeds_shape(make: Make, raw: Raw) -> None:
    lease = make().lock.try_acquire(current_owner("worker-a"), ttl=30)
    assert lease is not None
    doc = raw["runce.lock"].find_one({"_id": "global"})
    assert doc is not None
    assert doc["owner"] == "worker-a"
    assert doc["token"] == lease.token
    until = doc["leaseUntil"] - _server_now(raw)
    assert timedelta(seconds=28) < until <= timedelta(seconds=30)


def test_a_lease_past_its_time_on_the_servers_clock_is_free(make: Make, raw: Raw) -> None:
    # Written as the seed's tool would: no token; expired one second ago by the server's clock.
    past = _server_now(raw) - timedelta(seconds=1)
    raw["runce.lock"].insert_one({"_id": "global", "leaseUntil": past, "owner": "seed-runner"})
    store = make()
    holder = store.lock.holder()
    assert holder is not None
    assert (holder.owner, holder.state, holder.token) == ("seed-runner", "expired", None)
    assert store.lock.try_acquire(current_owner(), ttl=30) is not None


def test_the_servers_clock_decides_not_ours(
    make: Make, raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw["runce.lock"].insert_one(
        {"_id": "global", "leaseUntil": _server_now(raw) + timedelta(minutes=10), "owner": "seed"}
    )
    # This process's clock runs an hour fast: by it, the lease above has long run out.
    fast = datetime.now(UTC) + timedelta(hours=1)
    monkeypatch.setattr("runce.stores.mongo.connection.utcnow", lambda: fast)
    store = make()
    assert store.lock.try_acquire(current_owner(), ttl=30) is None
    holder = store.lock.holder()
    assert holder is not None
    assert holder.state == "live"
    with pytest.raises(LockHeld):
        store.lock.clear()


def test_a_holder_that_died_on_this_machine_is_free_at_once(make: Make, raw: Raw) -> None:
    raw["runce.lock"].insert_one(
        {
            "_id": "global",
            "leaseUntil": _server_now(raw) + timedelta(minutes=10),
            "owner": "crashed",
            "host": "here",
            "pid": _dead_pid(),
            "machine": this_machine(),
            "token": "dead-token",
        }
    )
    store = make()
    holder = store.lock.holder()
    assert holder is not None
    assert holder.state == "dead"
    lease = store.lock.try_acquire(current_owner("next"), ttl=30)
    assert lease is not None
    current = store.lock.holder()
    assert current is not None
    assert (current.owner, current.token, current.state) == ("next", lease.token, "live")


def test_renew_and_release_only_touch_their_own_lease(make: Make, raw: Raw) -> None:
    first, second = make(), make()
    lease = first.lock.try_acquire(current_owner(), ttl=30)
    assert lease is not None
    stranger = replace(lease, token="not-the-token")
    assert not second.lock.renew(stranger)
    second.lock.release(stranger)
    assert raw["runce.lock"].count_documents({"token": lease.token}) == 1
    before = raw["runce.lock"].find_one()
    time.sleep(0.01)
    assert first.lock.renew(lease)
    after = raw["runce.lock"].find_one()
    assert before is not None
    assert after is not None
    assert after["leaseUntil"] > before["leaseUntil"]
    assert after["since"] == before["since"]


# --- fencing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transactions", [None, False], ids=["server-default", "standalone-path"])
def test_writes_are_fenced_with_and_without_transactions(
    make: Make, raw: Raw, transactions: bool | None
) -> None:
    store = make(transactions=transactions)
    lease = store.lock.try_acquire(current_owner(), ttl=30)
    assert lease is not None
    attempt = started("t.fenced", token=lease.token)
    store.tracker.begin(attempt, lease)
    store.tracker.progress(attempt.attempt_id, 1, 3, lease)
    thief = make(transactions=transactions)
    assert thief.lock.clear(force=True) is not None
    assert thief.lock.try_acquire(current_owner("thief"), ttl=30) is not None

    with pytest.raises(LockLost):
        store.tracker.finish(finished(attempt), applied_for(finished(attempt)), lease)
    with pytest.raises(LockLost):
        store.tracker.progress(attempt.attempt_id, 2, 3, lease)
    assert raw["runce.applied"].count_documents({}) == 0
    [doc] = raw["runce.history"].find()
    assert (doc["status"], doc["progressDone"]) == ("started", 1)


def test_concurrent_fenced_writes_under_one_lease_all_land(make: Make) -> None:
    # Each fenced write holds the lock document in its transaction: the others conflict
    # and are run again, and renewals wait their turn (runce run --concurrency N).
    store = make()
    lease = store.lock.try_acquire(current_owner(), ttl=30)
    assert lease is not None
    attempts = [started(f"t.par{i}", token=lease.token) for i in range(8)]
    barrier = threading.Barrier(len(attempts) + 1)
    errors: list[BaseException] = []

    def work(attempt: Any) -> None:
        barrier.wait()
        try:
            store.tracker.begin(attempt, lease)
            store.tracker.finish(finished(attempt), applied_for(finished(attempt)), lease)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(a,)) for a in attempts]
    for thread in threads:
        thread.start()
    barrier.wait()
    renewed = [store.lock.renew(lease) for _ in range(5)]
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(renewed)
    assert len(store.tracker.applied()) == len(attempts)
    assert store.tracker.open_attempts() == []


def test_the_standalone_path_finishes_only_a_started_attempt(make: Make) -> None:
    store = make(transactions=False)
    attempt = started("t.late")
    store.tracker.begin(attempt, None)
    closed = finished(attempt, "interrupted", note="its runner died")
    store.tracker.finish(closed, None, None)
    late = finished(attempt)
    with pytest.raises(runce.StoreError, match="not a started attempt"):
        store.tracker.finish(late, applied_for(late), None)
    assert store.tracker.applied() == {}


# --- transactional tasks -----------------------------------------------------------------


def test_a_transaction_commits_the_tasks_writes_with_its_record(make: Make, raw: Raw) -> None:
    store = make()
    assert store.supports_transactions
    lease = store.lock.try_acquire(current_owner(), ttl=30)
    assert lease is not None
    attempt = started("t.tx", token=lease.token)
    store.tracker.begin(attempt, lease)
    with store.tracker.transaction(lease) as tx:
        session = tx.handle
        session.client[raw.name]["widgets"].insert_one({"name": "a"}, session=session)
        store.tracker.progress(attempt.attempt_id, 1, 1, lease)  # skipped while open
        assert raw["widgets"].count_documents({}) == 0  # nothing visible before the commit
        tx.finish(finished(attempt), applied_for(finished(attempt)))
    assert [w["name"] for w in raw["widgets"].find()] == ["a"]
    assert store.tracker.applied()["t.tx"].is_applied
    assert [a.status for a in store.tracker.history()] == ["succeeded"]


def test_an_exception_in_a_transaction_leaves_neither(make: Make, raw: Raw) -> None:
    store = make()
    attempt = started("t.tx-fail")
    store.tracker.begin(attempt, None)

    def fail_inside() -> None:
        with store.tracker.transaction(None) as tx:
            tx.handle.client[raw.name]["widgets"].insert_one({"name": "b"}, session=tx.handle)
            tx.finish(finished(attempt), applied_for(finished(attempt)))
            raise RuntimeError("the task failed after writing")

    with pytest.raises(RuntimeError):
        fail_inside()
    assert raw["widgets"].count_documents({}) == 0
    assert store.tracker.applied() == {}
    assert [a.status for a in store.tracker.open_attempts()] == ["started"]


def test_a_transaction_whose_lease_was_taken_commits_nothing(make: Make, raw: Raw) -> None:
    store, thief = make(), make()
    lease = store.lock.try_acquire(current_owner(), ttl=30)
    assert lease is not None
    attempt = started("t.tx-stolen", token=lease.token)
    store.tracker.begin(attempt, lease)

    def stolen_meanwhile() -> None:
        with store.tracker.transaction(lease) as tx:
            tx.handle.client[raw.name]["widgets"].insert_one({"name": "c"}, session=tx.handle)
            thief.lock.clear(force=True)
            assert thief.lock.try_acquire(current_owner("thief"), ttl=30) is not None
            tx.finish(finished(attempt), applied_for(finished(attempt)))  # the snapshot's view

    with pytest.raises(LockLost):  # the check before the commit sees the thief
        stolen_meanwhile()
    assert raw["widgets"].count_documents({}) == 0
    assert store.tracker.applied() == {}


def test_a_taker_closing_the_attempt_first_wins_over_the_transaction(make: Make, raw: Raw) -> None:
    # The next holder closes the paused runner's attempt as interrupted before re-running
    # the task; the transaction's own finish of that attempt then conflicts and aborts.
    store, taker = make(), make()
    lease = store.lock.try_acquire(current_owner(), ttl=30)
    assert lease is not None
    attempt = started("t.tx-raced", token=lease.token)
    store.tracker.begin(attempt, lease)

    def overtaken() -> None:
        with store.tracker.transaction(lease) as tx:
            tx.handle.client[raw.name]["widgets"].insert_one({"name": "d"}, session=tx.handle)
            taker.lock.clear(force=True)
            taken = taker.lock.try_acquire(current_owner("taker"), ttl=30)
            assert taken is not None
            closed = finished(attempt, "interrupted", note="its runner lost the lock")
            taker.tracker.finish(closed, None, taken)
            tx.finish(finished(attempt), applied_for(finished(attempt)))

    with pytest.raises(LockLost):
        overtaken()
    assert raw["widgets"].count_documents({}) == 0
    assert [a.status for a in store.tracker.history()] == ["interrupted"]
    assert store.tracker.applied() == {}


def _left_open(store: MongoStore, lease: Any, raw: Raw) -> tuple[Any, Any]:
    """A transaction that wrote a widget and was never ended, as a killed runner leaves it
    on the server; its context (to try committing it later) and its session's id."""
    context = store.tracker.transaction(lease)
    tx = context.__enter__()
    widgets = tx.handle.client[raw.name]["widgets"]
    widgets.update_one({"_id": 1}, {"$inc": {"n": 1}}, session=tx.handle)
    return context, tx.handle.session_id


def _write_widget_in_a_transaction(store: MongoStore, lease: Any, raw: Raw) -> None:
    with store.tracker.transaction(lease) as tx:
        widgets = tx.handle.client[raw.name]["widgets"]
        widgets.update_one({"_id": 1}, {"$inc": {"n": 10}}, session=tx.handle)


def test_taking_an_expired_lock_aborts_the_transaction_its_holder_left_open(
    make: Make, raw: Raw
) -> None:
    # Without it the taker's writes to the same documents conflict until the server aborts
    # the orphan (transactionLifetimeLimitSeconds, 60 s by default).
    raw["widgets"].insert_one({"_id": 1, "n": 0})
    store, taker = make(), make()
    lease = store.lock.try_acquire(current_owner(), ttl=1)
    assert lease is not None
    orphan, session_id = _left_open(store, lease, raw)
    assert raw["runce.lock"].find_one({"_id": "global"})["sessions"] == [session_id]
    deadline = time.monotonic() + 30
    while (taken := taker.lock.try_acquire(current_owner("taker"), ttl=30)) is None:
        assert time.monotonic() < deadline, "the lease did not expire"
        time.sleep(0.1)
    assert session_id not in raw["runce.lock"].find_one({"_id": "global"}).get("sessions", [])
    _write_widget_in_a_transaction(taker, taken, raw)  # no write conflict with the orphan
    assert raw["widgets"].find_one({"_id": 1})["n"] == 10
    with pytest.raises(LockLost):  # the orphan can never commit
        orphan.__exit__(None, None, None)
    assert raw["widgets"].find_one({"_id": 1})["n"] == 10


def test_clearing_a_dead_holder_aborts_the_transaction_it_left_open(make: Make, raw: Raw) -> None:
    raw["widgets"].insert_one({"_id": 1, "n": 0})
    store, other = make(), make()
    lease = store.lock.try_acquire(current_owner(), ttl=1)
    assert lease is not None
    orphan, _ = _left_open(store, lease, raw)
    deadline = time.monotonic() + 30
    while (holder := other.lock.holder()) is None or holder.state == "live":
        assert time.monotonic() < deadline, "the lease did not expire"
        time.sleep(0.1)
    assert other.lock.clear() is not None  # `runce unlock`
    taken = other.lock.try_acquire(current_owner("next"), ttl=30)
    assert taken is not None
    _write_widget_in_a_transaction(other, taken, raw)
    assert raw["widgets"].find_one({"_id": 1})["n"] == 10
    with pytest.raises(LockLost):
        orphan.__exit__(None, None, None)


def test_a_transaction_on_a_lease_already_lost_does_not_start(make: Make) -> None:
    store = make()
    lease = store.lock.try_acquire(current_owner(), ttl=30)
    assert lease is not None
    store.lock.release(lease)
    with pytest.raises(LockLost), store.tracker.transaction(lease):
        pytest.fail("the block must not run")


def test_without_transactions_a_transactional_task_is_refused(make: Make) -> None:
    store = make(transactions=False)
    assert not store.supports_transactions
    with pytest.raises(UnsupportedFeature, match="standalone server"):
        store.tracker.transaction(None).__enter__()


# --- connection errors -------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_server_is_one_sentence_naming_host_port_and_database() -> None:
    port = _free_port()
    url = f"mongodb://127.0.0.1:{port}/infra?serverSelectionTimeoutMS=300"
    store = open_store(StoreSpec(type="mongodb", url=url))
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.tracker.applied()
    finally:
        store.close()
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "database infra" in message
    assert "read the applied tasks" in message
    assert "\n" not in message
    assert "Topology" not in message
    assert isinstance(caught.value.__cause__, PyMongoError)


@pytest.mark.parametrize(
    "url", ["mongodb://127.0.0.1:99999/infra", "mongodb://127.0.0.1:1:2/infra"], ids=str
)
def test_a_bad_url_is_unavailable_naming_it(url: str) -> None:
    with pytest.raises(StoreUnavailable, match="is not valid") as caught:
        open_store(StoreSpec(type="mongodb", url=url))
    assert "127.0.0.1" in str(caught.value)


def test_an_authentication_failure_is_unavailable() -> None:
    where = location_of(StoreSpec(type="mongodb", url="mongodb://app:pw@db.internal/infra"))
    failure = OperationFailure("Authentication failed.", code=18)
    error = translate(failure, "read the applied tasks", where, 5.0)
    assert isinstance(error, StoreUnavailable)
    assert str(error) == (
        "could not read the applied tasks: MongoDB at db.internal:27017 (database infra) "
        "refused the credentials in the URL (Authentication failed.)"
    )


# --- only on a real MongoDB ----------------------------------------------------------------

REAL_MONGODB = os.environ.get("RUNCE_TEST_MONGODB_URL")
needs_real_mongodb = pytest.mark.skipif(
    not REAL_MONGODB,
    reason="SecantusDB always reports a replica set and has no failover; set "
    "RUNCE_TEST_MONGODB_URL to a real MongoDB to test this",
)


@needs_real_mongodb
def test_a_real_standalone_server_refuses_transactional_tasks(make: Make) -> None:
    store = make()
    hello = pymongo.MongoClient(REAL_MONGODB).admin.command("hello")
    if "setName" in hello or hello.get("msg") == "isdbgrid":
        pytest.skip("RUNCE_TEST_MONGODB_URL names a replica set, not a standalone server")
    assert not store.supports_transactions
    with pytest.raises(UnsupportedFeature, match="standalone server"):
        store.tracker.transaction(None).__enter__()
    _record(store, "t.standalone")  # once tasks without transactions still work
    assert set(store.tracker.applied()) == {"t.standalone"}


@needs_real_mongodb
def test_the_lease_and_records_survive_a_failover(make: Make) -> None:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(REAL_MONGODB)
    members = client.admin.command("hello").get("hosts", [])
    if len(members) < 2:
        pytest.skip("RUNCE_TEST_MONGODB_URL must name a replica set with a secondary")
    store = make()
    lease = store.lock.try_acquire(current_owner(), ttl=60)
    assert lease is not None
    # The old primary drops its connections as it steps down.
    with contextlib.suppress(pymongo.errors.AutoReconnect):
        client.admin.command("replSetStepDown", 10, secondaryCatchUpPeriodSecs=5)
    deadline = time.monotonic() + 30
    while True:
        try:
            assert store.lock.renew(lease)
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline, "no new primary within 30 s"
            time.sleep(0.5)
    _record(store, "t.after-failover")
    assert set(store.tracker.applied()) == {"t.after-failover"}
