"""Recording outcomes on MongoDB: each run's fence checked as read, then one fenced
``update_many`` per group of outcomes that write the same, and the attempts that did not
succeed inserted in one write. A run whose fence no longer holds gets nothing written.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo.collection import Collection

from runce.domain.runs import Outcome, Run
from runce.stores.mongo.connection import Document
from runce.stores.mongo.run_documents import (
    UNCLAIMED,
    attempt_document,
    fenced,
    holds,
    ms,
    run_from,
)

Group = tuple[Any, ...]  # what an outcome writes: outcomes alike write with one update


def record_outcomes(
    runs: Collection[Document],
    attempts: Collection[Document],
    outcomes: Sequence[Outcome],
    now: datetime,
) -> list[Run | None]:
    """Write each outcome whose fence holds; the runs as the writes left them, None for an
    outcome whose fence no longer held (or a second outcome of one run)."""
    ids = list({outcome.fence.run_id for outcome in outcomes})
    before = {doc["_id"]: doc for doc in runs.find({"_id": {"$in": ids}})}
    token = uuid.uuid4().hex
    applied: set[int] = set()
    for indexes in _groups(outcomes, before).values():
        applied.update(_write_group(runs, outcomes, indexes, now, token))
    written, records = _written(outcomes, applied, before, now)
    if records:
        attempts.insert_many(records, ordered=True)
    # As the write left them (the fence pins all but a cancel asked in between).
    return [None if doc is None else run_from(doc) for doc in written]


def _groups(outcomes: Sequence[Outcome], before: dict[Any, Document]) -> dict[Group, list[int]]:
    """The positions of the outcomes whose fence holds as read (the first of each run),
    grouped by what they write."""
    groups: dict[Group, list[int]] = {}
    seen: set[str] = set()
    for index, outcome in enumerate(outcomes):
        fence = outcome.fence
        doc = before.get(fence.run_id)
        if doc is None or fence.run_id in seen or not holds(doc, fence):
            continue
        seen.add(fence.run_id)
        groups.setdefault(_group(outcome), []).append(index)
    return groups


def _group(outcome: Outcome) -> Group:
    fence = outcome.fence
    return (
        outcome.kind,
        outcome.result_json,
        outcome.output_ref,
        outcome.error,
        outcome.run_at,
        fence.attempt,
        fence.worker_id,
    )


def _write_group(
    runs: Collection[Document],
    outcomes: Sequence[Outcome],
    indexes: list[int],
    now: datetime,
    token: str,
) -> list[int]:
    """One fenced update for outcomes alike; the positions of those it wrote."""
    first = outcomes[indexes[0]]
    changes, step = outcome_changes(first, now)
    update: Document = {"$set": {**changes, "ackToken": token}}
    if step:
        update["$inc"] = {"attempt": step}
    ids = [outcomes[i].fence.run_id for i in indexes]
    matched = runs.update_many({**fenced(first.fence), "_id": {"$in": ids}}, update).matched_count
    if matched == len(ids):
        return indexes
    if not matched:
        return []
    # Some were lost between the read and the write: the token tells which were written.
    query = {"_id": {"$in": ids}, "ackToken": token}
    hit = {d["_id"] for d in runs.find(query, {"_id": 1})}
    return [i for i in indexes if outcomes[i].fence.run_id in hit]


def _written(
    outcomes: Sequence[Outcome], applied: set[int], before: dict[Any, Document], now: datetime
) -> tuple[list[Document | None], list[Document]]:
    """Each run as written (None where nothing was), and the attempts to record."""
    written: list[Document | None] = []
    records: list[Document] = []
    for index, outcome in enumerate(outcomes):
        if index not in applied:
            written.append(None)
            continue
        doc = before[outcome.fence.run_id]
        changes, step = outcome_changes(outcome, now)
        written.append({**doc, **changes, "attempt": doc["attempt"] + step})
        if outcome.kind != "succeeded":
            records.append(_attempt_record(doc, outcome, now))
    return written, records


def _attempt_record(doc: Document, outcome: Outcome, now: datetime) -> Document:
    record = attempt_document(doc, outcome.kind, outcome.error, now)
    if outcome.traceback is not None:  # absent, not null, when there is none
        record["traceback"] = outcome.traceback
    return record


def outcome_changes(outcome: Outcome, now: datetime) -> tuple[Document, int]:
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
        run_at = ms(outcome.run_at) if outcome.run_at is not None else now
        changes = {"state": "queued", "error": outcome.error, "runAt": run_at, "updatedAt": now}
        return {**changes, **UNCLAIMED}, 0
    # released: handed back without spending the attempt
    return {"state": "queued", "updatedAt": now, **UNCLAIMED}, -1
