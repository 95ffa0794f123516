"""The run queue (docs/runs.md) in ``runce_runs``, ``runce_run_attempts`` and
``runce_workers``.

Writes: each call is one short ``BEGIN IMMEDIATE`` transaction through :meth:`Database.write`
(busy timeout and retries, so concurrent workers and enqueuers wait their turn instead of
seeing "database is locked"), and each batch is one statement whatever its size: a claim is
one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING *``, a batch of outcomes one
fenced ``UPDATE ... FROM json_each(...)`` (plus one ``INSERT`` of attempt rows when some
did not succeed), and :meth:`SQLiteRunQueue.exchange` does both in one transaction. Every
time written is SQLite's clock, read once per transaction. Enqueues read back only the ids
inserted and acknowledgements a :class:`~runce.domain.runs.Landed` per run: the caller has
the rest.

Waiting: :meth:`SQLiteRunQueue.wait_for_work` watches files with ``os.stat``, no query, so
an idle worker costs the database nothing while it waits: every enqueue, retry and requeue
appends a byte to a wake file beside the database (``<file>-wake``), which waiters look at
every millisecond after news, every 20 ms after a quiet second (see :class:`_Waiter`).
Enqueues and retries through the same store object wake it at once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from runce.domain.runs import (
    COUNT_WINDOW,
    FINISHED,
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
    limited_want,
)
from runce.errors import StoreUnavailable, UsageError
from runce.stores.queue import (
    Bucket,
    Candidate,
    counted,
    enqueue_answers,
    enqueue_debounced,
    outcome_rounds,
    pick_limited,
    rate_room,
    rated_kinds,
    spent_buckets,
    split_claim,
    started_groups,
    stats_of,
    unbound,
)
from runce.stores.sql import runs as sql_runs
from runce.stores.sqlite import schema
from runce.stores.sqlite.connection import Database
from runce.stores.sqlite.dialect import CODECS
from runce.stores.sqlite.queries import fetch_rows as _fetch
from runce.stores.sqlite.queries import query
from runce.stores.sqlite.rows import ttl_modifier
from runce.stores.sqlite.runrows import (
    new_runs_param,
    outcomes_param,
    run_time,
    runs_from,
    times_reader,
)
from runce.timeutil import from_iso, to_iso

T = TypeVar("T")

# The schema version that brings the runs tables (migrations/0002_runs.sql).
RUNS_VERSION = 2
# The schema version that brings concurrency keys (migrations/0009_flow_control.sql).
FLOW_VERSION = 9

_REQUEUEING = frozenset({"retry", "released"})

# The conditions a page of runs may be filtered by; each value is a parameter.
_PAGE_FILTERS = {
    "project_id": "project_id = :project_id",
    "project_ids": "project_id IN (SELECT value FROM json_each(:project_ids))",
    "state": "state = :state",
    "kind": "kind = :kind",
    "since": "created_at >= :since",
    "before": "created_at < :before",
    "idempotency_key": "idempotency_key = :idempotency_key",
    "correlation_id": "correlation_id = :correlation_id",
    "ids": "id IN (SELECT value FROM json_each(:ids))",
}
_PAGE_AFTER = "(created_at, id) {beyond} (:after_created_at, :after_id)"


class SQLiteRunQueue:
    # Runs a worker claims in one statement (and holds ahead, for quick jobs): a claim or
    # an acknowledgement is one statement whatever its size, and each exchange is a commit.
    claim_batch = 500
    # wait_for_work returns as soon as a run is enqueued or requeued (the wake file): an idle
    # worker needs to look for due runs less often (only for those due on their own).
    wakes_for_new_work = True

    def __init__(self, db: Database) -> None:
        self._db = db
        self._waiter = _Waiter(db)

    # --- writes -----------------------------------------------------------------------------

    def enqueue(self, runs: Sequence[NewRun], connection: Any = None) -> list[Enqueued]:
        batch = list(runs)
        if connection is not None:
            conn = _callers_connection(connection)
            return self._enqueue_in(conn, batch) if batch else []
        if not batch:
            return []
        results = self._db.write(
            lambda conn: _enqueue(conn, batch, _now(conn)),
            what=sql_runs.runs_text("enqueue", batch),
        )
        self._waiter.announce()
        return results

    def _enqueue_in(self, conn: sqlite3.Connection, batch: list[NewRun]) -> list[Enqueued]:
        """Insert in the caller's open transaction: never committed or rolled back here.

        The caller holds (or is about to take) the file's write lock, so the runs tables
        are created on that same connection when missing: a connection of ours would wait
        for the caller's lock, which waits for us.
        """
        what = sql_runs.runs_text("enqueue", batch) + " in your transaction"
        with self._db.translated(what):
            _check_same_file(conn, self._db)
            _join_transaction(conn)
            schema.ensure_current(conn, self._db.path, auto_migrate=self._db.auto_migrate)
            results = _enqueue(conn, batch, _now(conn))
        # Waiters elsewhere see the commit (the wake file makes every commit news for a while);
        # a waiter here may wake for nothing.
        self._waiter.announce()
        return results

    def claim(
        self, worker_id: str, kinds: Sequence[str] | None, limit: int, lease: float
    ) -> list[Run]:
        if limit <= 0:
            return []
        request = ClaimRequest(worker_id, kinds, limit, lease)
        return self._db.write(lambda conn: _claim(conn, request, _now(conn)), what="claim runs")

    def exchange(
        self, outcomes: Sequence[Outcome], claim: ClaimRequest | None
    ) -> tuple[list[Landed | None], list[Run]]:
        done_with = list(outcomes)
        check_outcomes(done_with)
        if claim is not None and claim.limit <= 0:
            claim = None
        if not done_with and claim is None:
            return [], []

        def work(conn: sqlite3.Connection) -> tuple[list[Landed | None], list[Run]]:
            now = _now(conn)
            done = _complete(conn, done_with, now) if done_with else []
            return done, (_claim(conn, claim, now) if claim is not None else [])

        result = self._db.write(work, what="acknowledge and claim runs")
        self._announce_requeued(done_with)
        if done_with and claim is not None and claim.limits:
            # Finished runs of limited kinds may let another worker start one held back.
            self._waiter.tell_others()
        return result

    def heartbeat(self, fences: Sequence[Fence], lease: float) -> dict[str, Beat]:
        if not fences:
            return {}
        param = json.dumps([[f.run_id, f.attempt, f.worker_id] for f in fences])

        def work(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            params = {"fences": param, "lease": ttl_modifier(lease), "now": _now(conn)}
            return _fetch(conn, "heartbeat_runs", params)

        rows = self._db.write(work, what=f"extend the leases of {len(fences)} run(s)")
        current = {
            (row["id"], row["attempt"], row["claimed_by"]): bool(row["cancel_requested"])
            for row in rows
        }
        return sql_runs.beats_of(fences, current)

    def progress(self, fence: Fence, percent: int, message: str | None) -> bool:
        params: dict[str, Any] = {
            "run_id": fence.run_id,
            "attempt": fence.attempt,
            "worker_id": fence.worker_id,
            "percent": percent,
            "message": message,
        }

        def work(conn: sqlite3.Connection) -> int:
            return conn.execute(query("progress_run"), {**params, "now": _now(conn)}).rowcount

        changed = self._db.write(work, what=f"store the progress of run {fence.run_id}")
        return changed == 1

    def complete(self, outcomes: Sequence[Outcome]) -> list[Landed | None]:
        batch = list(outcomes)
        check_outcomes(batch)
        if not batch:
            return []
        done = self._db.write(
            lambda conn: _complete(conn, batch, _now(conn)),
            what=f"record the outcome of {len(batch)} run(s)",
        )
        self._announce_requeued(batch)
        return done

    def succeed_in_transaction(
        self, fence: Fence, work: Callable[[sqlite3.Connection], str | None]
    ) -> Landed | None:
        # The job's work holds the file's write lock until its success is written with it.
        try:
            with self._db.transaction(None, what=f"run {fence.run_id} in a transaction") as conn:
                result = work(conn)
                landed = _complete(conn, [Outcome(fence, "succeeded", result)], _now(conn))[0]
                if landed is None:
                    raise sql_runs.FenceLost
        except sql_runs.FenceLost:
            return None
        return landed

    def cancel(self, run_id: str) -> Run | None:
        return self._db.write(
            lambda conn: _change_or_get(conn, "cancel_run", {"run_id": run_id}),
            what=f"cancel run {run_id}",
        )

    def retry(self, run_id: str, run_at: datetime | None = None) -> Run | None:
        params = {"run_id": run_id, "run_at": to_iso(run_at) if run_at is not None else None}
        run = self._db.write(
            lambda conn: _change_or_get(conn, "retry_run", params), what=f"retry run {run_id}"
        )
        if run is not None and run.state == "queued":
            self._waiter.announce()
        return run

    def reclaim(self) -> list[Run]:
        def work(conn: sqlite3.Connection) -> list[Run]:
            params = {"now": _now(conn)}
            conn.execute(query("record_expired_attempts"), params)
            return _fetch_runs(conn, "reclaim_expired", params)

        runs = self._db.write(work, what="reclaim runs whose lease expired")
        if runs:
            self._waiter.announce()
        return sorted(runs, key=lambda run: (run.created_at, run.id))

    def prune(
        self, succeeded_before: datetime, failed_before: datetime, limit: int | None = None
    ) -> int:
        params: dict[str, Any] = {
            "succeeded_before": to_iso(succeeded_before),
            "failed_before": to_iso(failed_before),
            "latest": to_iso(max(succeeded_before, failed_before)),
            "limit": limit,
        }
        batch = "" if limit is None else "_batch"

        def work(conn: sqlite3.Connection) -> int:
            conn.execute(query(f"prune_attempts{batch}"), params)
            deleted: int = conn.execute(query(f"prune_runs{batch}"), params).rowcount
            return deleted

        return self._db.write(work, what="prune finished runs")

    def worker_seen(self, info: WorkerInfo) -> None:
        params = sql_runs.worker_params(info, CODECS)
        self._db.write(
            lambda conn: conn.execute(query("worker_seen"), params),
            what=f"record the heartbeat of worker {info.id}",
        )

    def prune_workers(self, seen_before: datetime) -> int:
        params = {"seen_before": to_iso(seen_before)}

        def work(conn: sqlite3.Connection) -> int:
            deleted: int = conn.execute(query("prune_workers"), params).rowcount
            return deleted

        return self._db.write(work, what="prune the workers not heard from")

    # --- reads ------------------------------------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        def work(conn: sqlite3.Connection) -> Run | None:
            runs = _fetch_runs(conn, "get_run", {"run_id": run_id})
            return runs[0] if runs else None

        return self._read(work, None, what=f"read run {run_id}")

    def page(self, filters: RunFilter, after: tuple[datetime, str] | None, limit: int) -> list[Run]:
        if limit <= 0:
            return []
        page = sql_runs.page_of(filters, after, limit, CODECS, _PAGE_FILTERS, _PAGE_AFTER)
        sql = query(page.statement).replace("{filters}", " AND ".join(page.conditions) or "1")
        sql = sql.replace("{direction}", page.direction)

        def work(conn: sqlite3.Connection) -> list[Run]:
            return _runs_of(conn, sql, page.params)

        nothing: list[Run] = []
        return self._read(work, nothing, what="list runs")

    def flow_of(self, run_id: str) -> FlowCount | None:
        """The run's concurrency key and the runs of its (kind, key) running now."""

        def work(conn: sqlite3.Connection) -> FlowCount | None:
            if schema.user_version(conn) < FLOW_VERSION:
                return None
            params = {"run_id": run_id, "now": _now(conn)}
            row = conn.execute(query("flow_of"), params).fetchone()
            if row is None:
                return None
            return FlowCount(row[0], row[1], row[2], None if row[3] is None else run_time(row[3]))

        return self._read(work, None, what=f"read the flow control of run {run_id}")

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        def work(conn: sqlite3.Connection) -> list[AttemptRecord]:
            rows = _fetch(conn, "run_attempts", {"run_id": run_id})
            return [sql_runs.attempt_record_from(dict(row), CODECS) for row in rows]

        nothing: list[AttemptRecord] = []
        return self._read(work, nothing, what=f"read the attempts of run {run_id}")

    def workers(self, stopped: int = STOPPED_SHOWN) -> list[WorkerInfo]:
        params = {"stopped": max(stopped, 0)}

        def work(conn: sqlite3.Connection) -> list[WorkerInfo]:
            rows = _fetch(conn, "workers", params)
            return [sql_runs.worker_from(dict(row), CODECS) for row in rows]

        nothing: list[WorkerInfo] = []
        return self._read(work, nothing, what="read the workers")

    def stats(self, since: datetime, cap: int = STATS_CAP) -> RunStats:
        return stats_of(self.run_counts(since, cap))

    def run_counts(self, since: datetime | None = None, cap: int = STATS_CAP) -> RunCounts:
        def work(conn: sqlite3.Connection) -> RunCounts:
            clock = _now(conn)
            now = run_time(clock)
            start = now - timedelta(seconds=COUNT_WINDOW) if since is None else since
            params = {"now": clock, "since": to_iso(start), "limit": cap + 1}
            cursor = conn.cursor()
            cursor.row_factory = None
            groups = cursor.execute(query("run_counts"), params).fetchall()
            queued = {kind: n for kind, state, n, _ in groups if state == "queued"}
            running = {kind: n for kind, state, n, _ in groups if state == "running"}
            finished = {(kind, state): n for kind, state, n, _ in groups if state in FINISHED}
            oldest = {kind: run_time(due) for kind, _, _, due in groups if due is not None}
            return counted(now, start, queued, running, finished, oldest, cap)

        now = self.now()
        empty = counted(now, since or now - timedelta(seconds=COUNT_WINDOW), {}, {}, {}, {}, cap)
        return self._read(work, empty, what="count the runs")

    def now(self) -> datetime:
        # SQLite's clock is the machine's, whichever file it is asked through.
        with self._db.translated("read the clock"), closing(sqlite3.connect(":memory:")) as conn:
            text: str = conn.execute(query("now")).fetchone()[0]
        return from_iso(text)

    # --- waiting ----------------------------------------------------------------------------

    def wait_for_work(self, timeout: float) -> None:
        self._waiter.wait(timeout)

    def close(self) -> None:
        self._waiter.close()

    # --- helpers ----------------------------------------------------------------------------

    def _read(self, work: Callable[[sqlite3.Connection], T], empty: T, *, what: str) -> T:
        """A read; ``empty`` while the file has no runs tables yet (reads never migrate)."""

        def guarded(conn: sqlite3.Connection) -> T:
            return empty if schema.user_version(conn) < RUNS_VERSION else work(conn)

        return self._db.read(guarded, empty=empty, what=what)

    def _announce_requeued(self, outcomes: list[Outcome]) -> None:
        if any(outcome.kind in _REQUEUEING for outcome in outcomes):
            self._waiter.announce()

    def start(self, run: NewRun, worker_id: str, lease: float) -> Run:
        if run.idempotency_key is not None:
            raise UsageError("a run started at once takes no idempotency key")

        def work(conn: sqlite3.Connection) -> Run:
            now = _now(conn)
            _enqueue(conn, [run], now)
            params = {
                "run_id": run.id,
                "worker_id": worker_id,
                "lease": ttl_modifier(lease),
                "now": now,
            }
            [started] = _fetch_runs(conn, "start_run", params)
            return started

        return self._db.write(work, what=f"start run {run.id}")


