"""Records to query parameters and back. Columns carry the records' field names, so the
conversion is by name; times are ``timestamptz`` both ways, read back as UTC whatever the
session's time zone."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import psycopg

from runce.domain.locks import HolderState, LockHolder, Owner
from runce.domain.runs import Fence, Landed, NewRun, Outcome, Run
from runce.domain.tasks import AppliedRecord, Attempt
from runce.stores.liveness import process_alive
from runce.stores.queue import run_from_row, trace_context_of

Row = dict[str, Any]

_ATTEMPT_FIELDS = tuple(f.name for f in fields(Attempt))
_APPLIED_FIELDS = tuple(f.name for f in fields(AppliedRecord))


def params_of(record: Attempt | AppliedRecord) -> dict[str, Any]:
    names = _ATTEMPT_FIELDS if isinstance(record, Attempt) else _APPLIED_FIELDS
    return {name: getattr(record, name) for name in names}


def attempt_from(row: Mapping[str, Any]) -> Attempt:
    return Attempt(**{name: utc(row[name]) for name in _ATTEMPT_FIELDS})


def applied_from(row: Mapping[str, Any]) -> AppliedRecord:
    return AppliedRecord(**{name: utc(row[name]) for name in _APPLIED_FIELDS})


def owner_params(token: str, owner: Owner) -> dict[str, Any]:
    return {
        "token": token,
        "owner": owner.label,
        "host": owner.host,
        "pid": owner.pid,
        "machine": owner.machine,
    }


def holder_from(lock: Row, info: Row | None) -> LockHolder:
    """The session holding the advisory lock, described by its info row when it is its own.

    An info row written by an earlier holder (or none yet, in the instant between taking
    the lock and writing the row) leaves only what the server knows: the session's
    application name and start.
    """
    if info is None or not _same_session(lock, info):
        return LockHolder(
            owner=lock["application_name"] or f"PostgreSQL backend {lock['backend_pid']}",
            host=None,
            pid=None,
            since=utc(lock["backend_start"]),
            state="live",
        )
    state: HolderState = "dead" if process_alive(info["machine"], info["pid"]) is False else "live"
    return LockHolder(
        owner=info["owner"],
        host=info["host"],
        pid=info["pid"],
        since=utc(info["since"]),
        state=state,
        token=info["token"],
        machine=info["machine"],
    )


def utc(value: Any) -> Any:
    """Aware datetimes in UTC; anything else unchanged."""
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def _same_session(lock: Row, info: Row) -> bool:
    if info["backend_pid"] != lock["backend_pid"]:
        return False
    # backend_start is hidden from roles that may not see other sessions: then the pid decides.
    started = (info["backend_start"], lock["backend_start"])
    return None in started or started[0] == started[1]


# --- runs -------------------------------------------------------------------------------------
# The columns of runs carry Run's field names; input and result are JSONB (psycopg loads
# them), times timestamptz. Batches travel as parallel arrays, one per column (runs.sql).

_RUN_FIELDS = tuple(f.name for f in fields(Run))
_PICKERS: dict[tuple[str, ...], Callable[[Sequence[Any]], tuple[Any, ...]]] = {}


def runs_from(cursor: psycopg.Cursor[Any]) -> list[Run]:
    """Every row of an executed ``SELECT *`` or ``RETURNING *`` on runs, as runs."""
    pick = _picker(cursor)
    return [] if pick is None else [_run_of(pick(row)) for row in cursor.fetchall()]


def parts_from(
    cursor: psycopg.Cursor[Any],
) -> tuple[dict[str, Landed], set[str], list[Run]]:
    """The rows of ``exchange_runs``: the acknowledged runs' :class:`Landed` by id, the kinds
    queued again due now, and the claimed runs. Columns by position, as the statement lists
    them: the part, then the runs' columns in the table's order, the trace context as its
    ``traceparent`` and ``tracestate``."""
    landed: dict[str, Landed] = {}
    due: set[str] = set()
    claimed: list[Run] = []
    for row in cursor.fetchall():
        if row[0] == "claimed":
            claimed.append(_run_of((*row[1:25], _trace_context(row[25], row[26]))))
            continue
        # id, kind, state, run_at, updated_at, progress, progress_message, cancel_requested
        _done_row(row[1], row[2], row[4], row[8], row[10], row[24], row[22], row[23], landed, due)
    return landed, due, claimed


def _trace_context(parent: str | None, state: str | None) -> dict[str, str] | None:
    if state is None:
        return None if parent is None else {"traceparent": parent}
    return {"tracestate": state} if parent is None else {"traceparent": parent, "tracestate": state}


def done_from(cursor: psycopg.Cursor[Any]) -> tuple[dict[str, Landed], set[str]]:
    """The rows of ``complete_runs`` (the ``done`` of ``part_outcomes``), as for
    :func:`parts_from`."""
    landed: dict[str, Landed] = {}
    due: set[str] = set()
    for id_, kind, state, run_at, updated_at, cancel, progress, message in cursor.fetchall():
        _done_row(id_, kind, state, run_at, updated_at, cancel, progress, message, landed, due)
    return landed, due


def _done_row(
    id_: str,
    kind: str,
    state: str,
    run_at: datetime,
    updated_at: datetime,
    cancel_requested: bool,
    progress: int | None,
    progress_message: str | None,
    landed: dict[str, Landed],
    due: set[str],
) -> None:
    at, run_at = _utc(updated_at), _utc(run_at)
    landed[id_] = Landed(at, run_at, cancel_requested, progress, progress_message)
    if state == "queued" and run_at <= at:
        due.add(kind)


def flow_claimed_from(cursor: psycopg.Cursor[Any]) -> tuple[list[Run], int]:
    """The rows of ``flow_claim_unbound``: the runs claimed (``bound`` NULL), and how many
    kinds were bound (the one row whose ``bound`` is not NULL; its run columns are)."""
    pick = _picker(cursor)
    if pick is None:
        return [], 0
    claimed: list[Run] = []
    bound = 0
    for row in cursor.fetchall():
        if row[-1] is None:
            claimed.append(_run_of(pick(row)))
        else:
            bound = int(row[-1])
    return claimed, bound


def fetched_runs(cursor: psycopg.AsyncCursor[Any], rows: list[Any]) -> list[Run]:
    """Rows an async cursor fetched from a ``SELECT *`` on runs, as runs."""
    pick = _picker(cursor)
    return [] if pick is None else [_run_of(pick(row)) for row in rows]


def _picker(
    cursor: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any],
) -> Callable[[Sequence[Any]], tuple[Any, ...]] | None:
    """Rows are read by position (a claim or an acknowledgement maps every run it touches,
    so this is on the hot path); positions come from the cursor's column names."""
    if cursor.description is None:
        return None
    names = tuple(column.name for column in cursor.description)
    pick = _PICKERS.get(names)
    if pick is None:
        pick = _PICKERS[names] = _new_picker(names)
    return pick


