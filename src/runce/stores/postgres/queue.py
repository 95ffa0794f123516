"""The run queue (docs/runs.md) in ``runs``, ``run_attempts`` and ``workers`` of
runce's schema.

Connections, per queue object:

* the **store's connection** (shared with the tracker, one thread at a time) for enqueues,
  reads and the short writes around runs (cancel, retry, progress, reclaim, prune, workers);
* a **worker connection** for the hot path (``exchange``, ``claim``, ``complete``,
  ``heartbeat``), opened on first use and guarded by a lock, whose settings keep the plans
  of these statements what they were written for whatever the table's statistics say
  (``plan_cache_mode = force_custom_plan``, index scans only: see ``worker_session`` in
  ``runs.sql``);
* a **listening connection** for ``wait_for_work``, opened on its first call.

All three are autocommit. A connection that broke (the server restarted, a backend was
terminated) makes the call that saw it raise :class:`~runce.errors.StoreUnavailable`, and
is replaced by the next call: the worker retries with backoff.

Statements: every write is one statement whatever the batch size (the batch travels as
parallel arrays read with ``unnest``; a single enqueued run as plain parameters), and so one
transaction and one round trip; only an enqueue that met existing idempotency keys reads
those runs back, and outcomes that queue runs again (or a reclaim) send their ``NOTIFY``
after their statement. An enqueue reads back only ids and times, an acknowledgement only a
:class:`~runce.domain.runs.Landed` per run: the rest the caller already has. A claim is
``UPDATE ... WHERE id = ANY(ARRAY(SELECT id ... ORDER BY priority DESC, run_at, id LIMIT n
FOR UPDATE SKIP LOCKED))`` on the partial claim index; a batch of outcomes is one fenced
``UPDATE ... FROM unnest(...)`` whose common table expressions also insert the attempt rows
of the outcomes that did not succeed; :meth:`PostgresRunQueue.exchange` puts both in one
statement. Reclaiming expired leases (with their attempt rows) is one statement too. A
claim with flow-control limits needs the kinds' locks before it counts, so a statement of
its own takes them; while no limit can bind, the outcomes, the locks and the count with
the claim go in one pipelined transaction, one round trip (``_exchange_limited``). Times
are the server's ``now()``: one instant per statement.

Waking: an enqueue calls ``pg_notify`` on a channel named after the schema, once per kind,
in the same statement (delivered at commit, so a caller's rolled-back transaction announces
nothing), as do a retry, outcomes that queue a run again due now, and reclaimed leases;
``wait_for_work`` listens on that channel and returns on the first notification.

Enqueueing in the caller's transaction (``connection=``, a psycopg ``Connection``): the
insert runs on their connection and is never committed or rolled back here. runce's schema
is created or upgraded first on runce's own connection, committed (or, with
``auto_migrate = false``, a :class:`~runce.errors.SchemaError` asks for ``runce db
upgrade``): the caller's transaction never holds runce's migration lock or DDL locks.
Their connection must be to the store's database (checked by name), and in a transaction:
psycopg's default, or inside ``with conn.transaction():`` on an autocommit connection.

JSON is JSONB, which keeps numbers as ``numeric``: a float written with an exponent that is
a whole number (``1e16``) is read back as the integer it equals, and the escape ``\\u0000`` is
refused by the server (a :class:`~runce.errors.StoreError`). The run an enqueue returns holds
the input as sent (decoded from its canonical JSON); reading it back gives the JSONB form.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import dict_row, tuple_row

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
from runce.errors import StoreError, UnsupportedFeature, UsageError
from runce.stores.postgres.connection import Connection, Database, translate
from runce.stores.postgres.dialect import CODECS
from runce.stores.postgres.prepared import timestamptz
from runce.stores.postgres.queries import query_with
from runce.stores.postgres.rows import (
    Row,
    done_from,
    fences_params,
    fetched_runs,
    flow_claimed_from,
    new_run_params,
    new_runs_params,
    outcomes_params,
    parts_from,
    runs_from,
    utc,
)
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

T = TypeVar("T")

# The schema version that brings the runs tables (migrations/0002_runs.sql).
RUNS_VERSION = 2
COUNTS_SETTINGS = (
    "SELECT set_config('jit', 'off', true), set_config('enable_bitmapscan', 'off', true), "
    "set_config('enable_seqscan', 'off', true)"
)
# The schema version that brings concurrency keys (migrations/0009_flow_control.sql).
FLOW_VERSION = 9

# Batches of at least this many runs, none with an idempotency key, go in by COPY.
COPY_FROM = 50

_CHANNEL_BYTES = 63  # NAMEDATALEN - 1: longer channel names are refused

# The conditions a page of runs may be filtered by; each value is a parameter.
_PAGE_FILTERS = {
    "project_id": "project_id = %(project_id)s",
    "project_ids": "project_id = ANY(%(project_ids)s::text[])",
    "state": "state = %(state)s",
    "kind": "kind || '' = %(kind)s",  # runs_kind is on this expression (migration 0010)
    "since": "created_at >= %(since)s",
    "before": "created_at < %(before)s",
    "idempotency_key": "idempotency_key = %(idempotency_key)s",
    "correlation_id": "correlation_id = %(correlation_id)s",
    "ids": "id = ANY(%(ids)s::text[])",
}
_PAGE_AFTER = "(created_at, id) {beyond} (%(after_created_at)s, %(after_id)s)"


def channel_of(schema: str) -> str:
    """The ``LISTEN``/``NOTIFY`` channel announcing new work in ``schema``."""
    name = f"runce.runs.{schema}"
    if len(name.encode()) <= _CHANNEL_BYTES:
        return name
    return "runce.runs." + hashlib.sha256(schema.encode()).hexdigest()[:32]


class PostgresRunQueue:
    # Runs a worker claims in one statement (and holds ahead, for quick jobs): a claim or
    # an acknowledgement is one statement whatever its size, and each exchange is a commit.
    claim_batch = 500
    # wait_for_work returns at once when a run is enqueued (LISTEN/NOTIFY): an idle worker
    # needs to look for due runs less often (only for those that become due on their own).
    wakes_for_new_work = True

    def __init__(self, db: Database) -> None:
        self._db = db
        self._channel = channel_of(db.target.schema)
        self._worker = _WorkerSession(db)
        self._listener = _Listener(db, self._channel)
        self._dbname: str | None = None  # the database's name, read once for connection=
        # The last limited claim found a limit that may bind: the next one claims the careful
        # way at once, without trying flow_claim_unbound first (worker connection's lock).
        self._flow_bound = False

    # --- writes -----------------------------------------------------------------------------

    def enqueue(self, runs: Sequence[NewRun], connection: Any = None) -> list[Enqueued]:
        batch = list(runs)
        if connection is not None:
            return self._enqueue_in(_callers_connection(connection), batch)
        if not batch:
            return []
        if any(new.debounce is not None for new in batch):
            return self._db.write(
                lambda conn: _debounce_enqueue(conn, self._db, batch, self._channel),
                what=sql_runs.runs_text("enqueue", batch),
            )
        if len(batch) >= COPY_FROM and not any(new.idempotency_key for new in batch):
            return self._db.write(
                lambda conn: _copy_enqueue(conn, self._db, batch, self._channel),
                what=sql_runs.runs_text("enqueue", batch),
            )
        if len(batch) == 1:  # runce.enqueue: prepared, through libpq (see prepared.py)
            return self._db.write(
                lambda conn: _enqueue_one(conn, self._db, batch[0], self._channel),
                what=sql_runs.runs_text("enqueue", batch),
                transaction=False,
            )
        return self._db.write(
            lambda conn: _enqueue(conn, self._db, batch, self._channel),
            what=sql_runs.runs_text("enqueue", batch),
            transaction=False,
        )

    def _enqueue_in(self, conn: Connection, batch: list[NewRun]) -> list[Enqueued]:
        """Insert in the caller's open transaction: never committed or rolled back here."""
        what = sql_runs.runs_text("enqueue", batch) + " in your transaction"
        _check_open_transaction(conn)
        self._db.ensure_schema(what)
        self._check_same_database(conn)
        if not batch:
            return []
        with self._db.translated(what):
            if any(new.debounce is not None for new in batch):
                return _debounce_enqueue(conn, self._db, batch, self._channel, binary=False)
            return _enqueue(conn, self._db, batch, self._channel, binary=False)

    async def aenqueue(self, runs: Sequence[NewRun], connection: Any) -> list[Enqueued]:
        """Insert in the caller's open transaction on a psycopg ``AsyncConnection``, with
        awaited statements on it (a synchronous connection goes to :meth:`enqueue` on a
        thread). runce's schema is checked once per process, on its own connection."""
        batch = list(runs)
        if not isinstance(connection, psycopg.AsyncConnection):
            return await asyncio.to_thread(self.enqueue, batch, connection)
        what = sql_runs.runs_text("enqueue", batch) + " in your transaction"
        _check_open_transaction(connection)
        if not self._db.current or self._dbname is None:
            await asyncio.to_thread(self._prepare_for_callers, what)
        self._check_database_name(connection.info.dbname)
        if not batch:
            return []
        if any(new.debounce is not None for new in batch):
            raise UnsupportedFeature(
                "a debounced job cannot be enqueued on an async connection=; "
                "enqueue it without connection= or on a synchronous connection"
            )
        with self._db.translated(what):
            return await _aenqueue(connection, self._db, batch, self._channel)

    def _prepare_for_callers(self, what: str) -> None:
        self._db.ensure_schema(what)
        self._dbname = self._db.plain(lambda mine: mine.info.dbname, what="check connection=")

    def claim(
        self, worker_id: str, kinds: Sequence[str] | None, limit: int, lease: float
    ) -> list[Run]:
        if limit <= 0:
            return []
        return self._claim(ClaimRequest(worker_id, kinds, limit, lease))

    def _claim(self, request: ClaimRequest) -> list[Run]:
        if request.limits:

            def limited(conn: Connection) -> list[Run]:
                return self._exchange_limited(conn, [], [], request)[2]

            return self._worker.run(limited, what="claim runs")
        statement = self._db.sql("claim_runs")

        def work(conn: Connection) -> list[Run]:
            return _claim_order(_runs(conn, statement, _claim_params(request)))

        return self._worker.run(work, what="claim runs")

    def exchange(
        self, outcomes: Sequence[Outcome], claim: ClaimRequest | None
    ) -> tuple[list[Landed | None], list[Run]]:
        done_with = list(outcomes)
        check_outcomes(done_with)
        if claim is not None and claim.limit <= 0:
            claim = None
        if not done_with:
            if claim is None:
                return [], []
            return [], self._claim(claim)
        if claim is None:
            return self.complete(done_with), []
        request = claim
        rounds = outcome_rounds(done_with)
        if request.limits:

            def limited(conn: Connection) -> tuple[list[Landed | None], list[Run]]:
                done, due, claimed = self._exchange_limited(conn, done_with, rounds, request)
                self._announce_requeued(conn, due)
                return done, claimed

            return self._worker.run(limited, what="acknowledge and claim runs")

        def work(conn: Connection) -> tuple[list[Landed | None], list[Run]]:
            if len(rounds) > 1:  # a run named twice: rare; one statement per round
                with conn.transaction():
                    done, due = _complete(conn, self._db, done_with, rounds)
                    claimed = _runs(conn, self._db.sql("claim_runs"), _claim_params(request))
            else:
                params = {**outcomes_params(done_with), **_claim_params(request)}
                with conn.cursor(row_factory=tuple_row, binary=True) as cursor:
                    cursor.execute(self._db.sql("exchange_runs"), params)
                    after, due, claimed = parts_from(cursor)
                done = [after.get(outcome.fence.run_id) for outcome in done_with]
            self._announce_requeued(conn, due)
            return done, _claim_order(claimed)

        return self._worker.run(work, what="acknowledge and claim runs")

    def _exchange_limited(
        self,
        conn: Connection,
        outcomes: list[Outcome],
        rounds: list[list[int]],
        request: ClaimRequest,
    ) -> tuple[list[Landed | None], set[str], list[Run]]:
        """Acknowledge ``outcomes`` and claim with flow-control limits: what landed, the
        kinds queued again due now, and the runs claimed.

        While no limit can bind (a kind's running runs plus the whole claim stay within its
        concurrency; no rate), this is one round trip, pipelined: ``BEGIN``, the outcomes,
        the kinds' locks, ``flow_claim_unbound``, ``COMMIT``. When a limit may bind, that
        claim takes nothing and the careful claim (:func:`_claim_limited`) follows in a
        transaction of its own, as do the next claims until one finds every limit unbound.
        """
        db = self._db
        done: list[Landed | None] = []
        due: set[str] = set()
        if self._flow_bound or len(rounds) > 1 or rated_kinds(request):
            with conn.transaction():
                if outcomes:
                    done, due = _complete(conn, db, outcomes, rounds)
                claimed, self._flow_bound = _claim_limited(conn, db, request)
            return done, due, claimed
        limited, _ = split_claim(request)
        kinds = sorted(limited)
        params = {
            **_claim_params(request),
            "limited": kinds,
            "caps": [limited[kind] for kind in kinds],
        }
        with (
            conn.cursor(row_factory=tuple_row, binary=True) as acknowledging,
            conn.cursor(row_factory=tuple_row, binary=True) as claiming,
        ):
            with conn.pipeline(), conn.transaction():
                if outcomes:
                    acknowledging.execute(db.sql("complete_runs"), outcomes_params(outcomes))
                conn.execute(db.sql("flow_locks"), {"keys": _lock_keys(db, kinds)})
                claiming.execute(db.sql("flow_claim_unbound"), params)
            if outcomes:
                landed, due = done_from(acknowledging)
                done = [landed.get(outcome.fence.run_id) for outcome in outcomes]
            claimed, bound = flow_claimed_from(claiming)
        if bound:
            with conn.transaction():
                claimed, self._flow_bound = _claim_limited(conn, db, request)
        return done, due, _claim_order(claimed)

    def heartbeat(self, fences: Sequence[Fence], lease: float) -> dict[str, Beat]:
        if not fences:
            return {}
        params = {**fences_params(fences), "lease": float(lease)}

        def work(conn: Connection) -> list[tuple[Any, ...]]:
            return conn.execute(self._db.sql("heartbeat_runs"), params).fetchall()

        rows = self._worker.run(work, what=f"extend the leases of {len(fences)} run(s)")
        current = {(row[0], row[1], row[2]): bool(row[3]) for row in rows}
        return sql_runs.beats_of(fences, current)

    def progress(self, fence: Fence, percent: int, message: str | None) -> bool:
        params: dict[str, Any] = {
            "run_id": fence.run_id,
            "attempt": fence.attempt,
            "worker_id": fence.worker_id,
            "percent": percent,
            "message": message,
        }
        changed = self._db.write(
            lambda conn: conn.execute(self._db.sql("progress_run"), params).rowcount,
            what=f"store the progress of run {fence.run_id}",
            transaction=False,
        )
        return changed == 1

    def complete(self, outcomes: Sequence[Outcome]) -> list[Landed | None]:
        batch = list(outcomes)
        check_outcomes(batch)
        if not batch:
            return []
        rounds = outcome_rounds(batch)

        def work(conn: Connection) -> list[Landed | None]:
            if len(rounds) > 1:
                with conn.transaction():
                    done, due = _complete(conn, self._db, batch, rounds)
            else:
                done, due = _complete(conn, self._db, batch, rounds)
            self._announce_requeued(conn, due)
            return done

        return self._worker.run(work, what=f"record the outcome of {len(batch)} run(s)")

    def succeed_in_transaction(
        self, fence: Fence, work: Callable[[Connection], str | None]
    ) -> Landed | None:
        def in_transaction(conn: Connection) -> Landed:
            result = work(conn)
            done, _ = _complete(conn, self._db, [Outcome(fence, "succeeded", result)], [[0]])
            if done[0] is None:
                raise sql_runs.FenceLost
            return done[0]

        what = f"run {fence.run_id} in a transaction"
        try:
            with (
                self._db.own_session(what) as conn,
                self._db.translated(what),
                conn.transaction(),
            ):
                return in_transaction(conn)
        except sql_runs.FenceLost:
            return None

    def cancel(self, run_id: str) -> Run | None:
        return self._change_or_get("cancel_run", {"run_id": run_id}, what=f"cancel run {run_id}")

    def retry(self, run_id: str, run_at: datetime | None = None) -> Run | None:
        params = {"run_id": run_id, "run_at": run_at, "channel": self._channel}
        return self._change_or_get("retry_run", params, what=f"retry run {run_id}")

    def reclaim(self) -> list[Run]:
        def work(conn: Connection) -> list[Run]:
            runs = _runs(conn, self._db.sql("reclaim_expired"), None)
            if any(run.state == "queued" for run in runs):
                _announce(conn, self._db, self._channel, "reclaimed")
            return runs

        return self._db.write(work, what="reclaim runs whose lease expired", transaction=False)

    def prune(
        self, succeeded_before: datetime, failed_before: datetime, limit: int | None = None
    ) -> int:
        params: dict[str, Any] = {
            "succeeded_before": succeeded_before,
            "failed_before": failed_before,
            "latest": max(succeeded_before, failed_before),
            "limit": limit,
        }
        name = "prune_runs" if limit is None else "prune_runs_batch"

        def work(conn: Connection) -> int:
            row = conn.execute(self._db.sql(name), params).fetchone()
            return int(row[0]) if row is not None else 0

        return self._db.write(work, what="prune finished runs", transaction=False)

    def worker_seen(self, info: WorkerInfo) -> None:
        params = sql_runs.worker_params(info, CODECS)

        def work(conn: Connection) -> None:
            conn.execute(self._db.sql("worker_seen"), params)

        self._db.write(work, what=f"record the heartbeat of worker {info.id}", transaction=False)

    def prune_workers(self, seen_before: datetime) -> int:
        params = {"seen_before": seen_before}

        def work(conn: Connection) -> int:
            row = conn.execute(self._db.sql("prune_workers"), params).fetchone()
            return int(row[0]) if row is not None else 0

        return self._db.write(work, what="prune the workers not heard from", transaction=False)

    # --- reads ------------------------------------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        def work(conn: Connection) -> Run | None:
            runs = _runs(conn, self._db.sql("get_run"), {"run_id": run_id})
            return runs[0] if runs else None

        return self._read(work, None, what=f"read run {run_id}")

    def page(self, filters: RunFilter, after: tuple[datetime, str] | None, limit: int) -> list[Run]:
        if limit <= 0:
            return []
        page = sql_runs.page_of(filters, after, limit, CODECS, _PAGE_FILTERS, _PAGE_AFTER)
        conditions = [sql.SQL(condition) for condition in page.conditions]
        where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true")
        statement = query_with(
            page.statement,
            self._db.target.schema,
            filters=where,
            direction=sql.SQL(page.direction),
        )

        def work(conn: Connection) -> list[Run]:
            return _runs(conn, statement, page.params)

        nothing: list[Run] = []
        return self._read(work, nothing, what="list runs")

    def flow_of(self, run_id: str) -> FlowCount | None:
        """The run's concurrency key and the runs of its (kind, key) running now."""
        statement = self._db.sql("flow_of")

        def work(conn: Connection) -> FlowCount | None:
            with conn.cursor(row_factory=tuple_row) as cursor:
                row = cursor.execute(statement, {"run_id": run_id}).fetchone()
            if row is None:
                return None
            return FlowCount(row[0], row[1], row[2], None if row[3] is None else utc(row[3]))

        return self._db.read(
            work, empty=None, what=f"read the flow control of run {run_id}", needs=FLOW_VERSION
        )

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        def work(conn: Connection) -> list[AttemptRecord]:
            rows = _rows(conn, self._db.sql("run_attempts"), {"run_id": run_id})
            return [sql_runs.attempt_record_from(row, CODECS) for row in rows]

        nothing: list[AttemptRecord] = []
        return self._read(work, nothing, what=f"read the attempts of run {run_id}")

    def workers(self, stopped: int = STOPPED_SHOWN) -> list[WorkerInfo]:
        params = {"stopped": max(stopped, 0)}

        def work(conn: Connection) -> list[WorkerInfo]:
            rows = _rows(conn, self._db.sql("workers"), params)
            return [sql_runs.worker_from(row, CODECS) for row in rows]

        nothing: list[WorkerInfo] = []
        return self._read(work, nothing, what="read the workers")

    def stats(self, since: datetime, cap: int = STATS_CAP) -> RunStats:
        return stats_of(self.run_counts(since, cap))

    def run_counts(self, since: datetime | None = None, cap: int = STATS_CAP) -> RunCounts:
        window = sql.SQL("now() - {} * interval '1 second'").format(sql.Literal(COUNT_WINDOW))
        moment = window if since is None else sql.Literal(since)
        statement = query_with(
            "run_counts", self._db.target.schema, since=moment, limit=sql.Literal(cap + 1)
        )

        def work(conn: Connection) -> RunCounts | None:
            with conn.transaction():
                # By index, each range read up to the cap and stopped, whatever the statistics
                # say (a bitmap would read every entry of a kind's range first, a scan the
                # table); and no JIT: the planner prices the statement for a hundred kinds of
                # thousands of runs and would compile it for longer than it runs (17 of 39 ms).
                conn.execute(COUNTS_SETTINGS)
                *groups, (_, _, _, _, clock) = conn.execute(statement).fetchall()
            now = utc(clock)
            queued = {kind: n for kind, state, n, _, _ in groups if state == "queued"}
            running = {kind: n for kind, state, n, _, _ in groups if state == "running"}
            finished = {(kind, state): n for kind, state, n, _, _ in groups if state in FINISHED}
            oldest = {kind: utc(due) for kind, _, _, due, _ in groups if due is not None}
            start = now - timedelta(seconds=COUNT_WINDOW) if since is None else since
            return counted(now, start, queued, running, finished, oldest, cap)

        found: RunCounts | None = self._read(work, None, what="count the runs")
        if found is not None:
            return found
        now = self.now()
        return counted(now, since or now - timedelta(seconds=COUNT_WINDOW), {}, {}, {}, {}, cap)

    def now(self) -> datetime:
        def work(conn: Connection) -> datetime:
            row = conn.execute(self._db.sql("clock")).fetchone()
            assert row is not None
            moment: datetime = utc(row[0])
            return moment

        return self._db.plain(work, what="read the clock")

    # --- waiting ----------------------------------------------------------------------------

    def wait_for_work(self, timeout: float) -> None:
        self._listener.wait(timeout)

    def close(self) -> None:
        self._listener.close()
        self._worker.close()

    # --- helpers ----------------------------------------------------------------------------

    def _read(self, work: Callable[[Connection], T], empty: T, *, what: str) -> T:
        """A read; ``empty`` while the schema has no runs tables yet (reads never migrate)."""
        return self._db.read(work, empty=empty, what=what, needs=RUNS_VERSION)

    def _change_or_get(self, name: str, params: dict[str, Any], *, what: str) -> Run | None:
        """Apply a single-run change; the run as it is after it (unchanged when not applicable)."""

        def work(conn: Connection) -> Run | None:
            runs = _runs(conn, self._db.sql(name), params)
            if not runs:
                runs = _runs(conn, self._db.sql("get_run"), {"run_id": params["run_id"]})
            return runs[0] if runs else None

        return self._db.write(work, what=what, transaction=False)

    def _announce_requeued(self, conn: Connection, kinds: set[str]) -> None:
        """Wake the workers when outcomes queued runs of these kinds again, due now."""
        for kind in sorted(kinds):
            _announce(conn, self._db, self._channel, kind)

    def _check_same_database(self, conn: Connection) -> None:
        if self._dbname is None:
            self._dbname = self._db.plain(lambda mine: mine.info.dbname, what="check connection=")
        self._check_database_name(conn.info.dbname)

    def _check_database_name(self, theirs: str) -> None:
        ours = self._dbname
        if theirs != ours:
            raise UsageError(
                f"connection= is a connection to database {theirs!r}, not to the PostgreSQL "
                f"store's database {ours!r} ({self._db.target.where}); a run inserted there "
                "would never be seen by runce's workers"
            )

    def start(self, run: NewRun, worker_id: str, lease: float) -> Run:
        if run.idempotency_key is not None:
            raise UsageError("a run started at once takes no idempotency key")
        params = {"run_id": run.id, "worker_id": worker_id, "lease": float(lease)}

        def work(conn: Connection) -> Run:
            _enqueue(conn, self._db, [run], self._channel)
            [started] = _runs(conn, self._db.sql("start_run"), params)
            return started

        return self._db.write(work, what=f"start run {run.id}")