# --- the work inside one transaction ----------------------------------------------------------


def _now(conn: sqlite3.Connection) -> str:
    """SQLite's clock, once per transaction: every time one transaction writes is the same."""
    cursor = conn.cursor()
    cursor.row_factory = None
    now: str = cursor.execute(query("now")).fetchone()[0]
    return now


def _fetch_runs(conn: sqlite3.Connection, name: str, params: dict[str, Any]) -> list[Run]:
    return _runs_of(conn, query(name), params)


def _runs_of(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> list[Run]:
    cursor = conn.cursor()
    cursor.row_factory = None  # tuples: runs_from reads them by position
    return runs_from(cursor.execute(sql, params))


def _enqueue(conn: sqlite3.Connection, batch: list[NewRun], now: str) -> list[Enqueued]:
    """Insert the runs (debounced ones merged into their key's queued run), in the write
    transaction: no other enqueue sees a key's queued run in between."""

    def merge(new: NewRun, at: datetime) -> Run | None:
        params = {
            "input": new.input_json,
            "run_at": to_iso(at),
            "now": now,
            "kind": new.kind,
            "key": new.concurrency_key,
        }
        found = _fetch_runs(conn, "debounce_run", params)
        return found[0] if found else None

    return enqueue_debounced(batch, run_time(now), merge, lambda runs: _insert(conn, runs, now))


def _insert(conn: sqlite3.Connection, batch: list[NewRun], now: str) -> list[Enqueued]:
    cursor = conn.cursor()
    cursor.row_factory = None
    rows = cursor.execute(query("enqueue_runs"), {"runs": new_runs_param(batch), "now": now})
    inserted = {row[0] for row in rows.fetchall()}
    keys = [new.idempotency_key for new in batch if new.id not in inserted and new.idempotency_key]
    existing: dict[str, Run] = {}
    if keys:
        found = _fetch_runs(conn, "runs_by_keys", {"keys": json.dumps(keys)})
        existing = {run.idempotency_key or "": run for run in found}
    moment = run_time(now)
    # As stored: a given run_at at the store's precision (milliseconds).
    times = {
        new.id: (moment if new.run_at is None else run_time(to_iso(new.run_at)), moment)
        for new in batch
        if new.id in inserted
    }
    return enqueue_answers(batch, times, existing)


def _claim(conn: sqlite3.Connection, request: ClaimRequest, now: str) -> list[Run]:
    if request.limits:
        return _claim_limited(conn, request, now)
    params = {
        "worker_id": request.worker_id,
        "kinds": json.dumps(list(request.kinds)) if request.kinds else None,
        "limit": request.limit,
        "lease": ttl_modifier(request.lease),
        "now": now,
    }
    runs = _fetch_runs(conn, "claim_runs", params)
    # RETURNING gives no order: put the runs back in the order they were claimed in.
    runs.sort(key=lambda run: (-run.priority, run.run_at, run.id))
    return runs


def _claim_limited(conn: sqlite3.Connection, request: ClaimRequest, now: str) -> list[Run]:
    """A claim of kinds with flow-control limits: counted and claimed in the transaction that
    holds the file's write lock, so no other claim counts in between. Then the unlimited
    kinds, the plain way, with what is left of the limit."""
    limited, unlimited = split_claim(request)
    cursor = conn.cursor()
    cursor.row_factory = None
    kinds = json.dumps(sorted(limited))
    counted = cursor.execute(query("flow_running"), {"kinds": kinds, "now": now}).fetchall()
    running = {(kind, key): count for kind, key, count in counted}
    rated = rated_kinds(request)
    unbound(limited, unlimited, running, rated, limited_want(request))
    candidates: list[Candidate] = []
    if limited:
        most = min(max(limited.values()), request.limit)
        params = {"kinds": json.dumps(sorted(limited)), "now": now, "most": most}
        candidates = cursor.execute(query("flow_candidates"), params).fetchall()
    room, buckets, at = None, {}, run_time(now)
    if rated:
        rows = cursor.execute(query("flow_buckets"), {"kinds": json.dumps(sorted(rated))})
        buckets = {
            (kind, key or None): Bucket(tokens, run_time(when))
            for kind, key, tokens, when in rows.fetchall()
        }
        room = rate_room(rated, buckets, at)
    ids = pick_limited(candidates, running, limited, limited_want(request), room)
    claimed: list[Run] = []
    if ids:
        claim = {
            "worker_id": request.worker_id,
            "ids": json.dumps(ids),
            "lease": ttl_modifier(request.lease),
            "now": now,
        }
        claimed = _fetch_runs(conn, "flow_claim", claim)
        if rated:
            spent = spent_buckets(rated, buckets, started_groups(candidates, ids), at)
            cursor.executemany(
                query("flow_bucket_put"),
                [
                    {"kind": kind, "key": key or "", "tokens": b.tokens, "at": now}
                    for (kind, key), b in spent.items()
                ],
            )
    rest = request.limit - len(claimed)
    if unlimited and rest > 0:
        plain = ClaimRequest(request.worker_id, unlimited, rest, request.lease)
        claimed += _claim(conn, plain, now)
    claimed.sort(key=lambda run: (-run.priority, run.run_at, run.id))
    return claimed


def _complete(conn: sqlite3.Connection, outcomes: list[Outcome], now: str) -> list[Landed | None]:
    done: list[Landed | None] = [None] * len(outcomes)
    at = run_time(now)
    when = times_reader()
    cursor = conn.cursor()
    cursor.row_factory = None
    for positions in outcome_rounds(outcomes):
        batch = [outcomes[i] for i in positions]
        params = {"outcomes": outcomes_param(batch), "now": now}
        if any(outcome.kind != "succeeded" for outcome in batch):
            cursor.execute(query("record_outcome_attempts"), params)
        # fetchall: a RETURNING statement is only finished once its rows are all read.
        rows = cursor.execute(query("complete_runs"), params).fetchall()
        after = {
            run_id: Landed(at, when(run_at), bool(cancel), progress, message)
            for run_id, run_at, cancel, progress, message in rows
        }
        for i in positions:
            done[i] = after.get(outcomes[i].fence.run_id)
    return done


def _change_or_get(conn: sqlite3.Connection, name: str, params: dict[str, Any]) -> Run | None:
    """Apply a single-run change; the run as it is after it (unchanged when not applicable)."""
    runs = _fetch_runs(conn, name, {**params, "now": _now(conn)})
    if not runs:
        runs = _fetch_runs(conn, "get_run", {"run_id": params["run_id"]})
    return runs[0] if runs else None


# --- the caller's connection ------------------------------------------------------------------


def _callers_connection(connection: Any) -> sqlite3.Connection:
    if not isinstance(connection, sqlite3.Connection):
        raise UsageError(
            "the SQLite store enqueues in your transaction through a sqlite3.Connection, not "
            f"{type(connection).__module__}.{type(connection).__qualname__} (with SQLAlchemy, "
            "pass the DBAPI connection underneath, e.g. conn.connection.dbapi_connection)"
        )
    return connection


def _check_same_file(conn: sqlite3.Connection, db: Database) -> None:
    cursor = conn.cursor()
    cursor.row_factory = None  # plain tuples, whatever the caller's connection returns
    rows = cursor.execute("PRAGMA database_list").fetchall()
    main = next((row[2] for row in rows if row[1] == "main"), "")
    if not main or not _same_file(main, db):
        where = main or "an in-memory or temporary database"
        raise UsageError(
            f"connection= is a connection to {where}, not to the SQLite store {db.path}; "
            "a run inserted there would never be seen by runce's workers"
        )


def _same_file(path: str, db: Database) -> bool:
    try:
        return os.path.samefile(path, db.path)
    except OSError:
        return False


def _join_transaction(conn: sqlite3.Connection) -> None:
    """Make sure the inserts land in the caller's transaction, so they commit or roll back
    with it.

    Python's default (legacy) transaction handling would open one before our INSERT anyway;
    opening it here, the same way, also covers the tables we may create first. A connection
    in autocommit mode with no transaction open has no transaction to join.
    """
    if conn.in_transaction:
        return
    autocommit = getattr(conn, "autocommit", None)  # Python 3.12+: True, False or LEGACY (-1)
    if conn.isolation_level is None or autocommit is True:
        raise UsageError(
            "connection= needs an open transaction to enqueue in (the run is to exist only if "
            "your transaction commits), but this connection is in autocommit mode with no "
            "transaction open; execute BEGIN first"
        )
    conn.execute(f"BEGIN {conn.isolation_level}")


# --- waiting for work -------------------------------------------------------------------------

_FAST_POLL = 0.001  # seconds between looks at the files after news
_SLOW_POLL = 0.02  # ... once there was none for _QUIET seconds
_QUIET = 1.0
# After the wake file moved, this many seconds during which any commit is news too: an
# enqueue in the caller's transaction moves the wake file before the caller commits.
_EAGER = 5.0
_WAKE_FILE_MAX = 4096  # bytes the wake file grows to before it starts over
_UNSET: tuple[object, ...] = ("unset",)
# What a file's stat says of a write: its size, and its modification time.
Signature = tuple[object, ...]


class _Waiter:
    """Waits for news of work, from any process, or for this store's own.

    Without a query: it watches files with ``os.stat``. Every enqueue, retry and requeue
    (whatever moves PostgreSQL's ``NOTIFY`` or MongoDB's wake signal) appends a byte to the
    wake file beside the database (``<file>-wake``) once it has committed, so its size
    changes; a waiter that sees it change returns. Commits of other kinds (workers'
    heartbeats and claims) change only the database and its write-ahead log (``-wal``),
    and wake nobody, so idle workers do not wake each other. Two exceptions make every
    commit news: for :data:`_EAGER` seconds after the wake file moved (an enqueue in the
    caller's own transaction moves it before the caller commits), and while a database
    that existed when the waiter first looked has no wake file (writers that keep none,
    an older runce, used it so far).

    News is counted in ``generation``, together with this store object's announcements; a
    thread returns when the count moved past the one it saw when it last returned, so news
    between two waits (say, while the worker claimed) is not slept through.
    """

    def __init__(self, db: Database) -> None:
        self._files = (db.path, db.path.with_name(db.path.name + "-wal"))
        self._wake_file = db.path.with_name(db.path.name + "-wake")
        self._changed = threading.Condition()
        self._generation = 0
        self._last_change = time.monotonic()
        self._eager_until = 0.0  # time.monotonic() until which every commit is news
        self._unannounced = False  # the file existed without a wake file when first looked at
        self._seen = threading.local()  # per thread: the generation it last returned on
        self._poll_guard = threading.Lock()
        self._signature: Signature = _UNSET  # the database and its log, as last looked at
        self._wake: Signature = _UNSET  # the wake file, as last looked at

    def announce(self) -> None:
        """News from this store object (it committed): waiters in other processes learn it
        from the wake file, waiters on this object at once."""
        self.tell_others()
        with self._changed:
            self._bump()

    def tell_others(self) -> None:
        """Wake waiters in other processes (through the wake file), not this one's."""
        try:
            with open(self._wake_file, "ab") as wake:  # at its end
                if wake.tell() >= _WAKE_FILE_MAX:
                    wake.truncate(0)
                wake.write(b".")  # its size moves with every byte, even within a clock tick
        except OSError:  # a folder runce may not write to: its waiters see the commit
            return
        with self._poll_guard:  # this waiter has its news from the bump that follows
            if self._wake != _UNSET:
                self._wake = _stat_signature(self._wake_file)

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 0.0)
        seen: int = getattr(self._seen, "generation", self._generation)
        self._poll()
        while True:
            with self._changed:
                if self._generation != seen:
                    self._seen.generation = self._generation
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._seen.generation = seen
                    return
                quiet = time.monotonic() - self._last_change >= _QUIET
                self._changed.wait(min(_SLOW_POLL if quiet else _FAST_POLL, remaining))
            self._poll()

    def close(self) -> None:
        with self._poll_guard:
            self._signature = self._wake = _UNSET

    def _bump(self) -> None:
        self._generation += 1
        self._last_change = time.monotonic()
        self._changed.notify_all()

    def _poll(self) -> None:
        with self._poll_guard:
            before, woke_before = self._signature, self._wake
            wake = self._wake = _stat_signature(self._wake_file)
            files = self._signature = tuple(map(_stat_signature, self._files))
            if before == _UNSET:
                # A file that exists without a wake file was written by others than runce
                # (or an older one): every commit to it is news while it has none.
                self._unannounced = files[0] != _MISSING
                return
            now = time.monotonic()
            news = wake != woke_before
            if news:
                self._eager_until = now + _EAGER
            elif files != before:
                unannounced = self._unannounced and wake == _MISSING
                news = unannounced or now < self._eager_until
        if news:
            with self._changed:
                self._bump()


_MISSING: Signature = (None,)


def _stat_signature(path: Path) -> Signature:
    """What changes in a file's stat when it is written (_MISSING: no such file)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return _MISSING
    except OSError as exc:  # unreadable folder: said as runce says a file it cannot use
        raise StoreUnavailable(f"cannot watch {path} for new runs: {exc.strerror}") from None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