def _new_picker(names: tuple[str, ...]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    if "trace_context" in names:
        return itemgetter(*(names.index(name) for name in _RUN_FIELDS))
    # A schema read before its upgrade to version 5: the runs have no trace context.
    older = itemgetter(*(names.index(name) for name in _RUN_FIELDS[:-1]))
    return lambda row: (*older(row), None)


def _run_of(values: Sequence[Any]) -> Run:
    return run_from_row(values, _utc, _as_is, trace_context_of)  # psycopg decodes JSONB


def _as_is(value: Any) -> Any:
    return value


def _utc(moment: datetime) -> datetime:
    # A session whose TimeZone is UTC (the worker's) already gives datetime.UTC.
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def new_run_params(new: NewRun) -> dict[str, Any]:
    """The parameters of ``enqueue_run``."""
    return {
        "id": new.id,
        "kind": new.kind,
        "input": new.input_json,
        "max_attempts": new.max_attempts,
        "priority": new.priority,
        "run_at": new.run_at,
        "project_id": new.project_id,
        "idempotency_key": new.idempotency_key,
        "correlation_id": new.correlation_id,
        "trace_context": _json_or_none(new.trace_context),
        "concurrency_key": new.concurrency_key,
    }


def new_runs_params(runs: Sequence[NewRun]) -> dict[str, Any]:
    """The parallel arrays of ``enqueue_runs``."""
    return {
        "ids": [new.id for new in runs],
        "kinds": [new.kind for new in runs],
        "inputs": [new.input_json for new in runs],
        "max_attempts": [new.max_attempts for new in runs],
        "priorities": [new.priority for new in runs],
        "run_ats": [new.run_at for new in runs],
        "project_ids": [new.project_id for new in runs],
        "keys": [new.idempotency_key for new in runs],
        "correlation_ids": [new.correlation_id for new in runs],
        "trace_contexts": [_json_or_none(new.trace_context) for new in runs],
        "concurrency_keys": [new.concurrency_key for new in runs],
    }


def _json_or_none(value: dict[str, str] | None) -> str | None:
    return None if value is None else json.dumps(value)


def outcomes_params(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The parallel arrays of ``part_outcomes``."""
    return {
        "ids": [o.fence.run_id for o in outcomes],
        "attempts": [o.fence.attempt for o in outcomes],
        "workers": [o.fence.worker_id for o in outcomes],
        "kinds": [o.kind for o in outcomes],
        "results": [o.result_json for o in outcomes],
        "output_refs": [o.output_ref for o in outcomes],
        "errors": [o.error for o in outcomes],
        "run_ats": [o.run_at for o in outcomes],
        "tracebacks": [o.traceback for o in outcomes],
    }


def fences_params(fences: Sequence[Fence]) -> dict[str, Any]:
    return {
        "ids": [f.run_id for f in fences],
        "attempts": [f.attempt for f in fences],
        "workers": [f.worker_id for f in fences],
    }