# --- the work of one statement ----------------------------------------------------------------


def _runs(
    conn: Connection,
    statement: sql.Composed,
    params: dict[str, Any] | None,
    *,
    binary: bool = True,
) -> list[Run]:
    # Tuples whatever the connection's rows; binary results are quicker to load.
    with conn.cursor(row_factory=tuple_row, binary=binary) as cursor:
        cursor.execute(statement, params)
        return runs_from(cursor)


def _rows(conn: Connection, statement: sql.Composed, params: dict[str, Any] | None) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(statement, params).fetchall()


def _enqueue(
    conn: Connection, db: Database, batch: list[NewRun], channel: str, *, binary: bool = True
) -> list[Enqueued]:
    """Insert a batch. ``binary=False`` on a caller's connection: text results work with any
    cursor it makes, Django's client-side ones included (they cannot return binary)."""
    statement, params = _enqueue_statement(db, batch, channel)
    with conn.cursor(row_factory=tuple_row, binary=binary) as cursor:
        cursor.execute(statement, params)
        inserted = _inserted(cursor.fetchall())
    return _answers(conn, db, batch, inserted, binary=binary)


def _enqueue_one(conn: Connection, db: Database, new: NewRun, channel: str) -> list[Enqueued]:
    """:func:`_enqueue` of one run on the store's connection, as a statement prepared there
    and sent through libpq (:mod:`runce.stores.postgres.prepared`)."""
    params = new_run_params(new)
    params["channel"] = channel
    result = db.prepared.run(conn, "enqueue_run", params)
    inserted: dict[str, tuple[datetime, datetime]] = {}
    if result.ntuples:  # id, run_at, created_at, pg_notify
        inserted[new.id] = (timestamptz(result, 0, 1), timestamptz(result, 0, 2))
    return _answers(conn, db, [new], inserted)


