"""Flow control on MongoDB: claims of kinds with a concurrency limit or a rate.

Such a claim holds the flow lock (one document in the workers collection for every limited
kind, so a claim takes one write to lock and one to unlock whatever its kinds), counts the
runs of each (kind, key) running now, weighs the due runs against the limits and the rate
buckets (a document per (kind, key) in the workers collection), spends the buckets and
takes the runs picked. The same kind of lock document, one per (kind, key), serialises
debounced enqueues.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from runce.domain.runs import ClaimRequest, KindLimit, Run, limited_want
from runce.stores.mongo.claim import CLAIM_ORDER, claim_update, take
from runce.stores.mongo.connection import Connection
from runce.stores.mongo.documents import aware
from runce.stores.mongo.run_documents import ms, run_from, server_now
from runce.stores.queue import (
    Bucket,
    Candidate,
    Group,
    pick_limited,
    rate_room,
    rated_kinds,
    spent_buckets,
    started_groups,
)

# Due runs of the limited kinds a claim weighs at most (fairness between keys holds among
# them), how long a claimer may hold the flow lock before another may take it, and how
# long a claimer waits for it at most (less with a short lease: a quarter of it).
FLOW_CANDIDATES = 1000
FLOW_CANDIDATES_FOR = 3.0  # seconds a look is trusted (sorting the due runs is the cost)
FLOW_LOCK_FOR = timedelta(seconds=10)
FLOW_LOCK_WAIT = 30.0
FLOW_LOCK_ID = "~flow"  # the lock's document in the workers collection


def debounce_id(kind: str, key: str | None) -> str:
    """The document of a (kind, key)'s debounce lock, in the workers collection."""
    return "~debounce:" + json.dumps([kind, key])


def bucket_id(group: Group) -> str:
    """The document of a (kind, key)'s rate bucket, in the workers collection."""
    return "~rate:" + json.dumps(list(group))


def take_flow_lock(conn: Connection, lock_id: str, token: str, deadline: float) -> bool:
    """Take the lock document ``lock_id`` for ``token``, waiting until ``deadline``
    (monotonic) at most; False when it stayed held. A holder that died frees it when its
    ``until`` passes (:data:`FLOW_LOCK_FOR`)."""
    pause = 0.001
    while True:
        now = server_now(conn)
        free = {"_id": lock_id, "$or": [{"until": None}, {"until": {"$lte": now}}]}
        change = {"$set": {"holder": token, "until": ms(now + FLOW_LOCK_FOR)}}
        try:
            conn.workers.update_one(free, change, upsert=True)
            return True
        except DuplicateKeyError:  # held: the filter missed, and the upsert met the _id
            pass
        if time.monotonic() > deadline:
            return False  # the claim takes none of these kinds this time
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


@contextlib.contextmanager
def flow_lock(conn: Connection, wait: float) -> Iterator[bool]:
    """Hold the flow-control lock, or yield False when it stays held for ``wait`` seconds."""
    token = uuid.uuid4().hex
    held = take_flow_lock(conn, FLOW_LOCK_ID, token, time.monotonic() + wait)
    try:
        yield held
    finally:
        if held:
            conn.workers.update_one(
                {"_id": FLOW_LOCK_ID, "holder": token},
                {"$set": {"holder": None, "until": None}},
            )


@dataclass
class _FlowCandidates:
    rows: list[Candidate]  # id, kind, concurrency key: in claim order
    signal: Any
    read_at: float


class LimitedClaims:
    """The claims of limited kinds made through one store object, with the due runs it
    read for them."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._runs = conn.runs
        self._flow_candidates: dict[tuple[str, ...], _FlowCandidates] = {}

    def claim(self, claim: ClaimRequest, limited: dict[str, int], signal: Any) -> list[Run]:
        """The runs of ``limited`` kinds ``claim`` may start now; none when the flow lock
        stays held a quarter of its lease."""
        cached = self._due_candidates(sorted(limited), signal)
        # Waiting long for the locks would hand the worker runs it no longer trusts to
        # start (their lease counted from its request): claim none this time instead.
        wait = min(FLOW_LOCK_WAIT, claim.lease / 4)
        if not cached.rows:  # with no limited run due, there is no lock to take
            return []
        with flow_lock(self._conn, wait) as held:
            return self._claim_limited(claim, limited, cached) if held else []

    def _due_candidates(self, kinds: list[str], signal: Any) -> _FlowCandidates:
        """The due runs of limited ``kinds``, read at most every 3 seconds while the wake
        signal stays put, as on the plain path (outside the flow locks: a run another claimer
        took since is skipped by the update, which wants it still queued)."""
        now = server_now(self._conn)
        group = tuple(kinds)
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
                for doc in found.sort(CLAIM_ORDER).limit(FLOW_CANDIDATES)
            ]
            cached = self._flow_candidates[group] = _FlowCandidates(rows, signal, time.monotonic())
        return cached

    def _claim_limited(
        self, claim: ClaimRequest, limited: dict[str, int], cached: _FlowCandidates
    ) -> list[Run]:
        now = server_now(self._conn)
        running = self._running(sorted(limited), now)
        rated = rated_kinds(claim)
        room, buckets = None, {}
        if rated:
            buckets = self._buckets(rated, cached.rows)
            room = rate_room(rated, buckets, now)
        ids = pick_limited(cached.rows, running, limited, limited_want(claim), room)
        if not ids:
            return []
        if rated:
            self._spend(rated, buckets, started_groups(cached.rows, ids), now)
        picked = set(ids)
        cached.rows = [row for row in cached.rows if row[0] not in picked]
        token = uuid.uuid4().hex
        update = claim_update(claim.worker_id, now, claim.lease, token)
        still = {"_id": {"$in": ids}, "state": "queued"}
        return [run_from(doc) for doc in take(self._runs, ids, still, update, token)]

    def _running(self, kinds: list[str], now: datetime) -> dict[Group, int]:
        """How many runs of each (kind, key) run now, their leases alive."""
        running: dict[Group, int] = {}
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
        return running

    def _buckets(self, rated: dict[str, KindLimit], rows: list[Candidate]) -> dict[Group, Bucket]:
        """The rate buckets of the (kind, key)s among ``rows`` whose kind has a rate."""
        groups = {(kind, key) for _, kind, key in rows if kind in rated}
        if not groups:
            return {}
        ids = {bucket_id(group): group for group in groups}
        found = self._conn.workers.find({"_id": {"$in": list(ids)}})
        return {ids[doc["_id"]]: Bucket(doc["tokens"], aware(doc["at"])) for doc in found}

    def _spend(
        self,
        rated: dict[str, KindLimit],
        buckets: dict[Group, Bucket],
        started: dict[Group, int],
        now: datetime,
    ) -> None:
        """Take from the rate buckets what the runs just picked spend."""
        for group, bucket in spent_buckets(rated, buckets, started, now).items():
            self._conn.workers.update_one(
                {"_id": bucket_id(group)},
                {"$set": {"tokens": bucket.tokens, "at": bucket.at}},
                upsert=True,
            )
