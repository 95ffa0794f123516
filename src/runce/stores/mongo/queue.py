"""The MongoDB run queue (docs/runs.md): ``runce.runs``, ``runce.run_attempts``,
``runce.workers``.

A run is one document, ``_id`` = the run id, with camelCase fields and BSON dates.

* Writes are ``update_one`` with the whole filter, then reads by ``_id``, not
  ``find_one_and_update``: the same atomicity, and point lookups on every server.
* Every write about a claim is fenced by ``{_id, attempt, claimedBy, state: "running"}``:
  a worker that lost its claim matches nothing and is told so.
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

Each step has a module of its own: ``enqueue`` (idempotency keys, debounce), ``claim``
(due runs in claim order, taken atomically per document), ``flow`` (claims under
concurrency limits and rates), ``outcomes`` (fenced writes of what attempts came to),
``run_documents`` (runs as documents and back) and ``wake`` (the wake signal).
"""

from __future__ import annotations

import collections
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pymongo.client_session import ClientSession
from pymongo.collection import Collection

from runce.domain.runs import (
    COUNT_WINDOW,
    STATS_CAP,
    STOPPED_SHOWN,
    AttemptRecord,
    Beat,
    ClaimRequest,
    Enqueued,
    Fence,
    FlowCount,
    Landed,
    NewRun,
    Outcome,
    Run,
    RunCounts,
    RunFilter,
    RunStats,
    WorkerInfo,
    check_outcomes,
    landed_of,
)
from runce.errors import UnsupportedFeature, UsageError
from runce.stores.mongo.claim import DueRuns, claim_update, take
from runce.stores.mongo.connection import Connection, Document
from runce.stores.mongo.documents import aware
from runce.stores.mongo.enqueue import (
    callers_runs,
    callers_session,
    debounce_enqueue,
    insert_runs,
)
from runce.stores.mongo.flow import LimitedClaims, bucket_id
from runce.stores.mongo.outcomes import record_outcomes
from runce.stores.mongo.run_documents import (
    UNCLAIMED,
    attempt_document,
    attempt_from,
    fenced,
    ms,
    new_document,
    run_from,
    server_now,
)
from runce.stores.mongo.schema import Schema
from runce.stores.mongo.wake import WAKE_ID, wake_others, wake_signal, waker, watch_for
from runce.stores.queue import RunQueue, counted, split_claim, stats_of

# Without change streams (a standalone server), wait_for_work reads the wake signal every
# POLL seconds after it moved, backing off to every POLL_MAX while it stays put.
POLL = 0.025
POLL_MAX = 0.5
_NEWEST_FIRST = [("createdAt", -1), ("_id", -1)]
_OLDEST_FIRST = [("createdAt", 1), ("_id", 1)]
# The filters of a page of runs that match a field as they are: the filter's name -> field.
_PAGE_FIELDS = {
    "project_id": "projectId",
    "state": "state",
    "kind": "kind",
    "idempotency_key": "idempotencyKey",
    "correlation_id": "correlationId",
}