def _answers(
    conn: Connection,
    db: Database,
    batch: list[NewRun],
    inserted: dict[str, tuple[datetime, datetime]],
    *,
    binary: bool = True,
) -> list[Enqueued]:
    """What an enqueue answers, the runs that met their idempotency keys read back."""
    keys = _keys_met(batch, inserted)
    existing: dict[str, Run] = {}
    if keys:
        found = _runs(conn, db.sql("runs_by_keys"), {"keys": keys}, binary=binary)
        existing = {run.idempotency_key or "": run for run in found}
    return enqueue_answers(batch, inserted, existing)


def _debounce_enqueue(
    conn: Connection, db: Database, batch: list[NewRun], channel: str, *, binary: bool = True
) -> list[Enqueued]:
    """A batch with debounced runs, in a transaction: each (kind, key) locked first (in
    order, so two batches never wait on each other), then merged or inserted."""
    locks = sorted({json.dumps([new.kind, new.concurrency_key]) for new in batch if new.debounce})
    with conn.cursor(row_factory=tuple_row) as cursor:
        cursor.execute(db.sql("debounce_lock"), {"locks": locks})
        row = cursor.fetchone()
        assert row is not None
        now = utc(row[0])

    def merge(new: NewRun, at: datetime) -> Run | None:
        params = {"input": new.input_json, "run_at": at, "kind": new.kind}
        params["key"] = new.concurrency_key
        found = _runs(conn, db.sql("debounce_run"), params, binary=binary)
        return found[0] if found else None

    def insert(runs: list[NewRun]) -> list[Enqueued]:
        return _enqueue(conn, db, runs, channel, binary=binary)

    return enqueue_debounced(batch, now, merge, insert)


