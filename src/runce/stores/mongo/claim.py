"""Claiming due runs on MongoDB.

A claim reads the due runs' ids in claim order (``{state: "queued", runAt <= now}`` sorted
by priority desc, runAt, _id: the claim-path index), then takes them with one conditional
``update_many`` that stamps a fresh claim token: atomic per document, so no run is handed
to two claimers, and the token tells which of them this claim took. The ids read are kept
for the next claims of the same store object until the wake signal moves or a second
passes, so a busy worker does not sort the whole backlog for every few runs.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import OperationFailure

from runce.stores.mongo.connection import Document
from runce.stores.mongo.run_documents import ms

CANDIDATES = 1000  # due run ids read per look, claimed in order by the claims that follow
CANDIDATES_FOR = 1.0  # seconds a look is trusted while the wake signal stays put
CLAIM_ORDER = [("priority", -1), ("runAt", 1), ("_id", 1)]

TYPE_MISMATCH = 14  # the server's code for an update it cannot apply to a field's type
_ZERO: Document = {"$set": {"attempt": 0}}

Kinds = tuple[str, ...] | None  # the kinds a claim asks for, sorted; None for every kind


def claim_update(worker_id: str, now: datetime, lease: float, token: str) -> Document:
    """The update that hands a queued run to ``worker_id``: a new attempt, its lease, and
    the claim's ``token``."""
    changes = {
        "state": "running",
        "claimedBy": worker_id,
        "claimedAt": now,
        "startedAt": now,
        "leaseExpiresAt": ms(now + timedelta(seconds=lease)),
        "updatedAt": now,
        "progress": None,  # a new attempt starts over
        "progressMessage": None,
    }
    return {"$set": {**changes, "claimToken": token}, "$inc": {"attempt": 1}}


def take(
    runs: Collection[Document], ids: list[Any], still: Document, update: Document, token: str
) -> list[Document]:
    """Claim those of ``ids`` that ``still`` matches; the runs this claim took, in the
    order of ``ids``. Of two claimers, one matches a run and the other moves on."""
    try:
        matched = runs.update_many(still, update).matched_count
    except OperationFailure as exc:
        if exc.code != TYPE_MISMATCH:
            raise
        # A run whose attempt was written around runce (not a number) reads as attempt 0;
        # set it so, or the server refuses to count it up and no claim gets past it.
        runs.update_many({"_id": {"$in": ids}, "attempt": {"$not": {"$type": "number"}}}, _ZERO)
        matched = runs.update_many(still, update).matched_count
    if not matched:
        return []
    got = {d["_id"]: d for d in runs.find({"_id": {"$in": ids}, "claimToken": token})}
    return [got[run_id] for run_id in ids if run_id in got]


@dataclass
class _Candidates:
    ids: collections.deque[Any]
    signal: Any
    read_at: float


class DueRuns:
    """The due runs' ids in claim order, read per set of kinds and kept for the claims
    that follow until something is enqueued or requeued anywhere (the wake signal moves)
    or they age."""

    def __init__(self, runs: Collection[Document]) -> None:
        self._runs = runs
        self._candidates: dict[Kinds, _Candidates] = {}

    def next_ids(
        self,
        kinds: Sequence[str] | None,
        now: datetime,
        signal: Any,
        wanted: int,
        looked: bool,
    ) -> tuple[list[Any], bool]:
        """Up to ``wanted`` ids not handed out yet, and whether a fresh look was made: once
        it has, a look used up means there are no more (an empty list)."""
        key = tuple(sorted(kinds)) if kinds else None
        candidates = self._candidates.get(key)
        stale = candidates is None or _stale(candidates, signal)
        if candidates is None or stale or not candidates.ids:
            if looked and not stale:
                return [], looked  # a fresh look found no more
            candidates = self._look_for_candidates(key, kinds, now, signal)
            looked = True
        wanted = min(wanted, len(candidates.ids))
        return [candidates.ids.popleft() for _ in range(wanted)], looked

    def _look_for_candidates(
        self, key: Kinds, kinds: Sequence[str] | None, now: datetime, signal: Any
    ) -> _Candidates:
        """The next due runs in claim order, ids only."""
        query: Document = {"state": "queued", "runAt": {"$lte": now}}
        if kinds:
            query["kind"] = {"$in": list(kinds)}
        found = self._runs.find(query, {"_id": 1}).sort(CLAIM_ORDER).limit(CANDIDATES)
        candidates = _Candidates(
            collections.deque(doc["_id"] for doc in found), signal, time.monotonic()
        )
        self._candidates[key] = candidates
        return candidates


def _stale(candidates: _Candidates, signal: Any) -> bool:
    return candidates.signal != signal or time.monotonic() - candidates.read_at > CANDIDATES_FOR
