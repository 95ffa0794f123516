"""Enqueueing runs on MongoDB.

Idempotency keys are unique by a partial unique index (documents without a key do not take
part): a batch reads the runs that already hold its keys, inserts the rest unordered, and
a duplicate insert (another enqueuer took the key meanwhile) reads the run that holds it.
Debounced runs are enqueued under a lock document per (kind, key), so that two enqueuers
of one key never both insert one.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from runce.domain.runs import Enqueued, NewRun, Run
from runce.errors import StoreError, UsageError
from runce.stores.mongo.connection import Connection, Document
from runce.stores.mongo.flow import FLOW_LOCK_WAIT, debounce_id, take_flow_lock
from runce.stores.mongo.run_documents import ms, new_document, run_from, server_now
from runce.stores.queue import enqueue_debounced

DUPLICATE_KEY = 11000

Insert = Callable[[list[NewRun]], list[Enqueued]]


def insert_runs(
    collection: Collection[Document],
    runs: list[NewRun],
    session: ClientSession | None,
    now: datetime,
) -> list[Enqueued]:
    """Insert the runs whose idempotency key no run holds yet (the first of a batch's
    runs with one key); each run's answer, the run holding its key where one did."""
    first_of = _first_of_keys(runs)
    existing = _holding(collection, list(first_of), session) if first_of else {}
    docs: dict[int, Document] = {}
    for index, new in enumerate(runs):
        key = new.idempotency_key
        if key is None or (key not in existing and first_of[key] == index):
            docs[index] = new_document(new, now)
    inserted = _insert(collection, docs, existing, session)
    return _answers(runs, docs, inserted, existing, first_of)


def _first_of_keys(runs: list[NewRun]) -> dict[str, int]:
    """Each idempotency key -> the index of its first run in the batch."""
    first_of: dict[str, int] = {}
    for index, new in enumerate(runs):
        if new.idempotency_key is not None:
            first_of.setdefault(new.idempotency_key, index)
    return first_of


def _holding(
    collection: Collection[Document], keys: list[Any], session: ClientSession | None
) -> dict[str, Run]:
    """The runs holding ``keys``, by key."""
    found = collection.find({"idempotencyKey": {"$in": keys}}, session=session)
    return {run.idempotency_key or "": run for run in map(run_from, found)}


def _insert(
    collection: Collection[Document],
    docs: dict[int, Document],
    existing: dict[str, Run],
    session: ClientSession | None,
) -> set[int]:
    """Insert ``docs``; the indexes inserted. A run whose key another enqueuer took
    meanwhile is not, and the run holding its key joins ``existing``."""
    if not docs:
        return set()
    try:
        collection.insert_many(list(docs.values()), ordered=False, session=session)
    except BulkWriteError as exc:
        lost = _lost_to_keys(exc, docs, session)
        if lost is None:
            raise
        lost_keys = [docs[i].get("idempotencyKey") for i in lost]
        existing.update(_holding(collection, lost_keys, None))
        if any(key not in existing for key in lost_keys):
            raise  # the run holding the key is gone again (pruned meanwhile)
        return set(docs) - lost
    return set(docs)


def _lost_to_keys(
    exc: BulkWriteError, docs: dict[int, Document], session: ClientSession | None
) -> set[int] | None:
    """The indexes an insert lost to idempotency keys taken meanwhile; None when it failed
    otherwise: in the caller's transaction, a run id used twice, another error."""
    errors = exc.details.get("writeErrors", [])
    if session is not None or any(e.get("code") != DUPLICATE_KEY for e in errors):
        return None
    order = list(docs)
    lost = {order[e["index"]] for e in errors}
    if any(docs[i].get("idempotencyKey") is None for i in lost):
        return None  # a run id used twice: not an idempotent enqueue
    return lost


def _answers(
    runs: list[NewRun],
    docs: dict[int, Document],
    inserted: set[int],
    existing: dict[str, Run],
    first_of: dict[str, int],
) -> list[Enqueued]:
    results: list[Enqueued] = []
    for index, new in enumerate(runs):
        if index in inserted:
            results.append(Enqueued(run_from(docs[index]), created=True))
        else:
            key = new.idempotency_key or ""
            run = existing.get(key)
            if run is None:  # a later duplicate inside this batch
                run = run_from(docs[first_of[key]])
            results.append(Enqueued(run, created=False))
    return results


def debounce_enqueue(conn: Connection, runs: list[NewRun], insert: Insert) -> list[Enqueued]:
    """A batch with debounced runs, each (kind, key) locked by a document in the workers
    collection (taken in order; a holder that died frees it after FLOW_LOCK_FOR) while
    its queued run is found and merged into, or a run inserted: two enqueuers of one key
    never both insert one."""
    ids = sorted({debounce_id(new.kind, new.concurrency_key) for new in runs if new.debounce})
    token = uuid.uuid4().hex
    held: list[str] = []
    try:
        for lock_id in ids:
            if not take_flow_lock(conn, lock_id, token, time.monotonic() + FLOW_LOCK_WAIT):
                raise StoreError(
                    f"the debounce lock {lock_id[10:]} stayed held for "
                    f"{FLOW_LOCK_WAIT:g} s; enqueue the run again"
                )
            held.append(lock_id)
        now = server_now(conn)
        return enqueue_debounced(runs, now, lambda new, at: _merge(conn.runs, new, at, now), insert)
    finally:
        for lock_id in held:
            conn.workers.delete_one({"_id": lock_id, "holder": token})


def _merge(runs: Collection[Document], new: NewRun, at: datetime, now: datetime) -> Run | None:
    """The key's queued run not yet started, given ``new``'s input and start ``at``."""
    doc = runs.find_one_and_update(
        {
            "kind": new.kind,
            "state": "queued",
            "concurrencyKey": new.concurrency_key,
            "attempt": 0,
            "idempotencyKey": {"$exists": False},
        },
        {"$set": {"input": json.loads(new.input_json), "runAt": ms(at), "updatedAt": now}},
        sort=[("runAt", 1), ("_id", 1)],
        return_document=ReturnDocument.AFTER,
    )
    return None if doc is None else run_from(doc)


def callers_session(connection: Any) -> ClientSession | None:
    """The caller's pymongo session to enqueue in, refused unless a transaction is open."""
    if connection is None:
        return None
    if not isinstance(connection, ClientSession):
        kind = f"{type(connection).__module__}.{type(connection).__qualname__}"
        raise UsageError(
            "the MongoDB store enqueues in your transaction through a pymongo ClientSession "
            f"(client.start_session(), then session.start_transaction()), not {kind}"
        )
    if not connection.in_transaction:
        raise UsageError(
            "connection= is a pymongo ClientSession with no transaction open; call "
            "session.start_transaction() first, so the runs commit or abort with your writes"
        )
    return connection


def callers_runs(conn: Connection, session: ClientSession) -> Collection[Document]:
    """The runs collection through the client of the caller's session."""
    client: Any = session.client
    database = client[conn.location.database]
    collection: Collection[Document] = database[conn.location.runs]
    return collection