def _copy_enqueue(
    conn: Connection, db: Database, batch: list[NewRun], channel: str
) -> list[Enqueued]:
    """Insert a batch with no idempotency key by ``COPY`` in the transaction ``write`` opened:
    no key means no conflict to answer, so nothing needs to come back but the clock. The
    rows are formatted by psycopg's C code, not bound as arrays. The answers are built
    before the COPY ends, while the server still works through the rows sent."""
    kinds = sorted({new.kind for new in batch})
    with conn.cursor(row_factory=tuple_row) as cursor:
        cursor.execute(db.sql("enqueue_copy_begin"), {"channel": channel, "kinds": kinds})
        row = cursor.fetchone()
        assert row is not None
        now: datetime = row[0]
        with cursor.copy(db.sql("enqueue_copy_runs")) as copy:
            write = copy.write_row
            for new in batch:
                write(
                    (
                        new.id,
                        new.kind,
                        new.input_json,
                        "queued",
                        new.max_attempts,
                        new.priority,
                        new.run_at or now,
                        now,
                        now,
                        new.project_id,
                        new.correlation_id,
                        None if new.trace_context is None else json.dumps(new.trace_context),
                        new.concurrency_key,
                    )
                )
            at = utc(now)
            inserted = {new.id: (at if new.run_at is None else new.run_at, at) for new in batch}
            answers = enqueue_answers(batch, inserted, {})
    return answers


