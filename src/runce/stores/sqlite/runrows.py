"""The run queue's records to query parameters and back (see :mod:`runce.stores.sqlite.rows`
for the conventions). Kept apart so that once tasks never import the queue's records."""

from __future__ import annotations

import json
import json.scanner
import sqlite3
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from operator import itemgetter
from typing import Any

from runce.stores.queue import AttemptRecord, NewRun, Outcome, Run, WorkerInfo, run_from_row
from runce.timeutil import from_iso, to_iso


def _time_or_none(text: str | None) -> datetime | None:
    return from_iso(text) if text is not None else None


# --- runs -------------------------------------------------------------------------------------
# The columns of runce_runs carry Run's field names; input and result are JSON text, times
# ISO text, cancel_requested 0/1. Batches travel as one JSON array per statement (runs.sql).


_RUN_FIELDS = tuple(f.name for f in fields(Run))
_decode_whole = json.JSONDecoder().decode
# typeshed calls the scanner's argument a scanner; it is the decoder whose settings it takes.
_scan_json = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _decode_json(text: str) -> Any:
    """JSON the queue wrote (canonical: no whitespace around it), read on the hot path.

    The scanner alone skips ``decode``'s two whitespace matches; anything it does not read
    whole goes through ``decode``, which says what is wrong with it.
    """
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        end = -1
    return value if end == len(text) else _decode_whole(text)


def runs_from(cursor: sqlite3.Cursor) -> list[Run]:
    """Every row of an executed ``SELECT *`` or ``RETURNING *`` on runce_runs, as runs.

    Rows are plain tuples read by position (a claim or an acknowledgement maps every run it
    touches, so this is on the hot path); positions come from the cursor's column names.
    """
    if cursor.description is None:
        return []
    names = [column[0] for column in cursor.description]
    when = times_reader()
    if "trace_context" not in names:  # a file read before its upgrade to schema 5
        pick = itemgetter(*(names.index(name) for name in _RUN_FIELDS[:-1]))
        return [run_from_row((*pick(row), None), when, _decode_json) for row in cursor]
    pick = itemgetter(*(names.index(name) for name in _RUN_FIELDS))
    return [run_from_row(pick(row), when, _decode_json) for row in cursor.fetchall()]


def times_reader() -> Callable[[str], datetime]:
    """:func:`run_time` remembering what it read: runs read together share most times."""
    times: dict[str, datetime] = {}

    def when(text: str) -> datetime:
        moment = times.get(text)
        if moment is None:
            moment = times[text] = run_time(text)
        return moment

    return when


def run_time(text: str) -> datetime:
    """A time of the runs tables as an aware UTC datetime."""
    # Every time in the runs tables is written by strftime(... 'Z') or to_iso: UTC with a Z,
    # which fromisoformat reads as an aware UTC datetime.
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else from_iso(text)


def new_runs_param(runs: list[NewRun]) -> str:
    """The ``:runs`` parameter of ``enqueue_runs``."""
    return json.dumps(
        [
            [
                new.id,
                new.kind,
                new.input_json,
                new.max_attempts,
                new.priority,
                _iso_or_none(new.run_at),
                new.project_id,
                new.idempotency_key,
                new.correlation_id,
                None if new.trace_context is None else json.dumps(new.trace_context),
            ]
            for new in runs
        ]
    )


def outcomes_param(outcomes: list[Outcome]) -> str:
    """The ``:outcomes`` parameter of ``record_outcome_attempts`` and ``complete_runs``."""
    return json.dumps(
        [
            [
                outcome.fence.run_id,
                outcome.fence.attempt,
                outcome.fence.worker_id,
                outcome.kind,
                outcome.result_json,
                outcome.output_ref,
                outcome.error,
                _iso_or_none(outcome.run_at),
            ]
            for outcome in outcomes
        ]
    )


def attempt_record_from(row: sqlite3.Row) -> AttemptRecord:
    return AttemptRecord(
        run_id=row["run_id"],
        attempt=row["attempt"],
        worker_id=row["worker_id"],
        started_at=_time_or_none(row["started_at"]),
        finished_at=from_iso(row["finished_at"]),
        outcome=row["outcome"],
        error=row["error"],
    )


def worker_params(info: WorkerInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "host": info.host,
        "pid": info.pid,
        "started_at": to_iso(info.started_at),
        "last_seen": to_iso(info.last_seen),
        "concurrency": info.concurrency,
        "kinds": json.dumps(list(info.kinds)),
        "state": info.state,
    }


def worker_from(row: sqlite3.Row) -> WorkerInfo:
    return WorkerInfo(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        started_at=from_iso(row["started_at"]),
        last_seen=from_iso(row["last_seen"]),
        concurrency=row["concurrency"],
        kinds=tuple(json.loads(row["kinds"])),
        state=row["state"],
    )


def _iso_or_none(moment: datetime | None) -> str | None:
    return to_iso(moment) if moment is not None else None