class MongoRunQueue:
    # wait_for_work returns within a moment of an enqueue anywhere (the wake signal): an
    # idle worker needs to look for due runs less often (only for those due on their own).
    wakes_for_new_work = True

    def __init__(self, conn: Connection, schema: Schema) -> None:
        self._conn = conn
        self._schema = schema
        self._runs = conn.runs
        self._attempts = conn.run_attempts
        self._waker = waker(conn)
        self._seen: Any = None  # the wake signal as wait_for_work last saw it
        self._due = DueRuns(conn.runs)
        self._limited = LimitedClaims(conn)
        self._poll_every = POLL  # seconds between reads of the signal, when it must poll
        # The kinds of the last exchange's claim, when it took no run: the next one looks
        # before it claims.
        self._found_none: tuple[tuple[str, ...] | None] | None = None

    def now(self) -> datetime:
        return server_now(self._conn)

    def run_counts(self, since: datetime | None = None, cap: int = STATS_CAP) -> RunCounts:
        # Bounded reads (RunCounts): the kinds with queued runs, then per kind its queued
        # runs counted up to the cap and its oldest due one, both on the (state, kind,
        # runAt) index of queued runs; the running runs and those finished since ``since``
        # read up to the cap in all. Never a $group over the collection.
        now = self.now()
        start = now - timedelta(seconds=COUNT_WINDOW) if since is None else since
        queued_of = {"state": "queued"}
        with self._conn.translated("count the runs"):
            kinds = sorted(str(kind) for kind in self._runs.distinct("kind", queued_of))
            queued: dict[str, int] = {}
            oldest: dict[str, datetime] = {}
            for kind in kinds:
                of_kind = {"state": "queued", "kind": kind}
                queued[kind] = self._runs.count_documents(of_kind, limit=cap + 1)
                due = {**of_kind, "runAt": {"$lte": now}}
                for doc in self._runs.find(due, {"runAt": 1}).sort("runAt", 1).limit(1):
                    oldest[kind] = aware(doc["runAt"])
            running = collections.Counter(
                str(doc["kind"])
                for doc in self._runs.find({"state": "running"}, {"kind": 1}).limit(cap + 1)
            )
            done = self._runs.find({"finishedAt": {"$gte": start}}, {"state": 1, "kind": 1})
            finished = collections.Counter(
                (str(doc["kind"]), str(doc["state"])) for doc in done.limit(cap + 1)
            )
        return counted(now, start, queued, running, finished, oldest, cap)

    # --- enqueue ---------------------------------------------------------------------------------

    def enqueue(self, runs: Sequence[NewRun], connection: Any = None) -> list[Enqueued]:
        session = callers_session(connection)
        if not runs:
            return []
        self._schema.prepare()  # outside the caller's transaction: indexes cannot be made there
        what = f"enqueue run {runs[0].id}" if len(runs) == 1 else f"enqueue {len(runs)} runs"
        with self._conn.translated(what):
            collection = self._runs if session is None else callers_runs(self._conn, session)
            if any(new.debounce is not None for new in runs):
                if session is not None:
                    raise UnsupportedFeature(
                        "a debounced job cannot be enqueued in your MongoDB transaction "
                        "(connection=): enqueue it without connection="
                    )
                results = debounce_enqueue(
                    self._conn, list(runs), lambda batch: self._enqueue(self._runs, batch, None)
                )
            else:
                results = self._enqueue(collection, list(runs), session)
            if any(r.created for r in results):
                self._wake_others()
        return results

    def _enqueue(
        self, collection: Collection[Document], runs: list[NewRun], session: ClientSession | None
    ) -> list[Enqueued]:
        return insert_runs(collection, runs, session, self.now())

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
        token = uuid.uuid4().hex
        update = claim_update(worker_id, now, lease, token)
        signal = self._signal()
        taken: list[Document] = []
        looked = False
        while len(taken) < limit:
            wanted = limit - len(taken)
            batch, looked = self._due.next_ids(kinds, now, signal, wanted, looked)
            if not batch:
                break
            still = {"_id": {"$in": batch}, "state": "queued", "runAt": {"$lte": now}}
            taken += take(self._runs, batch, still, update, token)
        return [run_from(doc) for doc in taken]

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
            taken = self._limited.claim(claim, limited, self._signal())
            rest = claim.limit - len(taken)
            if unlimited and rest > 0:
                taken += self._claim(claim.worker_id, unlimited, rest, claim.lease)
        return taken

    def heartbeat(self, fences: Sequence[Fence], lease: float) -> dict[str, Beat]:
        if not fences:
            return {}
        self._schema.prepare()
        beats: dict[str, Beat] = {}
        with self._conn.translated(f"renew the leases of {len(fences)} runs"):
            until = ms(self.now() + timedelta(seconds=lease))
            held = []
            for fence in fences:
                result = self._runs.update_one(fenced(fence), {"$set": {"leaseExpiresAt": until}})
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
            result = self._runs.update_one(fenced(fence), {"$set": changes})
        return result.matched_count == 1

    def complete(self, outcomes: Sequence[Outcome]) -> list[Landed | None]:
        check_outcomes(outcomes)
        if not outcomes:
            return []
        self._schema.prepare()
        what = f"record the outcomes of {len(outcomes)} runs"
        with self._conn.translated(what):
            after = record_outcomes(self._runs, self._attempts, outcomes, self.now())
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
                    "runAt": ms(run_at) if run_at is not None else now,
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
                changes: Document = {"error": error, "updatedAt": now, **UNCLAIMED}
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
                records.append(attempt_document(doc, "lease-expired", error, now))
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
        query = _page_query(filters, after)
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
            bucket = self._conn.workers.find_one({"_id": bucket_id((doc["kind"], key))})
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
        return [attempt_from(doc) for doc in docs]

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
        return wake_signal(self._conn)

    def _wake_others(self) -> None:
        wake_others(self._conn, self._waker)

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
        return stats_of(self.run_counts(since, cap))

    def workers(self, stopped: int = STOPPED_SHOWN) -> list[WorkerInfo]:
        # The workers' own documents only (never the wake signal nor the flow-control locks,
        # which have no state), from the index on (state, lastSeen).
        workers = self._conn.workers
        with self._conn.translated("list the workers"):
            docs = list(workers.find({"state": {"$in": ["running", "stopping"]}}))
            if stopped > 0:
                ended = workers.find({"state": "stopped"}).sort("lastSeen", -1).limit(stopped)
                docs.extend(ended)
        docs.sort(key=lambda doc: (aware(doc["startedAt"]), str(doc["_id"])))
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

    def prune_workers(self, seen_before: datetime) -> int:
        # Only documents with a state: the wake signal and the flow-control locks have none.
        doomed = {"state": {"$in": ["running", "stopping", "stopped"]}}
        with self._conn.translated("prune the workers not heard from"):
            found = self._conn.workers.delete_many({**doomed, "lastSeen": {"$lt": seen_before}})
        return found.deleted_count

    def start(self, run: NewRun, worker_id: str, lease: float) -> Run:
        if run.idempotency_key is not None:
            raise UsageError("a run started at once takes no idempotency key")
        self._schema.prepare()
        with self._conn.translated(f"start run {run.id}"):
            now = self.now()
            doc = new_document(run, now)
            doc.update(
                state="running",
                attempt=1,
                claimedBy=worker_id,
                claimedAt=now,
                startedAt=now,
                leaseExpiresAt=ms(now + timedelta(seconds=lease)),
            )
            self._runs.insert_one(doc)
        return run_from(doc)