async def _aenqueue(
    conn: psycopg.AsyncConnection[Any], db: Database, batch: list[NewRun], channel: str
) -> list[Enqueued]:
    """:func:`_enqueue` on an async connection: the same statements, awaited."""
    statement, params = _enqueue_statement(db, batch, channel)
    async with conn.cursor(row_factory=tuple_row) as cursor:
        await cursor.execute(statement, params)
        inserted = _inserted(await cursor.fetchall())
    keys = _keys_met(batch, inserted)
    existing: dict[str, Run] = {}
    if keys:
        async with conn.cursor(row_factory=tuple_row) as cursor:
            await cursor.execute(db.sql("runs_by_keys"), {"keys": keys})
            found = fetched_runs(cursor, await cursor.fetchall())
        existing = {run.idempotency_key or "": run for run in found}
    return enqueue_answers(batch, inserted, existing)


def _enqueue_statement(
    db: Database, batch: list[NewRun], channel: str
) -> tuple[sql.Composed, dict[str, Any]]:
    if len(batch) == 1:
        statement, params = db.sql("enqueue_run"), new_run_params(batch[0])
    else:
        statement, params = db.sql("enqueue_runs"), new_runs_params(batch)
    params["channel"] = channel
    return statement, params


def _inserted(rows: list[tuple[Any, ...]]) -> dict[str, tuple[datetime, datetime]]:
    """id -> (run_at, created_at) of the runs inserted."""
    in_utc: dict[datetime, datetime] = {}  # a batch shares its times: convert each once

    def as_utc(moment: datetime) -> datetime:
        return in_utc.get(moment) or in_utc.setdefault(moment, utc(moment))

    return {row[0]: (as_utc(row[1]), as_utc(row[2])) for row in rows}


