"""The run-queue contract: durable background jobs ("runs") in the domain's words (see
docs/runs.md). The runs themselves and their state machine are records of
:mod:`runce.domain.runs`; this module holds the contract a store keeps them by, and the
helpers its backends share.

Rules every backend keeps (the contract suite in ``tests/stores/test_queue_contract.py``):

* ``claim`` is atomic: no run is handed to two claims, whatever the concurrency.
* Every write about a claimed run is *fenced*: conditional on the run still being
  ``running`` with the :class:`Fence`'s attempt and worker. A worker that lost its lease
  (reclaimed, cancelled, handed back) writes nothing and is told so.
* Times come from the store's clock (the database's ``now()`` where there is one).
* An attempt that did not succeed leaves an :class:`AttemptRecord`; a successful one is
  described by the run row itself, so the hot path writes one row per run.
* The hot path reads back little: an enqueue answers with what only the store knows (its
  clock, whether a key existed) and :func:`enqueue_answers` builds the rest from the
  :class:`NewRun`; an acknowledgement answers with a :class:`Landed` per outcome, from
  which :func:`run_after` rebuilds the run exactly as stored, for whoever wants it.
* Driver errors become :class:`~runce.errors.StoreError` subclasses with ``__cause__`` kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from runce.domain.runs import (
    ACTIVE,
    FINISHED,
    STATS_CAP,
    STOPPED_SHOWN,
    AttemptRecord,
    Beat,
    ClaimRequest,
    Enqueued,
    Fence,
    KindLimit,
    Landed,
    NewRun,
    Outcome,
    Run,
    RunCounts,
    RunFilter,
    RunStats,
    WorkerInfo,
    readable,
)
from runce.errors import StoreError, UsageError

_decode_json = json.JSONDecoder().decode


def outcome_rounds(outcomes: Sequence[Outcome]) -> list[list[int]]:
    """Positions of outcomes in rounds where each run id appears once, in order.

    A batch names each run once in practice (one round, one statement). Should a run appear
    twice, its second outcome is applied after the first, as if sent in a later call.
    """
    if len({outcome.fence.run_id for outcome in outcomes}) == len(outcomes):
        return [list(range(len(outcomes)))]
    rounds: list[list[int]] = []
    seen: dict[str, int] = {}
    for i, outcome in enumerate(outcomes):
        n = seen.get(outcome.fence.run_id, 0)
        seen[outcome.fence.run_id] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(i)
    return rounds


def run_from_row(
    values: Sequence[Any],
    when: Callable[[Any], datetime],
    decode: Callable[[Any], Any],
    traces: Callable[[Any], dict[str, str] | None] | None = None,
) -> Run:
    """A run from a row's 25 columns in :class:`Run`'s order (the runs tables' too). Each
    store says how it reads a time (``when``) and a JSON value (``decode``), and may read
    trace contexts its own way (``traces``, as :func:`trace_contexts` makes); a claim or an
    acknowledgement maps every run it touches, so this is on the hot path."""
    (
        id_,
        kind,
        input_,
        state,
        attempt,
        max_attempts,
        priority,
        run_at,
        created_at,
        updated_at,
        project_id,
        idempotency_key,
        correlation_id,
        result,
        output_ref,
        error,
        claimed_by,
        claimed_at,
        lease_expires_at,
        started_at,
        finished_at,
        progress,
        progress_message,
        cancel_requested,
        trace_context,
    ) = values
    try:
        value = decode(input_)
    except (ValueError, TypeError, RecursionError):  # written around runce: show, never stop
        value = readable(decode, input_)
    if trace_context is not None and traces is not None:
        trace_context = traces(trace_context)
    elif trace_context is not None:
        trace_context = _trace_context_read(decode, trace_context)
    if type(attempt) is not int or type(max_attempts) is not int or type(priority) is not int:
        attempt, max_attempts, priority = (
            whole(attempt, 0),
            whole(max_attempts, 1),
            whole(priority, 0),
        )
    return Run(
        id_,
        kind,
        value,
        state,
        attempt,
        max_attempts,
        priority,
        when(run_at),
        when(created_at),
        when(updated_at),
        project_id,
        idempotency_key,
        correlation_id,
        None if result is None else readable(decode, result),
        output_ref,
        error,
        claimed_by,
        None if claimed_at is None else when(claimed_at),
        None if lease_expires_at is None else when(lease_expires_at),
        None if started_at is None else when(started_at),
        None if finished_at is None else when(finished_at),
        progress,
        progress_message,
        bool(cancel_requested),
        trace_context,
    )


def whole(value: Any, default: int) -> int:
    """A run's count or priority as it carries it: one written around runce that is not a
    whole number (hand-edited text in SQLite, a string in MongoDB) reads as ``default``, so
    that the run is listed, sorted and claimed like the others."""
    if type(value) is int:
        return value
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return default


def trace_context_of(value: Any) -> dict[str, str] | None:
    """A stored trace context as a run carries it: a table of texts, or None for anything
    else. One written around runce (not a table) must not stop its run from being read,
    listed or claimed: its trace is lost, nothing more (a text that is not a W3C trace
    context is passed over where it is used)."""
    if not isinstance(value, dict):
        return None
    for key, text in value.items():
        if type(key) is not str or type(text) is not str:
            return {str(k): str(v) for k, v in value.items()}
    return value


def trace_contexts(decode: Callable[[Any], Any]) -> Callable[[Any], dict[str, str] | None]:
    """Stored trace contexts read as :func:`run_from_row` reads them, the one last read
    decoded once: the runs of one enqueue share it (each run still gets a table of its own)."""
    last: list[Any] = [None, None]  # the stored value, what it reads as

    def read(raw: Any) -> dict[str, str] | None:
        if raw != last[0]:
            last[:] = raw, _trace_context_read(decode, raw)
        found = last[1]
        return None if found is None else dict(found)

    return read


def _trace_context_read(decode: Callable[[Any], Any], raw: Any) -> dict[str, str] | None:
    try:
        return trace_context_of(decode(raw))
    except (ValueError, TypeError, RecursionError):  # written around runce: its trace is lost
        return None


def enqueue_debounced(
    batch: Sequence[NewRun],
    now: datetime,
    merge: Callable[[NewRun, datetime], Run | None],
    insert: Callable[[list[NewRun]], list[Enqueued]],
) -> list[Enqueued]:
    """An enqueue with debounced runs (``NewRun.debounce``), in the store's transaction (or
    under its lock): each merges into its key's queued run not yet started (``merge`` moves
    that run's ``run_at`` and replaces its input, or finds none), else is inserted starting
    ``debounce`` seconds from ``now``. The other runs are inserted as ever."""
    if all(new.debounce is None for new in batch):
        return insert(list(batch))
    answers: list[Enqueued | None] = [None] * len(batch)
    plain = [i for i, new in enumerate(batch) if new.debounce is None]
    for i, new in enumerate(batch):
        if new.debounce is None:
            continue
        at = now + timedelta(seconds=new.debounce)
        merged = merge(new, at)
        if merged is not None:
            answers[i] = Enqueued(merged, created=False)
        else:
            answers[i] = insert([new._replace(run_at=at)])[0]
    if plain:
        for i, result in zip(plain, insert([batch[i] for i in plain]), strict=True):
            answers[i] = result
    return [answer for answer in answers if answer is not None]


def enqueue_answers(
    batch: Sequence[NewRun],
    inserted: Mapping[str, tuple[datetime, datetime]],
    existing: Mapping[str, Run],
) -> list[Enqueued]:
    """What an enqueue answers, in the batch's order, from what only the store knows.

    ``inserted`` maps the id of each run inserted to its stored ``run_at`` (``now`` if none
    was given) and the store's ``now``; such a run is built from what was sent (so the store
    need not send the row back), its input the canonical JSON decoded, a batch's in one go.
    A run not inserted is the one in ``existing`` holding its idempotency key."""
    if len(batch) == 1:
        inputs = [_decode_json(batch[0].input_json)]
    else:
        inputs = _decode_json("[" + ",".join(new.input_json for new in batch) + "]")
    answers: list[Enqueued] = []
    for new, value in zip(batch, inputs, strict=True):
        times = inserted.get(new.id)
        if times is None:
            run = existing.get(new.idempotency_key or "")
            if run is None:  # not inserted and no run has its key: pruned in between
                raise StoreError(
                    f"run {new.id} was neither inserted nor found by its idempotency key "
                    f"{new.idempotency_key!r} (was it pruned meanwhile?); enqueue it again"
                )
            answers.append(Enqueued(run, created=False))
            continue
        run_at, now = times
        queued = Run(
            new.id,
            new.kind,
            value,
            "queued",
            0,
            new.max_attempts,
            new.priority,
            run_at,
            now,
            now,
            new.project_id,
            new.idempotency_key,
            new.correlation_id,
            trace_context=new.trace_context,
        )
        answers.append(Enqueued(queued, created=True))
    return answers


def counted(
    now: datetime,
    since: datetime,
    queued: Mapping[str, int],
    running: Mapping[str, int],
    finished: Mapping[tuple[str, str], int],
    oldest_due: Mapping[str, datetime],
    cap: int,
) -> RunCounts:
    """A :class:`RunCounts` from what a store's bounded reads found: per kind its queued
    runs (up to ``cap + 1`` read per kind), its running runs and per ``(kind, state)`` its
    runs finished since ``since`` (up to ``cap + 1`` read in all, each), and per kind its
    oldest due queued run. One more than ``cap`` tells a read was cut off: that state is
    then capped and its counts are cut to ``cap``, lower bounds."""
    counts: dict[tuple[str, str], int] = {}
    capped: set[str] = set()
    for kind, n in queued.items():
        if n > cap:
            capped.add("queued")
        if n > 0:
            counts[kind, "queued"] = min(n, cap)
    if _cut({(kind, "running"): n for kind, n in running.items()}, cap, counts):
        capped.add("running")
    if _cut(finished, cap, counts):
        capped.update(FINISHED)
    return RunCounts(counts, dict(oldest_due), now, since, frozenset(capped))


def _cut(read: Mapping[tuple[str, str], int], cap: int, into: dict[tuple[str, str], int]) -> bool:
    """Add ``read``'s counts to ``into``, taken down to ``cap`` in all (from the largest);
    whether they had to be."""
    left = {pair: n for pair, n in read.items() if n > 0}
    excess = sum(left.values()) - cap
    for pair in sorted(left, key=lambda p: (-left[p], p)):
        taken = min(max(excess, 0), left[pair])
        excess -= taken
        if left[pair] > taken:
            into[pair] = left[pair] - taken
    return sum(left.values()) > cap


def stats_of(counts: RunCounts) -> RunStats:
    """The dashboard's :class:`RunStats`: the same counts, keyed by ``(state, kind)``, with
    the run due the longest of all kinds."""
    active = {(state, kind): n for (kind, state), n in counts.counts.items() if state in ACTIVE}
    finished = {(state, kind): n for (kind, state), n in counts.counts.items() if state in FINISHED}
    oldest = min(counts.oldest_due.values(), default=None)
    return RunStats(counts.now, counts.since, active, finished, counts.capped, oldest)


def shown_workers(workers: Iterable[WorkerInfo], stopped: int) -> list[WorkerInfo]:
    """What :meth:`RunQueue.workers` answers, from every worker known (for queues that hold
    them in memory or receive them whole): the ones not stopped, and the ``stopped``
    stopped ones seen last, by ``started_at`` and id."""
    everyone = list(workers)
    ended = sorted(
        (w for w in everyone if w.state == "stopped"),
        key=lambda w: (w.last_seen, w.id),
        reverse=True,
    )[: max(stopped, 0)]
    shown = [w for w in everyone if w.state != "stopped"] + ended
    return sorted(shown, key=lambda w: (w.started_at, w.id))


@runtime_checkable
class RunQueue(Protocol):
    """Durable runs: enqueue, claim, heartbeat, complete, and the reads and upkeep around them.

    A queue may also name ``claim_batch``: how many runs a worker should claim in one call
    (and hold ahead for quick jobs); workers take 100 from a queue that names none.
    """

    def enqueue(self, runs: Sequence[NewRun], connection: Any = None) -> list[Enqueued]:
        """Insert runs; a run whose idempotency key exists returns the existing run instead,
        and a debounced run (``NewRun.debounce``) merges into its key's queued run not yet
        started when there is one (:func:`enqueue_debounced`), atomically.

        With ``connection`` (the caller's open transaction on the same database), the
        inserts happen in it and nothing is committed here. Results follow ``runs``' order.
        """

    def claim(
        self, worker_id: str, kinds: Sequence[str] | None, limit: int, lease: float
    ) -> list[Run]:
        """Atomically take up to ``limit`` due runs (queued, ``run_at`` <= now), highest
        priority first, then ``run_at``, then id; each becomes running with attempt + 1,
        ``claimed_by = worker_id`` and a lease of ``lease`` seconds."""

    def exchange(
        self, outcomes: Sequence[Outcome], claim: ClaimRequest | None
    ) -> tuple[list[Landed | None], list[Run]]:
        """:meth:`complete` then :meth:`claim`, in one transaction where the store has them:
        a busy worker's whole round trip. Either part may be empty."""

    def heartbeat(self, fences: Sequence[Fence], lease: float) -> dict[str, Beat]:
        """Extend the leases of current claims; per run id: ``ok``, ``cancel`` (a cancel was
        asked: stop cooperatively) or ``lost`` (the claim is no longer current)."""

    def progress(self, fence: Fence, percent: int, message: str | None) -> bool:
        """Store a running run's progress (0-100); False when the claim is lost."""

    def complete(self, outcomes: Sequence[Outcome]) -> list[Landed | None]:
        """Apply outcomes in one go; per outcome a :class:`Landed` (:func:`run_after` gives
        the run as written), or None where the fence no longer held (nothing written)."""

    def cancel(self, run_id: str) -> Run | None:
        """Queued: canceled at once. Running: ``cancel_requested`` set. Returns the run as it
        is after the call (unchanged when its state allows neither); None when unknown."""

    def retry(self, run_id: str, run_at: datetime | None = None) -> Run | None:
        """A failed or canceled run back to queued, with one more attempt allowed.
        Returns the run after the call (unchanged in any other state); None when unknown."""

    def reclaim(self) -> list[Run]:
        """Runs whose lease expired: back to queued (the attempt is spent) or failed when no
        attempts are left. Returns the runs as they are now."""

    def get(self, run_id: str) -> Run | None: ...

    def page(self, filters: RunFilter, after: tuple[datetime, str] | None, limit: int) -> list[Run]:
        """Newest first by (created_at, id), or oldest first when ``filters.order`` is
        ``"oldest"``; ``after`` is the last (created_at, id) already seen, for keyset
        pagination that stays stable while runs are inserted."""

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        """The attempts that did not succeed, oldest first."""

    def prune(
        self, succeeded_before: datetime, failed_before: datetime, limit: int | None = None
    ) -> int:
        """Delete finished runs (and their attempts): succeeded ones finished before the
        first time, failed and canceled ones before the second. Returns how many. With
        ``limit``, one batch: at most that many, the longest finished first, in one short
        transaction (callers loop until a batch comes back short)."""

    def wait_for_work(self, timeout: float) -> None:
        """Return when new work may be due (an enqueue, a retry) or after ``timeout``."""

    def worker_seen(self, info: WorkerInfo) -> None:
        """Record a worker's heartbeat (insert or update by id)."""

    def workers(self, stopped: int = STOPPED_SHOWN) -> list[WorkerInfo]:
        """Every worker not stopped (running or stopping: live, or stale when killed without
        a word) and the ``stopped`` stopped ones seen last, by ``started_at`` and id; never
        every worker that ever ran (each ``runce worker --drain`` is one more)."""

    def prune_workers(self, seen_before: datetime) -> int:
        """Delete the workers last seen before ``seen_before``, whatever their state (one
        that heartbeats again is recorded anew); returns how many."""

    def stats(self, since: datetime, cap: int = STATS_CAP) -> RunStats:
        """Counts for an overview: :meth:`run_counts` as :class:`RunStats`
        (:func:`stats_of`)."""

    def now(self) -> datetime:
        """The store's clock."""

    def run_counts(self, since: datetime | None = None, cap: int = STATS_CAP) -> RunCounts:
        """Runs per kind and state and the oldest due queued run per kind, by bounded index
        reads (never a count over the whole table, no run is loaded): see
        :class:`RunCounts`. Finished runs are those finished at or after ``since`` (by
        default :data:`COUNT_WINDOW` seconds before the store's clock). The metrics of
        ``runce serve`` and the dashboard's overview are made of it."""

    def start(self, run: NewRun, worker_id: str, lease: float) -> Run:
        """Insert ``run`` already running: attempt 1, claimed by ``worker_id`` under a lease of
        ``lease`` seconds, as if claimed the moment it was enqueued (a job called in-process
        with ``.now()``). No other claim ever sees it queued. ``run`` has no idempotency key."""


@runtime_checkable
class TransactionalRunQueue(Protocol):
    """A queue on a SQL database (SQLite, PostgreSQL) that records a run's success in the
    transaction of the run's own work: transactional jobs need it."""

    def succeed_in_transaction(
        self, fence: Fence, work: Callable[[Any], str | None]
    ) -> Landed | None:
        """Open a transaction on the store's database, call ``work(connection)`` in it, then
        record the run succeeded (``work``'s return is its result as JSON text) in that same
        transaction and commit both. When the fence no longer holds, everything rolls back
        and None is returned; when ``work`` raises, everything rolls back and it propagates."""


# --- flow control: what the stores' limited claims share ---------------------------------


# Most candidates of one (kind, key) a limited claim reads: no key takes more at once.
MAX_CONCURRENCY = 10_000


def split_claim(request: ClaimRequest) -> tuple[dict[str, int], list[str]]:
    """The limited kinds of a claim (kind to concurrency; a kind limited by rate alone gets
    :data:`MAX_CONCURRENCY`) and its unlimited kinds."""
    if request.kinds is None:
        raise UsageError("a claim with flow-control limits must name its kinds")
    limited = {limit.kind: limit.concurrency or MAX_CONCURRENCY for limit in request.limits}
    return limited, [kind for kind in request.kinds if kind not in limited]


Candidate = tuple[str, str, str | None]  # a due queued run: id, kind, concurrency key
Group = tuple[str, str | None]  # (kind, concurrency key): what limits count


@dataclass(frozen=True, slots=True)
class Bucket:
    """A (kind, key)'s rate limit as stored: the starts it had left at ``at``."""

    tokens: float
    at: datetime


def rated_kinds(request: ClaimRequest) -> dict[str, KindLimit]:
    return {limit.kind: limit for limit in request.limits if limit.rate is not None}


def _tokens(limit: KindLimit, bucket: Bucket | None, now: datetime) -> float:
    rate, per = limit.rate or 0, limit.per or 1.0
    if bucket is None:
        return float(rate)  # a bucket starts full: the burst
    elapsed = max(0.0, (now - bucket.at).total_seconds())
    return min(float(rate), bucket.tokens + elapsed * rate / per)


def rate_room(
    rated: Mapping[str, KindLimit], buckets: Mapping[Group, Bucket], now: datetime
) -> Callable[[Group], int]:
    """How many runs of a (kind, key) may start now by its kind's rate (a kind without one:
    no limit)."""

    def room(group: Group) -> int:
        limit = rated.get(group[0])
        if limit is None:
            return MAX_CONCURRENCY
        return int(_tokens(limit, buckets.get(group), now) + 1e-9)

    return room


def spent_buckets(
    rated: Mapping[str, KindLimit],
    buckets: Mapping[Group, Bucket],
    started: Mapping[Group, int],
    now: datetime,
) -> dict[Group, Bucket]:
    """The buckets to store after ``started`` runs started per (kind, key) at ``now``."""
    spent: dict[Group, Bucket] = {}
    for group, count in started.items():
        limit = rated.get(group[0])
        if limit is not None and count:
            left = _tokens(limit, buckets.get(group), now) - count
            spent[group] = Bucket(max(0.0, left), now)
    return spent


def unbound(
    limited: dict[str, int],
    unlimited: list[str],
    running: Mapping[Group, int],
    rated: Mapping[str, KindLimit],
    want: int,
) -> None:
    """Move to ``unlimited`` the kinds whose limit this claim cannot reach (its running runs
    of every key together, plus every run it may take, stay within it; no rate): they are
    claimed the plain way, in claim order, at the plain path's cost."""
    totals: dict[str, int] = {}
    for (kind, _key), count in running.items():
        totals[kind] = totals.get(kind, 0) + count
    for kind, concurrency in list(limited.items()):
        if kind not in rated and totals.get(kind, 0) + want <= concurrency:
            del limited[kind]
            unlimited.append(kind)


def pick_limited(
    candidates: Sequence[Candidate],
    running: Mapping[Group, int],
    limited: Mapping[str, int],
    want: int,
    room: Callable[[Group], int] | None = None,
) -> list[str]:
    """The ids a limited claim takes: ``candidates`` in claim order (priority desc, run_at,
    id), ``running`` the runs of each (kind, key) running under a live lease, ``room`` how
    many of a (kind, key) its rate lets start now. Kinds and keys are served in turn: the
    kinds take one run each in turn, and within a kind every key's first due run comes
    before any key's second, and so on."""
    rank: dict[Group, int] = {}
    free: dict[Group, int] = {}
    ranked: dict[str, list[tuple[int, int, str]]] = {}
    for position, (run_id, kind, key) in enumerate(candidates):
        group = (kind, key)
        allowed = free.get(group)
        if allowed is None:
            allowed = limited.get(kind, 0) - running.get(group, 0)
            if room is not None and allowed > 0:
                allowed = min(allowed, room(group))
            free[group] = allowed
        seen = rank.get(group, 0)
        if seen >= allowed:
            continue
        rank[group] = seen + 1
        ranked.setdefault(kind, []).append((seen, position, run_id))
    turns: list[tuple[int, int, str]] = []
    for picks in ranked.values():
        picks.sort()
        first = picks[0][1]  # a kind whose first due run comes first goes first each turn
        turns += [(turn, first, run_id) for turn, (_, _, run_id) in enumerate(picks)]
    turns.sort()
    return [run_id for _, _, run_id in turns[:want]]


def started_groups(candidates: Sequence[Candidate], ids: Sequence[str]) -> dict[Group, int]:
    """How many of ``ids`` each (kind, key) of ``candidates`` holds."""
    taken = set(ids)
    counts: dict[Group, int] = {}
    for run_id, kind, key in candidates:
        if run_id in taken:
            counts[kind, key] = counts.get((kind, key), 0) + 1
    return counts


__all__ = [
    "MAX_CONCURRENCY",
    "Bucket",
    "Candidate",
    "Group",
    "RunQueue",
    "TransactionalRunQueue",
    "counted",
    "enqueue_answers",
    "outcome_rounds",
    "pick_limited",
    "rate_room",
    "rated_kinds",
    "run_from_row",
    "spent_buckets",
    "split_claim",
    "started_groups",
    "stats_of",
    "trace_context_of",
    "trace_contexts",
    "unbound",
    "whole",
]
