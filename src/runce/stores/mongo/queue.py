"""The MongoDB run queue (docs/runs.md): ``runce.runs``, ``runce.run_attempts``,
``runce.workers``.

A run is one document, ``_id`` = the run id, with camelCase fields and BSON dates.

* Claims read the due runs' ids in claim order (``{state: "queued", runAt <= now}`` sorted
  by priority desc, runAt, _id: the claim-path index), then take each with one conditional
  ``update_one`` (``{_id, state: "queued", runAt <= now}``): atomic per document, so no run
  is handed to two claimers. The ids read are kept for the next claims of this store object
  until the wake signal moves (something was enqueued or requeued anywhere) or a second
  passes, so a busy worker does not sort the whole backlog for every few runs.
* Writes are ``update_one`` with the whole filter, then reads by ``_id``, not
  ``find_one_and_update``: the same atomicity, and point lookups on every server.
* Every write about a claim is fenced by ``{_id, attempt, claimedBy, state: "running"}``:
  a worker that lost its claim matches nothing and is told so.
* Idempotency keys are unique by a partial unique index (documents without a key do not
  take part); a duplicate insert reads the run that holds the key.
* "Now" is the server's clock (:meth:`.Connection.server_now`), truncated to BSON's
  millisecond and passed as a literal.
* ``enqueue(..., connection=session)`` inserts with the caller's pymongo ``ClientSession``
  inside its open transaction (through the session's own client), so the runs commit or
  abort with the caller's writes. The collections must exist before that transaction
  starts (any earlier write, or ``runce db upgrade``): MongoDB cannot use a collection
  created after a transaction's snapshot.
* ``wait_for_work`` waits for the wake signal (``{_id: "~wake", seq}`` in the workers
  collection, counted up by every enqueue, retry and requeue) to move: through a change
  stream where the server has them (``wake.py``), else by reading it, every 25 ms after
  it moved and backing off to every 0.5 s while it stays put; enqueues and retries made
  in this process wake it at once. Runs that become due later (a retry's backoff) are
  found by the worker's own periodic claims.
"""

from __future__ import annotations

import collections
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from runce.domain.runs import (
    ACTIVE,
    STATS_CAP,
    AttemptRecord,
    Beat,
    ClaimRequest,
    Enqueued,
    Fence,
    FlowCount,
    KindLimit,
    Landed,
    NewRun,
    Outcome,
    Run,
    RunCounts,
    RunFilter,
    RunStats,
    Unreadable,
    WorkerInfo,
    check_outcomes,
    landed_of,
)
from runce.errors import StoreError, UnsupportedFeature, UsageError
from runce.stores.mongo.connection import Connection, Document
from runce.stores.mongo.documents import aware
from runce.stores.mongo.schema import Schema
from runce.stores.mongo.wake import watch_for
from runce.stores.queue import (
    Bucket,
    Candidate,
    Group,
    RunQueue,
    enqueue_debounced,
    limited_want,
    pick_limited,
    rate_room,
    rated_kinds,
    spent_buckets,
    split_claim,
    started_groups,
    tally,
)

DUPLICATE_KEY = 11000
# Without change streams (a standalone server), wait_for_work reads the wake signal every
# POLL seconds after it moved, backing off to every POLL_MAX while it stays put.
POLL = 0.025
POLL_MAX = 0.5
CANDIDATES = 1000  # due run ids read per look, claimed in order by the claims that follow
CANDIDATES_FOR = 1.0  # seconds a look is trusted while the wake signal stays put
WAKE_ID = "~wake"  # the wake signal's document in the workers collection
# Flow control: due runs of the limited kinds a claim weighs at most (fairness between keys
# holds among them), how long a claimer may hold the flow lock before another may take it,
# and how long a claimer waits for it at most (less with a short lease: a quarter of it).
FLOW_CANDIDATES = 1000
FLOW_CANDIDATES_FOR = 3.0  # seconds a look is trusted (sorting the due runs is the cost)
FLOW_LOCK_FOR = timedelta(seconds=10)
FLOW_LOCK_WAIT = 30.0
FLOW_LOCK_ID = "~flow"  # the lock's document in the workers collection
_CLAIM_ORDER = [("priority", -1), ("runAt", 1), ("_id", 1)]
_NEWEST_FIRST = [("createdAt", -1), ("_id", -1)]
_OLDEST_FIRST = [("createdAt", 1), ("_id", 1)]
_OLDEST_FIRST = [("createdAt", 1), ("_id", 1)]
_UNCLAIMED: Document = {
    "claimedBy": None,
    "claimedAt": None,
    "leaseExpiresAt": None,
    "startedAt": None,
}

# Same-process wake-ups, shared by every store object on one runs collection.
_wakers: dict[tuple[str, str, str], threading.Event] = {}
_wakers_guard = threading.Lock()


@dataclass
class _Candidates:
    ids: collections.deque[Any]
    signal: Any
    read_at: float


@dataclass
class _FlowCandidates:
    rows: list[Candidate]  # id, kind, concurrency key: in claim order
    signal: Any
    read_at: float


def _waker(conn: Connection) -> threading.Event:
    key = (conn.location.url, conn.location.database, conn.location.runs)
    with _wakers_guard:
        return _wakers.setdefault(key, threading.Event())


