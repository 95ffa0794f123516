"""Runs and their attempts as MongoDB documents, and back.

A run is one document, ``_id`` = the run id, with camelCase fields and BSON dates (UTC, to
the millisecond). A stored input or result that holds a value JSON has none for reads as
:class:`~runce.domain.runs.Unreadable`, so that it fails its own run and nothing else.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from runce.domain.runs import AttemptRecord, Fence, NewRun, Run, Unreadable
from runce.stores.mongo.connection import Connection, Document
from runce.stores.mongo.documents import aware
from runce.stores.queue import trace_context_of, whole
from runce.timeutil import UNREADABLE_TIME

UNCLAIMED: Document = {
    "claimedBy": None,
    "claimedAt": None,
    "leaseExpiresAt": None,
    "startedAt": None,
}


def server_now(conn: Connection) -> datetime:
    """The server's clock, to BSON's millisecond: the "now" of every write."""
    return ms(conn.server_now())


def ms(moment: datetime) -> datetime:
    """A time as BSON keeps it: aware UTC, to the millisecond."""
    moment = aware(moment)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def new_document(new: NewRun, now: datetime) -> Document:
    doc: Document = {
        "_id": new.id,
        "kind": new.kind,
        "input": json.loads(new.input_json),
        "state": "queued",
        "attempt": 0,
        "maxAttempts": new.max_attempts,
        "priority": new.priority,
        "runAt": ms(new.run_at) if new.run_at is not None else now,
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
    created = _time(doc.get("createdAt")) or UNREADABLE_TIME
    result = doc.get("result")
    return Run(
        id=str(doc["_id"]),
        kind=doc["kind"],
        input=_json_value(doc.get("input")),
        state=doc["state"],
        attempt=whole(doc.get("attempt"), 0),
        max_attempts=whole(doc.get("maxAttempts"), 1),
        priority=whole(doc.get("priority"), 0),
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
        trace_context=trace_context_of(doc.get("traceContext")),
    )


def holds(doc: Document, fence: Fence) -> bool:
    return (
        doc.get("state") == "running"
        and doc.get("attempt") == fence.attempt
        and doc.get("claimedBy") == fence.worker_id
    )


def fenced(fence: Fence) -> Document:
    return {
        "_id": fence.run_id,
        "state": "running",
        "attempt": fence.attempt,
        "claimedBy": fence.worker_id,
    }


def attempt_document(run: Document, outcome: str, error: str | None, now: datetime) -> Document:
    return {
        "runId": run["_id"],
        "attempt": run["attempt"],
        "workerId": run.get("claimedBy") or "",
        "startedAt": run.get("startedAt"),
        "finishedAt": now,
        "outcome": outcome,
        "error": error,
    }


def attempt_from(doc: Document) -> AttemptRecord:
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
