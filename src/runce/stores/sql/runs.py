"""What the SQL run queues share: a page of runs planned from its filters, the beats of a
heartbeat, and the rows of attempts and workers, each in its backend's codecs
(:class:`~runce.stores.sql.dialect.Codecs`). The statements stay the backend's own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from runce.domain.runs import AttemptRecord, Beat, Fence, NewRun, RunFilter, WorkerInfo
from runce.stores.sql.dialect import Codecs, Row

# A page's direction: the SQL order and the keyset comparison that continues it.
DIRECTIONS = {"newest": ("DESC", "<"), "oldest": ("ASC", ">")}
# Filters an index leads with; a page with none of them is read per state.
INDEXED = ("project_id", "state", "kind", "idempotency_key", "correlation_id", "ids")
# Filters that pick a few runs by themselves: with one of them, several projects are one
# more condition; without, the page is read per project (``page_runs_by_project``).
_POINTED = ("project_id", "idempotency_key", "correlation_id", "ids")


@dataclass(frozen=True)
class Page:
    """A page of runs to read: the named statement (``page_runs``; ``page_runs_by_project``
    for runs of several projects; ``page_runs_by_state`` when no filter an index leads
    with is set), the conditions that fill its ``{filters}``, their parameters, and the
    order that fills its ``{direction}``."""

    statement: str
    conditions: list[str]
    params: dict[str, Any]
    direction: str


def page_of(
    filters: RunFilter,
    after: tuple[datetime, str] | None,
    limit: int,
    codecs: Codecs,
    conditions: Mapping[str, str],
    after_condition: str,
) -> Page:
    """The page ``filters`` ask for, past ``after`` (the last run's creation time and id),
    from a backend's ``conditions`` (a filter's name -> its SQL) and ``after_condition``
    (where ``{beyond}`` is the keyset comparison)."""
    filters = one_project(filters)
    direction, beyond = DIRECTIONS[filters.order]
    params: dict[str, Any] = {"limit": limit}
    chosen: list[str] = []
    values = _page_values(filters, codecs)
    per_project = values["project_ids"] is not None and all(
        values[name] is None for name in _POINTED
    )
    for name, value in values.items():
        if value is not None:
            if not (per_project and name == "project_ids"):  # the statement's own join
                chosen.append(conditions[name])
            params[name] = value
    if after is not None:
        chosen.append(after_condition.replace("{beyond}", beyond))
        params["after_created_at"], params["after_id"] = codecs.time(after[0]), after[1]
    if per_project:
        statement = "page_runs_by_project"
    elif any(values[name] is not None for name in (*INDEXED, "project_ids")):
        statement = "page_runs"
    else:
        statement = "page_runs_by_state"
    return Page(statement, chosen, params, direction)


def one_project(filters: RunFilter) -> RunFilter:
    """``filters`` with a single project of ``project_ids`` (or the one ``project_id`` also
    names) as ``project_id``, which one index range answers; a ``project_id`` outside
    ``project_ids`` leaves none."""
    wanted = filters.project_ids
    if wanted is None:
        return filters
    wanted = tuple(p for p in dict.fromkeys(wanted) if filters.project_id in (None, p))
    if len(wanted) == 1:
        return replace(filters, project_id=wanted[0], project_ids=None)
    return replace(filters, project_ids=wanted)


def _page_values(filters: RunFilter, codecs: Codecs) -> dict[str, Any]:
    return {
        "project_id": filters.project_id,
        "project_ids": None if filters.project_ids is None else codecs.texts(filters.project_ids),
        "state": filters.state,
        "kind": filters.kind,
        "since": codecs.time(filters.since) if filters.since is not None else None,
        "before": codecs.time(filters.before) if filters.before is not None else None,
        "idempotency_key": filters.idempotency_key,
        "correlation_id": filters.correlation_id,
        "ids": None if filters.ids is None else codecs.texts(list(filters.ids)),
    }


def beats_of(
    fences: Sequence[Fence], current: Mapping[tuple[str, int, str], bool]
) -> dict[str, Beat]:
    """Each fence's beat, from the runs a heartbeat still found held (run id, attempt,
    worker -> whether a cancel was asked)."""
    beats: dict[str, Beat] = {}
    for fence in fences:
        cancel = current.get((fence.run_id, fence.attempt, fence.worker_id))
        beats[fence.run_id] = "lost" if cancel is None else "cancel" if cancel else "ok"
    return beats


def attempt_record_from(row: Row, codecs: Codecs) -> AttemptRecord:
    started = row["started_at"]
    return AttemptRecord(
        run_id=row["run_id"],
        attempt=row["attempt"],
        worker_id=row["worker_id"],
        started_at=None if started is None else codecs.read_time(started),
        finished_at=codecs.read_time(row["finished_at"]),
        outcome=row["outcome"],
        error=row["error"],
        traceback=row.get("traceback"),  # absent before schema version 8
    )


def worker_params(info: WorkerInfo, codecs: Codecs) -> dict[str, Any]:
    return {
        "id": info.id,
        "host": info.host,
        "pid": info.pid,
        "started_at": codecs.time(info.started_at),
        "last_seen": codecs.time(info.last_seen),
        "concurrency": info.concurrency,
        "kinds": codecs.texts(list(info.kinds)),
        "state": info.state,
    }


def worker_from(row: Row, codecs: Codecs) -> WorkerInfo:
    return WorkerInfo(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        started_at=codecs.read_time(row["started_at"]),
        last_seen=codecs.read_time(row["last_seen"]),
        concurrency=row["concurrency"],
        kinds=codecs.read_texts(row["kinds"]),
        state=row["state"],
    )


def runs_text(verb: str, batch: list[NewRun]) -> str:
    """What a write of ``batch`` does, in an error's words."""
    return f"{verb} run {batch[0].id}" if len(batch) == 1 else f"{verb} {len(batch)} runs"


class FenceLost(Exception):
    """Raised inside a run's transaction to roll it back: its claim is no longer current."""
