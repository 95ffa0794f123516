"""The run queue's records to query parameters and back (see :mod:`runce.stores.sqlite.rows`
for the conventions). Kept apart so that once tasks never import the queue's records."""

from __future__ import annotations

import json
import json.scanner
import re
import sqlite3
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from operator import itemgetter
from typing import Any

from runce.domain.runs import NewRun, Outcome, Run, Unreadable
from runce.stores.queue import run_from_row, trace_contexts
from runce.timeutil import stored_time, to_iso

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
    pick = _picker(names)
    if cursor.connection.text_factory is not str:  # some row holds text that is not UTF-8
        return [run_from_row(_mended(pick(row)), when, _decode_mended) for row in cursor]
    traces = trace_contexts(_decode_json)
    return [run_from_row(pick(row), when, _decode_json, traces) for row in cursor.fetchall()]


_JSON_COLUMNS = (_RUN_FIELDS.index("input"), _RUN_FIELDS.index("result"))
_ESCAPED = re.compile("[\udc80-\udcff]")


def _picker(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """A row's values in the order of a Run's fields, by the cursor's column names."""
    if "trace_context" in names:
        found: Callable[[Any], tuple[Any, ...]] = itemgetter(*map(names.index, _RUN_FIELDS))
        return found
    older = itemgetter(*map(names.index, _RUN_FIELDS[:-1]))  # a file before schema 6

    def pick(row: Any) -> tuple[Any, ...]:
        return (*older(row), None)

    return pick


def _mended(values: tuple[Any, ...]) -> list[Any]:
    """A row read with :func:`~runce.stores.sqlite.connection.read_text`: an input or result
    that is not UTF-8 becomes :class:`Unreadable`, other text shows U+FFFD for bad bytes."""
    mended = list(values)
    for index, value in enumerate(mended):
        if not isinstance(value, str) or _ESCAPED.search(value) is None:
            continue
        if index in _JSON_COLUMNS:
            mended[index] = Unreadable("its text is not UTF-8")
        else:
            mended[index] = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return mended


def _decode_mended(text: str) -> Any:
    return text if isinstance(text, Unreadable) else _decode_json(text)


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
    # which fromisoformat reads as an aware UTC datetime; anything else (a hand edit) goes
    # the slower way, where one that is not a time reads as the epoch.
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return stored_time(text)
    return moment if moment.tzinfo is not None else stored_time(text)


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
                new.concurrency_key,
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
                outcome.traceback,
            ]
            for outcome in outcomes
        ]
    )


def _iso_or_none(moment: datetime | None) -> str | None:
    return to_iso(moment) if moment is not None else None