def _keys_met(batch: list[NewRun], inserted: dict[str, Any]) -> list[str]:
    """The idempotency keys of the runs not inserted: they met an existing run."""
    return [new.idempotency_key for new in batch if new.id not in inserted and new.idempotency_key]


def _claim_params(request: ClaimRequest) -> dict[str, Any]:
    return {
        "worker_id": request.worker_id,
        "claim_kinds": list(request.kinds) if request.kinds else None,
        "limit": request.limit,
        "lease": float(request.lease),
    }


def _lock_keys(db: Database, kinds: list[str]) -> list[str]:
    """The names of the sorted kinds' flow-control locks (``flow_locks``)."""
    schema = db.target.schema
    return [f"{schema}.{kind}" for kind in kinds]


def _claim_limited(conn: Connection, db: Database, request: ClaimRequest) -> tuple[list[Run], bool]:
    """A claim of kinds with flow-control limits, in the caller's transaction: the kinds'
    locks are taken first, so no other claimer counts them until this one commits. Then
    the unlimited kinds, the plain way, with what is left of the limit. Also whether a
    limit may have bound (a kind stayed limited: its count was near its concurrency, or it
    has a rate)."""
    limited, unlimited = split_claim(request)
    kinds = sorted(limited)
    with conn.cursor(row_factory=tuple_row) as cursor:
        cursor.execute(db.sql("flow_locks"), {"keys": _lock_keys(db, kinds)})
        cursor.execute(db.sql("flow_running"), {"kinds": kinds})
        running = {(kind, key): count for kind, key, count in cursor.fetchall()}
        rated = rated_kinds(request)
        unbound(limited, unlimited, running, rated, limited_want(request))
        candidates: list[Candidate] = []
        if limited:
            most = min(max(limited.values()), request.limit)
            cursor.execute(db.sql("flow_candidates"), {"kinds": sorted(limited), "most": most})
            candidates = cursor.fetchall()
        room, buckets = None, {}
        if rated:
            clock = cursor.execute(db.sql("flow_now")).fetchone()
            assert clock is not None
            now = clock[0]
            cursor.execute(db.sql("flow_buckets"), {"kinds": sorted(rated)})
            buckets = {
                (kind, key or None): Bucket(tokens, at)
                for kind, key, tokens, at in cursor.fetchall()
            }
            room = rate_room(rated, buckets, now)
    ids = pick_limited(candidates, running, limited, limited_want(request), room)
    claimed: list[Run] = []
    if ids:
        params = {"worker_id": request.worker_id, "ids": ids, "lease": float(request.lease)}
        claimed = _runs(conn, db.sql("flow_claim"), params)
        if rated:
            spent = spent_buckets(rated, buckets, started_groups(candidates, ids), now)
            with conn.cursor() as cursor:
                cursor.executemany(
                    db.sql("flow_bucket_put"),
                    [
                        {"kind": kind, "key": key or "", "tokens": b.tokens, "at": now}
                        for (kind, key), b in spent.items()
                    ],
                )
    rest = request.limit - len(claimed)
    if unlimited and rest > 0:
        plain = ClaimRequest(request.worker_id, unlimited, rest, request.lease)
        claimed += _runs(conn, db.sql("claim_runs"), _claim_params(plain))
    return _claim_order(claimed), bool(limited)


