"""What only the MongoDB run queue does: enqueueing in the caller's transaction (a pymongo
ClientSession), its indexes and schema version, claim order on the claim-path index, and
real processes racing one idempotency key. The shared behaviour is in the queue contract
suite (test_queue_contract.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pymongo
import pytest

from runce.domain.runs import NewRun, Outcome, RunFilter
from runce.errors import SchemaError, UsageError
from runce.stores.base import StoreSpec
from runce.stores.mongo import MongoStore, open_store, wake
from runce.stores.mongo.schema import LATEST, MIGRATIONS

pytestmark = pytest.mark.mongo

REPO = Path(__file__).resolve().parents[2]
Make = Callable[..., MongoStore]
Raw = pymongo.database.Database[dict[str, Any]]


@pytest.fixture
def database(mongo_server: str) -> Iterator[str]:
    name = f"runce_t_{uuid.uuid4().hex[:12]}"
    yield name
    with pymongo.MongoClient(mongo_server) as client:
        client.drop_database(name)


@pytest.fixture
def url(mongo_server: str, database: str) -> str:
    return f"{mongo_server.rstrip('/')}/{database}"


@pytest.fixture
def raw(mongo_server: str, database: str) -> Iterator[Raw]:
    with pymongo.MongoClient(mongo_server, tz_aware=True) as client:
        yield client[database]


@pytest.fixture
def make(url: str) -> Iterator[Make]:
    opened: list[MongoStore] = []

    def make(**changes: Any) -> MongoStore:
        store = open_store(StoreSpec(**{"type": "mongodb", "url": url, **changes}))
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def new(**fields: Any) -> NewRun:
    return NewRun(
        id=fields.pop("id", uuid.uuid4().hex),
        kind=fields.pop("kind", "email.send"),
        input_json=fields.pop("input_json", '{"to":"a@example.com"}'),
        max_attempts=fields.pop("max_attempts", 3),
        **fields,
    )


# --- enqueue in the caller's transaction ------------------------------------------------------


def test_an_enqueue_in_a_session_commits_with_the_callers_transaction(make: Make, raw: Raw) -> None:
    store = make()
    # The collections and indexes exist before the caller's transaction starts: a
    # transaction cannot see a collection created after its snapshot.
    store.upgrade()
    raw["orders"].insert_one({"_id": "existing"})
    with raw.client.start_session() as session:
        session.start_transaction()
        raw["orders"].insert_one({"_id": "o1"}, session=session)
        [done] = store.runs.enqueue([new(idempotency_key="order-o1")], connection=session)
        assert done.created
        assert store.runs.get(done.run.id) is None  # not visible before the commit
        session.commit_transaction()
    assert store.runs.get(done.run.id) == done.run
    [claimed] = store.runs.claim("w1", None, limit=5, lease=30)
    assert claimed.id == done.run.id


def test_an_enqueue_in_a_session_aborts_with_the_callers_transaction(make: Make, raw: Raw) -> None:
    store = make()
    # The collections and indexes exist before the caller's transaction starts: a
    # transaction cannot see a collection created after its snapshot.
    store.upgrade()
    raw["orders"].insert_one({"_id": "existing"})
    with raw.client.start_session() as session:
        session.start_transaction()
        raw["orders"].insert_one({"_id": "o2"}, session=session)
        [done] = store.runs.enqueue([new(idempotency_key="order-o2")], connection=session)
        session.abort_transaction()
    assert store.runs.get(done.run.id) is None
    assert raw["orders"].find_one({"_id": "o2"}) is None
    assert store.runs.claim("w1", None, limit=5, lease=30) == []
    [again] = store.runs.enqueue([new(idempotency_key="order-o2")])
    assert again.created  # the key was never taken


def test_an_enqueue_in_a_session_finds_a_committed_key(make: Make, raw: Raw) -> None:
    store = make()
    [first] = store.runs.enqueue([new(idempotency_key="k")])
    with raw.client.start_session() as session:
        session.start_transaction()
        [again] = store.runs.enqueue([new(idempotency_key="k")], connection=session)
        session.commit_transaction()
    assert (again.created, again.run.id) == (False, first.run.id)


def test_connection_must_be_a_session_in_a_transaction(make: Make, raw: Raw) -> None:
    store = make()
    with pytest.raises(UsageError, match="ClientSession"):
        store.runs.enqueue([new()], connection=object())
    with (
        raw.client.start_session() as session,
        pytest.raises(UsageError, match="start_transaction"),
    ):
        store.runs.enqueue([new()], connection=session)


# --- indexes and the schema version ------------------------------------------------------------


def test_the_run_indexes_come_with_the_first_write_and_reads_create_nothing(
    make: Make, raw: Raw
) -> None:
    store = make()
    assert store.runs.get("x") is None
    assert store.runs.page(RunFilter(), None, 10) == []
    assert store.runs.reclaim() == []
    assert store.runs.workers() == []
    store.runs.wait_for_work(0.05)
    assert raw.list_collection_names() == []
    assert store.schema_status().pending == MIGRATIONS

    store.runs.enqueue([new(idempotency_key="k")])
    status = store.schema_status()
    assert (status.current, status.latest, status.up_to_date) == (LATEST, LATEST, True)
    info = raw["runce.runs"].index_information()
    keys = {tuple(spec["key"]): spec for spec in info.values()}
    claim_path = keys[(("state", 1), ("priority", -1), ("runAt", 1), ("_id", 1))]
    assert claim_path.get("partialFilterExpression") in ({"state": "queued"}, None)
    unique = keys[(("idempotencyKey", 1),)]
    assert unique["unique"]
    assert unique["partialFilterExpression"] == {"idempotencyKey": {"$type": "string"}}
    assert (("runId", 1),) in {
        tuple(spec["key"]) for spec in raw["runce.run_attempts"].index_information().values()
    }
    described = json.loads(store.schema_sql())
    assert described["version"] == LATEST
    assert described["collections"]["runs"]["name"] == "runce.runs"
    assert make().upgrade() == []


def test_without_auto_migrate_the_queue_waits_for_an_upgrade(make: Make, raw: Raw) -> None:
    store = make(auto_migrate=False)
    with pytest.raises(SchemaError, match="runce db upgrade"):
        store.runs.enqueue([new()])
    assert raw.list_collection_names() == []
    assert make().upgrade() == list(MIGRATIONS)
    store.runs.enqueue([new()])


def test_collection_names_are_configurable(make: Make, raw: Raw) -> None:
    store = make(
        options={
            "runsCollection": "jobs.runs",
            "runAttemptsCollection": "jobs.attempts",
            "workersCollection": "jobs.workers",
        }
    )
    [done] = store.runs.enqueue([new()])
    [run] = store.runs.claim("w1", None, limit=1, lease=30)
    store.runs.complete([Outcome(run.fence, "retry", error="x", run_at=store.runs.now())])
    assert raw["jobs.runs"].find_one({"_id": done.run.id}) is not None
    assert raw["jobs.attempts"].count_documents({"runId": done.run.id}) == 1
    assert "runce.runs" not in raw.list_collection_names()


def test_documents_use_camel_case_and_bson_dates(make: Make, raw: Raw) -> None:
    store = make()
    [done] = store.runs.enqueue([new(project_id="p", correlation_id="c", priority=3)])
    doc = raw["runce.runs"].find_one({"_id": done.run.id})
    assert doc is not None
    assert doc["input"] == {"to": "a@example.com"}
    assert (doc["projectId"], doc["correlationId"], doc["maxAttempts"]) == ("p", "c", 3)
    assert "idempotencyKey" not in doc  # absent, so outside the unique partial index
    assert doc["runAt"].tzinfo is not None


# --- claim order ------------------------------------------------------------------------------


def test_claims_follow_priority_then_run_at_then_id(make: Make) -> None:
    store = make()
    now = store.runs.now()
    at = now - timedelta(seconds=10)
    runs = [
        new(id="b", priority=1, run_at=at),
        new(id="a", priority=1, run_at=at),
        new(id="c", priority=1, run_at=at - timedelta(seconds=1)),
        new(id="d", priority=5, run_at=at),
        new(id="e", priority=-1, run_at=at - timedelta(hours=1)),
        new(id="f", priority=9, run_at=now + timedelta(hours=1)),
    ]
    store.runs.enqueue(runs)
    order = [r.id for r in store.runs.claim("w1", None, limit=10, lease=30)]
    assert order == ["d", "c", "a", "b", "e"]


# --- real processes ---------------------------------------------------------------------------

_ENQUEUER = """
import json, sys, uuid
from runce.stores.base import StoreSpec
from runce.stores.mongo import open_store
from runce.stores.queue import NewRun