def _page_query(filters: RunFilter, after: tuple[datetime, str] | None) -> Document:
    """The filter of a page of runs: ``filters``, and past ``after`` (its last run's
    creation time and id) in the page's order."""
    query = _filtered(filters)
    if after is not None:
        at, last_id = after
        beyond = "$lt" if filters.order == "newest" else "$gt"
        query["$or"] = [
            {"createdAt": {beyond: at}},
            {"createdAt": at, "_id": {beyond: last_id}},
        ]
    return query


def _filtered(filters: RunFilter) -> Document:
    query: Document = {
        field: getattr(filters, name)
        for name, field in _PAGE_FIELDS.items()
        if getattr(filters, name) is not None
    }
    if filters.ids is not None:
        query["_id"] = {"$in": list(filters.ids)}
    if filters.project_ids is not None:  # one index range per project, merged by the server
        wanted = [p for p in filters.project_ids if filters.project_id in (None, p)]
        query["projectId"] = {"$in": wanted}
    bounds = (("$gte", filters.since), ("$lt", filters.before))
    created = {bound: moment for bound, moment in bounds if moment is not None}
    if created:
        query["createdAt"] = created
    return query


if TYPE_CHECKING:
    # mypy checks here that the queue fulfils the RunQueue protocol.
    def _fulfils(queue: MongoRunQueue) -> RunQueue:
        return queue