class MongoRunQueue:
    # wait_for_work returns within a moment of an enqueue anywhere (the wake signal): an
    # idle worker needs to look for due runs less often (only for those due on their own).
    wakes_for_new_work = True

    def __init__(self, conn: Connection, schema: Schema) -> None:
        self._conn = conn
        self._schema = schema
        self._runs = conn.runs
        self._attempts = conn.run_attempts
        self._waker = _waker(conn)
        self._seen: Any = None  # the wake signal as wait_for_work last saw it
        self._poll_every = POLL  # seconds between reads of the signal, when it must poll
        # The kinds of the last exchange's claim, when it took no run: the next one looks
        # before it claims.
        self._found_none: tuple[tuple[str, ...] | None] | None = None
        self._candidates: dict[tuple[str, ...] | None, _Candidates] = {}
        self._flow_candidates: dict[tuple[str, ...], _FlowCandidates] = {}

    def now(self) -> datetime:
        return _ms(self._conn.server_now())

    def run_counts(self) -> RunCounts:
        now = self.now()
        due = {"$and": [{"$eq": ["$state", "queued"]}, {"$lte": ["$runAt", now]}]}
        pipeline: list[Document] = [
            {
                "$group": {
                    "_id": {"kind": "$kind", "state": "$state"},
                    "runs": {"$sum": 1},
                    "oldest": {"$min": {"$cond": [due, "$runAt", None]}},
                }
            }
        ]
        with self._conn.translated("count the runs"):
            groups = list(self._runs.aggregate(pipeline))
        counts = {(g["_id"]["kind"], g["_id"]["state"]): int(g["runs"]) for g in groups}
        oldest: dict[str, datetime] = {}
        for group in groups:
            if isinstance(group.get("oldest"), datetime):
                kind = group["_id"]["kind"]
                oldest[kind] = min(aware(group["oldest"]), oldest.get(kind, now))
        return RunCounts(counts, oldest, now)

    # --- enqueue ---------------------------------------------------------------------------------

    def enqueue(self, runs: Sequence[NewRun], connection: Any = None) -> list[Enqueued]:
        session = _callers_session(connection)
        if not runs:
            return []
        self._schema.prepare()  # outside the caller's transaction: indexes cannot be made there
        what = f"enqueue run {runs[0].id}" if len(runs) == 1 else f"enqueue {len(runs)} runs"
        with self._conn.translated(what):
            collection = self._runs if session is None else self._callers_runs(session)
            if any(new.debounce is not None for new in runs):
                if session is not None:
                    raise UnsupportedFeature(
                        "a debounced job cannot be enqueued in your MongoDB transaction "
                        "(connection=): enqueue it without connection="
                    )
                results = self._debounce_enqueue(list(runs))
            else:
                results = self._enqueue(collection, list(runs), session)
            if any(r.created for r in results):
                self._wake_others()
        return results

    def _enqueue(
        self, collection: Collection[Document], runs: list[NewRun], session: ClientSession | None
    ) -> list[Enqueued]:
        now = self.now()
        first_of: dict[str, int] = {}  # idempotency key -> index of its first run in the batch
        for index, new in enumerate(runs):
            if new.idempotency_key is not None:
                first_of.setdefault(new.idempotency_key, index)
        existing: dict[str, Run] = {}
        if first_of:
            found = collection.find({"idempotencyKey": {"$in": list(first_of)}}, session=session)
            existing = {run.idempotency_key or "": run for run in map(run_from, found)}
        docs: dict[int, Document] = {}
        for index, new in enumerate(runs):
            key = new.idempotency_key
            if key is None or (key not in existing and first_of[key] == index):
                docs[index] = _new_document(new, now)
        inserted = set(docs)
        if docs:
            order = list(docs)
            try:
                collection.insert_many(list(docs.values()), ordered=False, session=session)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if session is not None or any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                lost = {order[e["index"]] for e in errors}
                lost_keys = [docs[i].get("idempotencyKey") for i in lost]
                if any(key is None for key in lost_keys):
                    raise  # a run id used twice: not an idempotent enqueue
                inserted -= lost
                found = collection.find({"idempotencyKey": {"$in": lost_keys}})
                existing.update((run.idempotency_key or "", run) for run in map(run_from, found))
                if any(key not in existing for key in lost_keys):
                    raise  # the run holding the key is gone again (pruned meanwhile)
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

    def _debounce_enqueue(self, runs: list[NewRun]) -> list[Enqueued]:
        """A batch with debounced runs, each (kind, key) locked by a document in the workers
        collection (taken in order; a holder that died frees it after FLOW_LOCK_FOR) while
        its queued run is found and merged into, or a run inserted: two enqueuers of one key
        never both insert one."""
        ids = sorted({_debounce_id(new.kind, new.concurrency_key) for new in runs if new.debounce})
        token = uuid.uuid4().hex
        held: list[str] = []
        try:
            for lock_id in ids:
                if not self._take_flow_lock(lock_id, token, time.monotonic() + FLOW_LOCK_WAIT):
                    raise StoreError(
                        f"the debounce lock {lock_id[10:]} stayed held for "
                        f"{FLOW_LOCK_WAIT:g} s; enqueue the run again"
                    )
                held.append(lock_id)
            now = self.now()
            return enqueue_debounced(
                runs,
                now,
                lambda new, at: self._merge(new, at, now),
                lambda batch: self._enqueue(self._runs, batch, None),
            )
        finally:
            for lock_id in held:
                self._conn.workers.delete_one({"_id": lock_id, "holder": token})

    def _merge(self, new: NewRun, at: datetime, now: datetime) -> Run | None:
        """The key's queued run not yet started, given ``new``'s input and start ``at``."""
        doc = self._runs.find_one_and_update(
            {
                "kind": new.kind,
                "state": "queued",
                "concurrencyKey": new.concurrency_key,
                "attempt": 0,
                "idempotencyKey": {"$exists": False},
            },
            {"$set": {"input": json.loads(new.input_json), "runAt": _ms(at), "updatedAt": now}},
            sort=[("runAt", 1), ("_id", 1)],
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else run_from(doc)

    def _callers_runs(self, session: ClientSession) -> Collection[Document]:
        client: Any = session.client
        database = client[self._conn.location.database]
        collection: Collection[Document] = database[self._conn.location.runs]
        return collection

    # --- claims ----------------------------------------------------------------------------------

    def claim(
        self, worker_id: str, kinds: Sequence[str] | None, limit: int, lease: float
    ) -> list[Run]:
        if limit <= 0:
            return []
        self._schema.prepare()
        with self._conn.translated(f"claim runs for worker {worker_id}"):
            return self._claim(worker_id, kinds, limit, lease)

    def _claim(
        self, worker_id: str, kinds: Sequence[str] | None, limit: int, lease: float
    ) -> list[Run]:
        now = self.now()
        changes = {
            "state": "running",
            "claimedBy": worker_id,
            "claimedAt": now,
            "startedAt": now,
            "leaseExpiresAt": _ms(now + timedelta(seconds=lease)),
            "updatedAt": now,
            "progress": None,  # a new attempt starts over
            "progressMessage": None,
        }
        token = uuid.uuid4().hex
        update = {"$set": {**changes, "claimToken": token}, "$inc": {"attempt": 1}}
        key = tuple(sorted(kinds)) if kinds else None
        signal = self._signal()
        taken: list[Document] = []
        refreshed = False
        while len(taken) < limit:
            candidates = self._candidates.get(key)
            stale = (
                candidates is None
                or candidates.signal != signal
                or time.monotonic() - candidates.read_at > CANDIDATES_FOR
            )
            if stale or not candidates.ids:  # type: ignore[union-attr]
                if refreshed and not stale:
                    break  # a fresh look found no more
                candidates = self._look_for_candidates(key, kinds, now, signal)
                refreshed = True
                if not candidates.ids:
                    break
            wanted = min(limit - len(taken), len(candidates.ids))  # type: ignore[union-attr]
            batch = [candidates.ids.popleft() for _ in range(wanted)]  # type: ignore[union-attr]
            # Atomic per document: of two claimers, one matches and the other moves on;
            # the token tells which of the batch this claim took.
            still = {"_id": {"$in": batch}, "state": "queued", "runAt": {"$lte": now}}
            if self._runs.update_many(still, update).matched_count:
                got = {
                    d["_id"]: d
                    for d in self._runs.find({"_id": {"$in": batch}, "claimToken": token})
                }
                taken += [got[run_id] for run_id in batch if run_id in got]
        return [run_from(doc) for doc in taken]

    def _look_for_candidates(
        self, key: tuple[str, ...] | None, kinds: Sequence[str] | None, now: datetime, signal: Any
    ) -> _Candidates:
        """The next due runs in claim order, ids only, kept for the claims that follow until
        something is enqueued or requeued anywhere (the wake signal moves) or they age."""
        query: Document = {"state": "queued", "runAt": {"$lte": now}}
        if kinds:
            query["kind"] = {"$in": list(kinds)}
        found = self._runs.find(query, {"_id": 1}).sort(_CLAIM_ORDER).limit(CANDIDATES)
        candidates = _Candidates(
            collections.deque(doc["_id"] for doc in found), signal, time.monotonic()
        )
        self._candidates[key] = candidates
        return candidates

    def exchange(
        self, outcomes: Sequence[Outcome], claim: ClaimRequest | None
    ) -> tuple[list[Landed | None], list[Run]]:
        done = self.complete(outcomes) if outcomes else []
        if claim is None or claim.limit <= 0:
            return done, []
        kinds = tuple(claim.kinds) if claim.kinds is not None else None
        if self._found_none == (kinds,) and not self._any_due(kinds):
            return done, []  # an idle worker's look: one read
        taken = self._claim_for(claim)
        self._found_none = None if taken else (kinds,)
        return done, taken

    def _any_due(self, kinds: tuple[str, ...] | None) -> bool:
        """Whether any run of ``kinds`` is due: after a claim that took none, the next one
        asks this first (one read), and claims only when it says yes."""
        self._schema.prepare()
        with self._conn.translated("look for due runs"):
            query: Document = {"state": "queued", "runAt": {"$lte": self.now()}}
            if kinds is not None:
                query["kind"] = {"$in": list(kinds)}
            return self._runs.find_one(query, {"_id": 1}) is not None

    def _claim_for(self, claim: ClaimRequest) -> list[Run]:
        if not claim.limits:
            return self.claim(claim.worker_id, claim.kinds, claim.limit, claim.lease)
        limited, unlimited = split_claim(claim)
        self._schema.prepare()
        with self._conn.translated(f"claim runs for worker {claim.worker_id}"):
            cached = self._due_candidates(sorted(limited))
            # Waiting long for the locks would hand the worker runs it no longer trusts to
            # start (their lease counted from its request): claim none this time instead.
            wait = min(FLOW_LOCK_WAIT, claim.lease / 4)
            taken: list[Run] = []
            if cached.rows:  # with no limited run due, there is no lock to take
                with self._flow_lock(wait) as held:
                    taken = self._claim_limited(claim, limited, cached) if held else []
            rest = claim.limit - len(taken)
            if unlimited and rest > 0:
                taken += self._claim(claim.worker_id, unlimited, rest, claim.lease)
        return taken

    @contextlib.contextmanager
    def _flow_lock(self, wait: float) -> Iterator[bool]:
        """Hold the flow-control lock, one document for every limited kind (a claim then
        takes one write to lock and one to unlock whatever its kinds), or yield False when it
        stays held for ``wait`` seconds. A holder that died frees it when its ``until``
        passes (:data:`FLOW_LOCK_FOR`)."""
        token = uuid.uuid4().hex
        held = self._take_flow_lock(FLOW_LOCK_ID, token, time.monotonic() + wait)
        try:
            yield held
        finally:
            if held:
                self._conn.workers.update_one(
                    {"_id": FLOW_LOCK_ID, "holder": token},
                    {"$set": {"holder": None, "until": None}},
                )

    def _take_flow_lock(self, lock_id: str, token: str, deadline: float) -> bool:
        pause = 0.001
        while True:
            now = self.now()
            free = {"_id": lock_id, "$or": [{"until": None}, {"until": {"$lte": now}}]}
            change = {"$set": {"holder": token, "until": _ms(now + FLOW_LOCK_FOR)}}
            try:
                self._conn.workers.update_one(free, change, upsert=True)
                return True
            except DuplicateKeyError:  # held: the filter missed, and the upsert met the _id
                pass
            if time.monotonic() > deadline:
                return False  # the claim takes none of these kinds this time
            time.sleep(pause)
            pause = min(pause * 2, 0.02)

    def _buckets(self, rated: dict[str, KindLimit], rows: list[Candidate]) -> dict[Group, Bucket]:
        """The rate buckets of the (kind, key)s among ``rows`` whose kind has a rate."""
        groups = {(kind, key) for _, kind, key in rows if kind in rated}
        if not groups:
            return {}
        ids = {_bucket_id(group): group for group in groups}
        found = self._conn.workers.find({"_id": {"$in": list(ids)}})
        return {ids[doc["_id"]]: Bucket(doc["tokens"], aware(doc["at"])) for doc in found}

    def _due_candidates(self, kinds: list[str]) -> _FlowCandidates:
        """The due runs of limited ``kinds``, read at most every 3 seconds while the wake
        signal stays put, as on the plain path (outside the flow locks: a run another claimer
        took since is skipped by the update, which wants it still queued)."""
        now = self.now()
        group = tuple(kinds)
        signal = self._signal()
        cached = self._flow_candidates.get(group)
        if (
            cached is None
            or not cached.rows
            or cached.signal != signal
            or time.monotonic() - cached.read_at > FLOW_CANDIDATES_FOR
        ):
            due = {"kind": {"$in": kinds}, "state": "queued", "runAt": {"$lte": now}}
            found = self._runs.find(due, {"kind": 1, "concurrencyKey": 1})
            rows = [
                (doc["_id"], doc["kind"], doc.get("concurrencyKey"))
                for doc in found.sort(_CLAIM_ORDER).limit(FLOW_CANDIDATES)
            ]
            cached = self._flow_candidates[group] = _FlowCandidates(rows, signal, time.monotonic())
        return cached

    def _claim_limited(
        self, claim: ClaimRequest, limited: dict[str, int], cached: _FlowCandidates
    ) -> list[Run]:
        now = self.now()
        kinds = sorted(limited)
        running: dict[tuple[str, str | None], int] = {}
        # One equality read per kind on its index, the leases checked here: a range or an
        # $in in the filter costs some servers a scan, and this read holds the lock.
        for kind in kinds:
            found = self._runs.find(
                {"kind": kind, "state": "running"}, {"concurrencyKey": 1, "leaseExpiresAt": 1}
            )
            for doc in found:
                until = doc.get("leaseExpiresAt")
                if isinstance(until, datetime) and aware(until) > now:
                    group = (kind, doc.get("concurrencyKey"))
                    running[group] = running.get(group, 0) + 1
        rated = rated_kinds(claim)
        room, buckets = None, {}
        if rated:
            buckets = self._buckets(rated, cached.rows)
            room = rate_room(rated, buckets, now)
        ids = pick_limited(cached.rows, running, limited, limited_want(claim), room)
        if not ids:
            return []
        if rated:
            started = started_groups(cached.rows, ids)
            for group, bucket in spent_buckets(rated, buckets, started, now).items():
                self._conn.workers.update_one(
                    {"_id": _bucket_id(group)},
                    {"$set": {"tokens": bucket.tokens, "at": bucket.at}},
                    upsert=True,
                )
        picked = set(ids)
        cached.rows = [row for row in cached.rows if row[0] not in picked]
        token = uuid.uuid4().hex
        changes = {
            "state": "running",
            "claimedBy": claim.worker_id,
            "claimedAt": now,
            "startedAt": now,
            "leaseExpiresAt": _ms(now + timedelta(seconds=claim.lease)),
            "updatedAt": now,
            "progress": None,
            "progressMessage": None,
            "claimToken": token,
        }
        still = {"_id": {"$in": ids}, "state": "queued"}
        self._runs.update_many(still, {"$set": changes, "$inc": {"attempt": 1}})
        got = {d["_id"]: d for d in self._runs.find({"_id": {"$in": ids}, "claimToken": token})}
        return [run_from(got[run_id]) for run_id in ids if run_id in got]

    def heartbeat(self, fences: Sequence[Fence], lease: float) -> dict[str, Beat]:
        if not fences:
            return {}
        self._schema.prepare()
        beats: dict[str, Beat] = {}
        with self._conn.translated(f"renew the leases of {len(fences)} runs"):
            until = _ms(self.now() + timedelta(seconds=lease))
            held = []
            for fence in fences:
                result = self._runs.update_one(_fenced(fence), {"$set": {"leaseExpiresAt": until}})
                beats[fence.run_id] = "ok" if result.matched_count == 1 else "lost"
                if result.matched_count == 1:
                    held.append(fence.run_id)
            if held:
                asked = {"_id": {"$in": held}, "cancelRequested": True}
                for doc in self._runs.find(asked, {"_id": 1}):
                    beats[doc["_id"]] = "cancel"
        return beats

    def progress(self, fence: Fence, percent: int, message: str | None) -> bool:
        self._schema.prepare()
        with self._conn.translated(f"store the progress of run {fence.run_id}"):
            changes = {"progress": percent, "progressMessage": message, "updatedAt": self.now()}
            result = self._runs.update_one(_fenced(fence), {"$set": changes})
        return result.matched_count == 1

    def complete(self, outcomes: Sequence[Outcome]) -> list[Landed | None]:
        check_outcomes(outcomes)
        if not outcomes:
            return []
        self._schema.prepare()
        what = f"record the outcomes of {len(outcomes)} runs"
        with self._conn.translated(what):
            now = self.now()
            ids = list({outcome.fence.run_id for outcome in outcomes})
            before = {doc["_id"]: doc for doc in self._runs.find({"_id": {"$in": ids}})}
            token = uuid.uuid4().hex
            groups: dict[tuple[Any, ...], list[int]] = {}
            seen: set[str] = set()
            for index, outcome in enumerate(outcomes):
                fence = outcome.fence
                doc = before.get(fence.run_id)
                if doc is None or fence.run_id in seen or not _holds(doc, fence):
                    continue
                seen.add(fence.run_id)
                group = (
                    outcome.kind,
                    outcome.result_json,
                    outcome.output_ref,
                    outcome.error,
                    outcome.run_at,
                    fence.attempt,
                    fence.worker_id,
                )
                groups.setdefault(group, []).append(index)
            applied: set[int] = set()
            for indexes in groups.values():
                first = outcomes[indexes[0]]
                changes, step = _outcome_changes(first, now)
                update: Document = {"$set": {**changes, "ackToken": token}}
                if step:
                    update["$inc"] = {"attempt": step}
                ids = [outcomes[i].fence.run_id for i in indexes]
                fenced = {**_fenced(first.fence), "_id": {"$in": ids}}
                matched = self._runs.update_many(fenced, update).matched_count
                if matched == len(ids):
                    applied.update(indexes)
                elif matched:  # some were lost between the read and the write
                    query = {"_id": {"$in": ids}, "ackToken": token}
                    hit = {d["_id"] for d in self._runs.find(query, {"_id": 1})}
                    applied.update(i for i in indexes if outcomes[i].fence.run_id in hit)
            written: list[Document | None] = []
            records: list[Document] = []
            for index, outcome in enumerate(outcomes):
                if index not in applied:
                    written.append(None)
                    continue
                doc = before[outcome.fence.run_id]
                changes, step = _outcome_changes(outcome, now)
                written.append({**doc, **changes, "attempt": doc["attempt"] + step})
                if outcome.kind != "succeeded":
                    record = _attempt_document(doc, outcome.kind, outcome.error, now)
                    if outcome.traceback is not None:  # absent, not null, when there is none
                        record["traceback"] = outcome.traceback
                    records.append(record)
            if records:
                self._attempts.insert_many(records, ordered=True)
            # As the write left them (the fence pins all but a cancel asked in between).
            after = [None if doc is None else run_from(doc) for doc in written]
            if any(run is not None and run.state == "queued" for run in after):
                self._wake_others()
        return [None if run is None else landed_of(run) for run in after]

    # --- cancel, retry, reclaim --------------------------------------------------------------

    def cancel(self, run_id: str) -> Run | None:
        with self._conn.translated(f"cancel run {run_id}"):
            if self._runs.find_one({"_id": run_id}, {"_id": 1}) is None:
                return None
            self._schema.prepare()
            now = self.now()
            queued = {
                "state": "canceled",
                "cancelRequested": True,
                "finishedAt": now,
                "updatedAt": now,
            }
            if (
                self._runs.update_one(
                    {"_id": run_id, "state": "queued"}, {"$set": queued}
                ).matched_count
                == 0
            ):
                self._runs.update_one(
                    {"_id": run_id, "state": "running"},
                    {"$set": {"cancelRequested": True, "updatedAt": now}},
                )
            doc = self._runs.find_one({"_id": run_id})
        return None if doc is None else run_from(doc)

    def retry(self, run_id: str, run_at: datetime | None = None) -> Run | None:
        with self._conn.translated(f"retry run {run_id}"):
            while True:
                doc = self._runs.find_one({"_id": run_id})
                if doc is None or doc.get("state") not in ("failed", "canceled"):
                    return None if doc is None else run_from(doc)
                self._schema.prepare()
                now = self.now()
                changes = {
                    "state": "queued",
                    "runAt": _ms(run_at) if run_at is not None else now,
                    "maxAttempts": doc["attempt"] + 1,
                    "cancelRequested": False,
                    "finishedAt": None,
                    "startedAt": None,
                    "updatedAt": now,
                }
                # Conditional on the state and attempt just read: a concurrent retry wins once.
                fence = {"_id": run_id, "state": doc["state"], "attempt": doc["attempt"]}
                if self._runs.update_one(fence, {"$set": changes}).matched_count == 1:
                    self._wake_others()
                    return run_from({**doc, **changes})

    def reclaim(self) -> list[Run]:
        with self._conn.translated("reclaim expired leases"):
            now = self.now()
            expired = list(
                self._runs.find({"state": "running", "leaseExpiresAt": {"$lt": now}}).sort(
                    [("leaseExpiresAt", 1), ("_id", 1)]
                )
            )
            if not expired:
                return []
            self._schema.prepare()
            changed: list[Run] = []
            records: list[Document] = []
            for doc in expired:
                error = f"the lease of attempt {doc['attempt']} expired (worker "
                error += f"{doc.get('claimedBy')} stopped heartbeating)"
                changes: Document = {"error": error, "updatedAt": now, **_UNCLAIMED}
                if doc["attempt"] >= doc["maxAttempts"]:
                    changes.update(state="failed", finishedAt=now)
                    del changes["startedAt"]  # a failed run keeps when its last attempt began
                else:
                    changes["state"] = "queued"
                fence = {
                    "_id": doc["_id"],
                    "state": "running",
                    "attempt": doc["attempt"],
                    "claimedBy": doc.get("claimedBy"),
                    "leaseExpiresAt": {"$lt": now},  # a heartbeat meanwhile wins
                }
                if self._runs.update_one(fence, {"$set": changes}).matched_count != 1:
                    continue
                changed.append(run_from({**doc, **changes}))
                records.append(_attempt_document(doc, "lease-expired", error, now))
            if records:
                self._attempts.insert_many(records, ordered=True)
            if any(run.state == "queued" for run in changed):
                self._wake_others()
        return changed

    # --- reads and upkeep --------------------------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        with self._conn.translated(f"read run {run_id}"):
            doc = self._runs.find_one({"_id": run_id})
        return None if doc is None else run_from(doc)

    def page(self, filters: RunFilter, after: tuple[datetime, str] | None, limit: int) -> list[Run]:
        query: Document = {}
        if filters.project_id is not None:
            query["projectId"] = filters.project_id
        if filters.state is not None:
            query["state"] = filters.state
        if filters.kind is not None:
            query["kind"] = filters.kind
        if filters.idempotency_key is not None:
            query["idempotencyKey"] = filters.idempotency_key
        if filters.correlation_id is not None:
            query["correlationId"] = filters.correlation_id
        if filters.ids is not None:
            query["_id"] = {"$in": list(filters.ids)}
        created: Document = {}
        if filters.since is not None:
            created["$gte"] = filters.since
        if filters.before is not None:
            created["$lt"] = filters.before
        if created:
            query["createdAt"] = created
        if after is not None:
            at, last_id = after
            beyond = "$lt" if filters.order == "newest" else "$gt"
            query["$or"] = [
                {"createdAt": {beyond: at}},
                {"createdAt": at, "_id": {beyond: last_id}},
            ]
        if limit <= 0:
            return []
        with self._conn.translated("list runs"):
            order = _NEWEST_FIRST if filters.order == "newest" else _OLDEST_FIRST
            docs = list(self._runs.find(query).sort(order).limit(limit))
        return [run_from(doc) for doc in docs]

    def flow_of(self, run_id: str) -> FlowCount | None:
        """The run's concurrency key and the runs of its (kind, key) running now."""
        with self._conn.translated(f"read the flow control of run {run_id}"):
            doc = self._runs.find_one({"_id": run_id}, {"kind": 1, "concurrencyKey": 1})
            if doc is None:
                return None
            key = doc.get("concurrencyKey")
            alive = {
                "kind": doc["kind"],
                "state": "running",
                "concurrencyKey": key,
                "leaseExpiresAt": {"$gt": self.now()},
            }
            running = len(list(self._runs.find(alive, {"_id": 1})))
            bucket = self._conn.workers.find_one({"_id": _bucket_id((doc["kind"], key))})
            if bucket is None:
                return FlowCount(key, running)
            return FlowCount(key, running, bucket["tokens"], aware(bucket["at"]))

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        with self._conn.translated(f"read the attempts of run {run_id}"):
            docs = list(
                self._attempts.find({"runId": run_id}).sort(
                    [("finishedAt", 1), ("attempt", 1), ("_id", 1)]
                )
            )
        return [_attempt_from(doc) for doc in docs]

    def prune(
        self, succeeded_before: datetime, failed_before: datetime, limit: int | None = None
    ) -> int:
        query = {
            "$or": [
                {"state": "succeeded", "finishedAt": {"$lt": succeeded_before}},
                {"state": {"$in": ["failed", "canceled"]}, "finishedAt": {"$lt": failed_before}},
            ]
        }
        with self._conn.translated("prune finished runs"):
            if limit is None:
                found = self._runs.find(query, {"_id": 1})
            else:  # one batch: the longest finished first, by the finishedAt index
                latest = max(succeeded_before, failed_before)
                found = (
                    self._runs.find({"finishedAt": {"$lt": latest}, **query}, {"_id": 1})
                    .sort("finishedAt", 1)
                    .limit(limit)
                )
            ids = [doc["_id"] for doc in found]
            gone = 0
            for start in range(0, len(ids), 1000):
                chunk = ids[start : start + 1000]
                # Only runs still finished (a retry meanwhile keeps its run).
                gone += self._runs.delete_many({"_id": {"$in": chunk}, **query}).deleted_count
                self._attempts.delete_many({"runId": {"$in": chunk}})
        return gone

    def wait_for_work(self, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 0.0)
        location = self._conn.location
        key = (location.url, location.database, location.runs, location.workers)
        with self._conn.translated("wait for new runs"):
            watch = watch_for(key, self._conn.workers, WAKE_ID, self._waker)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                if watch.watching:  # a change stream wakes us: no reads meanwhile
                    if self._waker.wait(left):
                        self._waker.clear()
                    return
                if self._seen is None:
                    self._seen = self._signal()
                if self._waker.wait(min(self._poll_every, left)):
                    self._waker.clear()
                    return
                signal = self._signal()
                if signal != self._seen:
                    self._seen = signal
                    self._poll_every = POLL
                    return
                # Nothing moved: look less often, never so seldom that new work waits long.
                self._poll_every = min(self._poll_every * 1.5, POLL_MAX)

    def _signal(self) -> Any:
        """The wake signal's count: moved by every enqueue, retry and requeue, anywhere."""
        doc = self._conn.workers.find_one({"_id": WAKE_ID}, {"seq": 1})
        return None if doc is None else doc.get("seq")

    def _wake_others(self) -> None:
        """Move the wake signal (other processes) and wake waiters in this process."""
        self._conn.workers.update_one({"_id": WAKE_ID}, {"$inc": {"seq": 1}}, upsert=True)
        self._waker.set()

    def worker_seen(self, info: WorkerInfo) -> None:
        self._schema.prepare()
        doc = {
            "host": info.host,
            "pid": info.pid,
            "startedAt": info.started_at,
            "lastSeen": info.last_seen,
            "concurrency": info.concurrency,
            "kinds": list(info.kinds),
            "state": info.state,
        }
        with self._conn.translated(f"record worker {info.id}"):
            self._conn.workers.update_one({"_id": info.id}, {"$set": doc}, upsert=True)

    def stats(self, since: datetime, cap: int = STATS_CAP) -> RunStats:
        now = self.now()
        kind_only = {"kind": 1, "_id": 0}
        with self._conn.translated("count the runs"):
            active = {
                state: [
                    doc["kind"]
                    for doc in self._runs.find({"state": state}, kind_only).limit(cap + 1)
                ]
                for state in ACTIVE
            }
            done = self._runs.find(
                {"finishedAt": {"$gte": since}}, {"state": 1, "kind": 1, "_id": 0}
            ).limit(cap + 1)
            finished = [(doc["state"], doc["kind"]) for doc in done]
            due = {"state": "queued", "runAt": {"$lte": now}}
            first = self._runs.find(due, {"runAt": 1}).sort(_OLDEST_FIRST).limit(1)
            oldest = [aware(doc["runAt"]) for doc in first]
        return tally(now, since, active, finished, cap, oldest[0] if oldest else None)

    def workers(self) -> list[WorkerInfo]:
        with self._conn.translated("list the workers"):
            # Not the wake signal, nor the flow-control locks: the workers' own documents.
            everyone = {"_id": {"$ne": WAKE_ID}, "lastSeen": {"$exists": True}}
            docs = list(self._conn.workers.find(everyone).sort([("startedAt", 1), ("_id", 1)]))
        return [
            WorkerInfo(
                id=str(doc["_id"]),
                host=str(doc.get("host") or ""),
                pid=int(doc.get("pid") or 0),
                started_at=aware(doc["startedAt"]),
                last_seen=aware(doc["lastSeen"]),
                concurrency=int(doc.get("concurrency") or 0),
                kinds=tuple(doc.get("kinds") or ()),
                state=doc.get("state") or "running",
            )
            for doc in docs
        ]

    def start(self, run: NewRun, worker_id: str, lease: float) -> Run:
        if run.idempotency_key is not None:
            raise UsageError("a run started at once takes no idempotency key")
        self._schema.prepare()
        with self._conn.translated(f"start run {run.id}"):
            now = self.now()
            doc = _new_document(run, now)
            doc.update(
                state="running",
                attempt=1,
                claimedBy=worker_id,
                claimedAt=now,
                startedAt=now,
                leaseExpiresAt=_ms(now + timedelta(seconds=lease)),
            )
            self._runs.insert_one(doc)
        return run_from(doc)


# --- documents ---------------------------------------------------------------------------------


def _debounce_id(kind: str, key: str | None) -> str:
    """The document of a (kind, key)'s debounce lock, in the workers collection."""
    return "~debounce:" + json.dumps([kind, key])


def _bucket_id(group: Group) -> str:
    """The document of a (kind, key)'s rate bucket, in the workers collection."""
    return "~rate:" + json.dumps(list(group))


def _ms(moment: datetime) -> datetime:
    """A time as BSON keeps it: aware UTC, to the millisecond."""
    moment = aware(moment)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _new_document(new: NewRun, now: datetime) -> Document:
    doc: Document = {
        "_id": new.id,
        "kind": new.kind,
        "input": json.loads(new.input_json),
        "state": "queued",
        "attempt": 0,
        "maxAttempts": new.max_attempts,
        "priority": new.priority,
        "runAt": _ms(new.run_at) if new.run_at is not None else now,
        "createdAt": now,
        "updatedAt": now,
        "projectId": new.project_id,
        "correlationId": new.correlation_id,
        "result": None,
        "outputRef": None,
        "error": None,
        "claimedBy": None,
        "claimedAt": None,
        "leaseExpiresAt": None,
        "startedAt": None,
        "finishedAt": None,
        "progress": None,
        "progressMessage": None,
        "cancelRequested": False,
    }
    if new.trace_context is not None:  # absent, not null: nothing stored without tracing
        doc["traceContext"] = new.trace_context
    if new.idempotency_key is not None:  # absent, not null: outside the unique partial index
        doc["idempotencyKey"] = new.idempotency_key
    if new.concurrency_key is not None:
        doc["concurrencyKey"] = new.concurrency_key
    return doc


def _time(value: Any) -> datetime | None:
    return aware(value) if isinstance(value, datetime) else None


_JSON_SCALARS = (str, int, float, bool, type(None))


def _json_value(value: Any) -> Any:
    """A stored input or result as JSON values; one that holds BSON values JSON has none for
    (an ObjectId, bytes, a date: written around runce) is :class:`Unreadable`, so that it
    fails its own run instead of every list or claim that reads it."""
    if type(value) in _JSON_SCALARS:  # the usual small input: no walk
        return value
    found = _not_json(value, 0)
    return value if found is None else Unreadable(f"it holds {found}, which is not JSON")


def _not_json(value: Any, depth: int) -> str | None:
    if isinstance(value, _JSON_SCALARS):
        return None
    if depth < 100 and isinstance(value, dict):
        for item in value.values():
            found = _not_json(item, depth + 1)
            if found is not None:
                return found
        return None
    if depth < 100 and isinstance(value, list):
        for item in value:
            found = _not_json(item, depth + 1)
            if found is not None:
                return found
        return None
    return f"a value of type {type(value).__name__}" if depth < 100 else "JSON nested too deeply"


def run_from(doc: Document) -> Run:
    created = aware(doc["createdAt"])
    result = doc.get("result")
    return Run(
        id=str(doc["_id"]),
        kind=doc["kind"],
        input=_json_value(doc.get("input")),
        state=doc["state"],
        attempt=int(doc.get("attempt") or 0),
        max_attempts=int(doc["maxAttempts"]),
        priority=int(doc.get("priority") or 0),
        run_at=_time(doc.get("runAt")) or created,
        created_at=created,
        updated_at=_time(doc.get("updatedAt")) or created,
        project_id=doc.get("projectId"),
        idempotency_key=doc.get("idempotencyKey"),
        correlation_id=doc.get("correlationId"),
        result=None if result is None else _json_value(result),
        output_ref=doc.get("outputRef"),
        error=doc.get("error"),
        claimed_by=doc.get("claimedBy"),
        claimed_at=_time(doc.get("claimedAt")),
        lease_expires_at=_time(doc.get("leaseExpiresAt")),
        started_at=_time(doc.get("startedAt")),
        finished_at=_time(doc.get("finishedAt")),
        progress=doc.get("progress"),
        progress_message=doc.get("progressMessage"),
        cancel_requested=bool(doc.get("cancelRequested")),
        trace_context=_trace_context(doc.get("traceContext")),
    )


def _trace_context(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict):
        return None
    return {str(k): str(v) for k, v in value.items()}


def _holds(doc: Document, fence: Fence) -> bool:
    return (
        doc.get("state") == "running"
        and doc.get("attempt") == fence.attempt
        and doc.get("claimedBy") == fence.worker_id
    )


def _fenced(fence: Fence) -> Document:
    return {
        "_id": fence.run_id,
        "state": "running",
        "attempt": fence.attempt,
        "claimedBy": fence.worker_id,
    }


def _outcome_changes(outcome: Outcome, now: datetime) -> tuple[Document, int]:
    """``$set`` for an outcome, and how it changes ``attempt``."""
    if outcome.kind == "succeeded":
        result = None if outcome.result_json is None else json.loads(outcome.result_json)
        changes: Document = {
            "state": "succeeded",
            "result": result,
            "outputRef": outcome.output_ref,
            "finishedAt": now,
            "leaseExpiresAt": None,
            "updatedAt": now,
        }
        return changes, 0
    if outcome.kind in ("failed", "canceled"):
        changes = {
            "state": outcome.kind,
            "error": outcome.error,
            "finishedAt": now,
            "leaseExpiresAt": None,
            "updatedAt": now,
        }
        return changes, 0
    if outcome.kind == "retry":
        run_at = _ms(outcome.run_at) if outcome.run_at is not None else now
        changes = {"state": "queued", "error": outcome.error, "runAt": run_at, "updatedAt": now}
        return {**changes, **_UNCLAIMED}, 0
    # released: handed back without spending the attempt
    return {"state": "queued", "updatedAt": now, **_UNCLAIMED}, -1


def _attempt_document(run: Document, outcome: str, error: str | None, now: datetime) -> Document:
    return {
        "runId": run["_id"],
        "attempt": run["attempt"],
        "workerId": run.get("claimedBy") or "",
        "startedAt": run.get("startedAt"),
        "finishedAt": now,
        "outcome": outcome,
        "error": error,
    }


def _attempt_from(doc: Document) -> AttemptRecord:
    return AttemptRecord(
        run_id=str(doc["runId"]),
        attempt=int(doc["attempt"]),
        worker_id=str(doc.get("workerId") or ""),
        started_at=_time(doc.get("startedAt")),
        finished_at=aware(doc["finishedAt"]),
        outcome=doc["outcome"],
        error=doc.get("error"),
        traceback=doc.get("traceback"),
    )


def _callers_session(connection: Any) -> ClientSession | None:
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


if TYPE_CHECKING:
    # mypy checks here that the queue fulfils the RunQueue protocol.
    def _fulfils(queue: MongoRunQueue) -> RunQueue:
        return queue