def _claim_order(runs: list[Run]) -> list[Run]:
    # RETURNING gives no order: put the runs back in the order they were claimed in.
    runs.sort(key=lambda run: (-run.priority, run.run_at, run.id))
    return runs


def _complete(
    conn: Connection, db: Database, outcomes: list[Outcome], rounds: list[list[int]]
) -> tuple[list[Landed | None], set[str]]:
    """Apply outcomes, a statement per round; what landed, and the kinds queued again due now."""
    done: list[Landed | None] = [None] * len(outcomes)
    due: set[str] = set()
    for positions in rounds:
        batch = [outcomes[i] for i in positions]
        with conn.cursor(row_factory=tuple_row, binary=True) as cursor:
            cursor.execute(db.sql("complete_runs"), outcomes_params(batch))
            after, requeued = done_from(cursor)
        due |= requeued
        for i in positions:
            done[i] = after.get(outcomes[i].fence.run_id)
    return done, due


def _announce(conn: Connection, db: Database, channel: str, payload: str) -> None:
    conn.execute(db.sql("announce"), {"channel": channel, "payload": payload})


# --- the caller's connection ------------------------------------------------------------------


def _callers_connection(connection: Any) -> Connection:
    if not isinstance(connection, psycopg.Connection):
        kind = f"{type(connection).__module__}.{type(connection).__qualname__}"
        hint = (
            "an async connection cannot be used from this synchronous call; "
            if isinstance(connection, psycopg.AsyncConnection)
            else "with SQLAlchemy, pass the DBAPI connection underneath, e.g. "
            "conn.connection.dbapi_connection; "
        )
        raise UsageError(
            "the PostgreSQL store enqueues in your transaction through a psycopg (3) "
            f"Connection, not {kind} ({hint}psycopg2 connections are not supported)"
        )
    return connection