store = open_store(StoreSpec(type="mongodb", url=sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
ids = []
for key in ("one", "two", "three"):
    run = NewRun(id=uuid.uuid4().hex, kind="k", input_json="{}", max_attempts=1,
                 idempotency_key=key)
    [done] = store.runs.enqueue([run])
    ids.append([done.run.id, done.created])
print(json.dumps(ids), flush=True)
store.close()
"""


@pytest.mark.slow
def test_eight_processes_racing_one_key_make_one_run(url: str, raw: Raw) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ENQUEUER, url],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=30)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    for position in range(3):
        ids = {report[position][0] for report in reports}
        created = [report[position][1] for report in reports]
        assert len(ids) == 1
        assert created.count(True) == 1
    assert raw["runce.runs"].count_documents({}) == 3


# --- waiting for work -------------------------------------------------------------------------

_LATE_ENQUEUER = """
import sys, time, uuid
from runce.stores.base import StoreSpec
from runce.stores.mongo import open_store
from runce.stores.queue import NewRun

queue = open_store(StoreSpec(type="mongodb", url=sys.argv[1])).runs
queue.enqueue([NewRun(id=uuid.uuid4().hex, kind="k", input_json="{}", max_attempts=1)])
print("ready", flush=True)
sys.stdin.readline()
queue.enqueue([NewRun(id=uuid.uuid4().hex, kind="k", input_json="{}", max_attempts=1)])
print(time.time(), flush=True)
"""


class _Commands(pymongo.monitoring.CommandListener):
    """The commands a client sent (its driver's monitoring of the server is not among them)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: pymongo.monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: pymongo.monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: pymongo.monitoring.CommandFailedEvent) -> None:
        pass


def test_an_idle_wait_asks_the_server_nothing_and_an_enqueue_elsewhere_ends_it(
    make: Make, url: str, mongo_server: str
) -> None:
    commands = _Commands()
    with pymongo.MongoClient(mongo_server, event_listeners=[commands]) as client:
        waiter = make(options={"client": client}).runs
        child = subprocess.Popen(
            [sys.executable, "-c", _LATE_ENQUEUER, url],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdin is not None
            assert child.stdout.readline().strip() == "ready"
            # The first waits open the change stream, and see the child's first enqueue.
            deadline = time.monotonic() + 30
            while True:
                began = time.monotonic()
                waiter.wait_for_work(1.0)
                if time.monotonic() - began >= 0.9:  # a whole second without news
                    break
                assert time.monotonic() < deadline, "the waiter never settled"
            before = len(commands.names)
            began = time.monotonic()
            waiter.wait_for_work(3.0)
            assert time.monotonic() - began >= 2.9
            # Before: the signal read every 25 ms (120 reads); now at most the stream's answer.
            asked = commands.names[before:]
            assert len(asked) <= 1, asked
            assert set(asked) <= {"getMore"}, asked

            child.stdin.write("go\n")
            child.stdin.flush()
            started = time.monotonic()
            waiter.wait_for_work(20)
            waited = time.monotonic() - started
            woke_at = time.time()
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert waited < 10, "wait_for_work slept through another process's enqueue"
    assert woke_at >= float(out.strip()) - 0.05, "woke before the enqueue"


def test_without_change_streams_a_waiter_reads_the_signal_less_often_while_nothing_moves(
    make: Make, mongo_server: str
) -> None:
    commands = _Commands()
    with pymongo.MongoClient(mongo_server, event_listeners=[commands]) as client:
        waiter = make(options={"client": client}).runs
        waiter.enqueue([new()])  # the collections and the signal exist
        location = waiter._conn.location  # type: ignore[attr-defined]
        key = (location.url, location.database, location.runs, location.workers)
        workers = client[location.database][location.workers]
        # A standalone server refuses $changeStream; this one refuses a stream it cannot
        # match, which sends the watch down the same path.
        refused = wake.Watch(workers, {"$unknown": 1}, threading.Event())  # type: ignore[arg-type]
        deadline = time.monotonic() + 30
        while not refused.unsupported:
            assert time.monotonic() < deadline, "the refused stream was never given up"
            time.sleep(0.01)
        wake._watches[key] = refused
        try:
            waiter.wait_for_work(0.01)
            before = len(commands.names)
            began = time.monotonic()
            waiter.wait_for_work(3.0)
            assert time.monotonic() - began >= 2.9
            reads = commands.names[before:]
            assert set(reads) == {"find"}, reads
            # Every 25 ms after news, half a second apart once it has been quiet a while:
            # about a dozen in 3 s (120 at a steady 25 ms).
            assert 3 <= len(reads) <= 30, len(reads)

            # Another process's enqueue moves the signal: the waiter sees it at its next read.
            workers.update_one({"_id": "~wake"}, {"$inc": {"seq": 1}})
            began = time.monotonic()
            waiter.wait_for_work(20)
            assert time.monotonic() - began < 5, "the waiter missed the signal's move"
        finally:
            wake._watches.pop(key, None)


def test_a_watch_never_asks_in_a_loop_while_other_documents_move(
    database: str, mongo_server: str
) -> None:
    # Heartbeats move other documents of the workers collection all the time; a server may
    # answer the stream's getMore at once when they do (SecantusDB does). The watch must not
    # turn that into a loop of getMores (it once spun a core): about ten a second at most.
    commands = _Commands()
    with (
        pymongo.MongoClient(mongo_server, event_listeners=[commands]) as client,
        pymongo.MongoClient(mongo_server) as mover,
    ):
        workers = client[database]["runce_workers"]
        workers.insert_one({"_id": "~wake", "seq": 0})
        watch = wake.Watch(workers, "~wake", threading.Event())
        try:
            deadline = time.monotonic() + 30
            while not watch.watching:
                assert time.monotonic() < deadline, "the stream never opened"
                time.sleep(0.01)
            time.sleep(0.2)
            heartbeats = mover[database]["runce_workers"]
            before = commands.names.count("getMore")
            began = time.monotonic()
            moves = 0
            while moves < 300 or time.monotonic() - began < 1.5:
                heartbeats.update_one({"_id": "w1"}, {"$inc": {"beat": 1}}, upsert=True)
                moves += 1
            elapsed = time.monotonic() - began
            asked = commands.names.count("getMore") - before
        finally:
            watch.close()
    assert asked <= elapsed * 10 + 3, (asked, moves, elapsed)