def _check_open_transaction(conn: Connection | psycopg.AsyncConnection[Any]) -> None:
    """The insert must land in a transaction of the caller's, to commit or roll back with it.

    A connection outside autocommit mode opens one on its first statement (psycopg's
    default), which the caller then commits; an autocommit connection has one only inside
    ``with conn.transaction():`` (or after ``BEGIN``).
    """
    if conn.closed:
        raise UsageError("connection= is closed")
    status = conn.info.transaction_status
    if status == psycopg.pq.TransactionStatus.INERROR:
        raise UsageError(
            "connection= is in a failed transaction (an earlier statement failed); roll it "
            "back first"
        )
    if conn.autocommit and status == psycopg.pq.TransactionStatus.IDLE:
        raise UsageError(
            "connection= needs an open transaction to enqueue in (the run is to exist only if "
            "your transaction commits), but this connection is in autocommit mode with no "
            "transaction open; enqueue inside `with conn.transaction():`"
        )


# --- connections of the queue's own -----------------------------------------------------------


class _WorkerSession:
    """The worker's hot path: one connection, one statement at a time, custom plans only."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: Connection | None = None
        self._guard = threading.Lock()
        self._pid = os.getpid()
        self._closing = False

    def run(self, work: Callable[[Connection], T], *, what: str) -> T:
        self._db.ensure_schema(what)
        with self._guard:
            conn = self._connection(what)
            try:
                with self._db.translated(what):
                    return work(conn)
            finally:
                if conn.broken or conn.closed or self._closing:
                    self._drop()
                    self._closing = False

    def close(self) -> None:
        # Never waits for a call in flight (a server that never answers would hold a worker
        # stopping without it here): the call drops the connection on its way out.
        if not self._guard.acquire(blocking=False):
            self._closing = True
            return
        try:
            self._drop()
        finally:
            self._guard.release()

    def _connection(self, what: str) -> Connection:
        if self._pid != os.getpid():  # a forked child: never use the parent's socket
            self._conn, self._pid = None, os.getpid()
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        conn = self._db.connect(role="worker")
        try:
            with self._db.translated(what):
                conn.execute(self._db.sql("worker_session"))
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _drop(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None


class _Listener:
    """``LISTEN`` on the schema's channel, on a connection of its own opened on first use.

    A notification that arrives while nobody waits stays on the connection, so the next
    wait returns at once: none is slept through. When the connection drops, the wait
    returns early (what it missed may be due) and the next one listens again; while the
    server cannot be reached, each wait sleeps its timeout instead of raising.
    """

    def __init__(self, db: Database, channel: str) -> None:
        self._db = db
        self._channel = channel
        self._conn: Connection | None = None
        self._guard = threading.Lock()  # one waiter at a time
        self._closing = threading.Event()
        self._listened = False  # a LISTEN connection was open before: reopening may miss news
        self._pid = os.getpid()

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 0.0)
        if not self._guard.acquire(timeout=max(timeout, 0.0)):
            return  # another thread waited all this time
        try:
            if self._closing.is_set():
                return
            conn = self._current()
            if conn is None:
                reopened = self._listened
                try:
                    conn = self._open()
                except (StoreError, psycopg.Error):
                    self._closing.wait(max(deadline - time.monotonic(), 0.0))
                    return
                if reopened:
                    return  # news sent while nobody listened would be lost: look now
            try:
                remaining = max(deadline - time.monotonic(), 0.0)
                for _ in conn.notifies(timeout=remaining, stop_after=1):
                    break
            except psycopg.Error:
                self._drop()
        finally:
            if self._closing.is_set():
                self._drop()
            self._guard.release()

    def close(self) -> None:
        self._closing.set()
        if self._guard.acquire(blocking=False):  # else the waiter closes it on its way out
            try:
                self._drop()
            finally:
                self._guard.release()

    def _current(self) -> Connection | None:
        if self._pid != os.getpid():
            self._conn, self._pid, self._listened = None, os.getpid(), False
        conn = self._conn
        return conn if conn is not None and not conn.closed and not conn.broken else None

    def _open(self) -> Connection:
        conn = self._db.connect(role="listen")
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except psycopg.Error as exc:
            conn.close()
            raise translate(exc, "listen for new runs", self._db.target) from exc
        self._conn = conn
        self._listened = True
        return conn

    def _drop(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None
