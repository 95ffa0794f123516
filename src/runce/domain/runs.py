"""Runs of the job queue, in the domain's words (see docs/runs.md).

A run moves through one state machine (:data:`TRANSITIONS`)::

    queued ──claim──▶ running ──succeed──▶ succeeded
      │  ▲               │ ├──fail (attempts left)──▶ queued (run_at = now + backoff)
      │  │               │ ├──fail (no attempts left)──▶ failed ──retry──▶ queued
      │  │               │ ├──cancelled cooperatively──▶ canceled ──retry──▶ queued
      │  └──lease expired / handed back on shutdown──┘
      └──cancel──▶ canceled

A worker's claim is named by a :class:`Fence`; how its attempt ended, by an
:class:`Outcome`; what the store wrote, by a :class:`Landed`, from which :func:`run_after`
rebuilds the run as stored. The store contract that keeps these records is
:class:`runce.stores.queue.RunQueue`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple, TypedDict

from runce.errors import UsageError

RunState = Literal["queued", "running", "succeeded", "failed", "canceled"]


# Which runs a page shows first, by creation: the newest (the default) or the oldest.
RunOrder = Literal["newest", "oldest"]


RUN_STATES: tuple[RunState, ...] = ("queued", "running", "succeeded", "failed", "canceled")


FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "canceled"})


# Every legal move; anything else is an IllegalTransition, never a silent write.
TRANSITIONS: Mapping[str, frozenset[str]] = {
    "queued": frozenset({"running", "canceled"}),
    "running": frozenset({"succeeded", "failed", "queued", "canceled"}),
    "succeeded": frozenset(),
    "failed": frozenset({"queued"}),
    "canceled": frozenset({"queued"}),
}


OutcomeKind = Literal[
    "succeeded",
    "failed",  # final: no attempts left, or not retryable
    "retry",  # back to queued at ``run_at``; the attempt is spent
    "canceled",  # the handler stopped after a cancel was asked
    "released",  # handed back unfinished (worker shutdown); the attempt is not spent
]


AttemptOutcome = Literal["failed", "retry", "canceled", "released", "lease-expired"]


class Unreadable(str):
    """In place of a stored input or result that cannot be read back (text that is not
    UTF-8 or not JSON, or nested too deeply), however it got there: a listing shows the
    run with this marker instead of failing, and a worker fails the run, not itself."""

    reason: str

    def __new__(cls, reason: str) -> Unreadable:
        made = super().__new__(cls, f"<unreadable: {reason}>")
        made.reason = reason
        return made


def readable(decode: Callable[[Any], Any], raw: Any) -> Any:
    """``decode(raw)``, or :class:`Unreadable` saying why it cannot be read."""
    try:
        return decode(raw)
    except RecursionError:
        return Unreadable("it is JSON nested too deeply to read back")
    except (ValueError, TypeError) as exc:
        return Unreadable(f"it is not JSON ({exc})")


@dataclass(frozen=True, slots=True)
class Run:
    """One run, as the store keeps it."""

    id: str
    kind: str
    input: Any
    state: RunState
    attempt: int  # attempts started so far; 0 until first claimed
    max_attempts: int
    priority: int
    run_at: datetime
    created_at: datetime
    updated_at: datetime
    project_id: str | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None
    result: Any = None
    output_ref: str | None = None
    error: str | None = None
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    lease_expires_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: int | None = None
    progress_message: str | None = None
    cancel_requested: bool = False
    # The W3C trace context (``traceparent``, ``tracestate``) of the code that enqueued the
    # run, when OpenTelemetry was on there: the worker continues that trace.
    trace_context: dict[str, str] | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def fence(self) -> Fence:
        """The fence of the current claim (only meaningful while running)."""
        return Fence(self.id, self.attempt, self.claimed_by or "")


class EnqueueOptions(TypedDict, total=False):
    """The options every way of enqueueing takes (``runce.enqueue``, a job's ``.later``, the
    HTTP clients), by keyword; any left out takes its default."""

    run_at: datetime | None  # when the run is due (None: now)
    max_attempts: int | None  # None: the job's, else ``runs.max_attempts``
    priority: int  # higher first among due runs (default 0)
    project_id: str | None
    correlation_id: str | None
    concurrency_key: str | None  # the run's key for its job's ``concurrency`` limit


class RunQuery(TypedDict, total=False):
    """Which runs a page of ``runce.list_runs`` (or a client's) shows, by keyword."""

    project_id: str | None
    state: RunState | None
    kind: str | None
    since: datetime | None  # created at or after
    before: datetime | None  # created before
    cursor: str | None  # the last page's ``next_cursor``
    limit: int  # runs a page (default 50)
    order: RunOrder  # "newest" first (the default) or "oldest"


ENQUEUE_OPTIONS: frozenset[str] = frozenset(EnqueueOptions.__annotations__)
QUERY_OPTIONS: frozenset[str] = frozenset(RunQuery.__annotations__)


def check_enqueue_options(options: Mapping[str, object], where: str) -> None:
    """Refuse a keyword that is no enqueue option, as Python refuses one a signature lacks."""
    _check_keywords(options, ENQUEUE_OPTIONS, where)


def check_query(query: Mapping[str, object], where: str) -> None:
    """Refuse a keyword that is no :class:`RunQuery` key."""
    _check_keywords(query, QUERY_OPTIONS, where)


def _check_keywords(given: Mapping[str, object], known: frozenset[str], where: str) -> None:
    if given.keys() <= known:  # the usual case, at C speed
        return
    for name in given:
        if name not in known:
            raise TypeError(f"{where}() got an unexpected keyword argument {name!r}")


def filter_of(query: RunQuery) -> RunFilter:
    """The filters of a query (its cursor and limit are the page's)."""
    return RunFilter(
        query.get("project_id"),
        query.get("state"),
        query.get("kind"),
        query.get("since"),
        query.get("before"),
        order=query.get("order", "newest"),
    )


class NewRun(NamedTuple):
    """A run to insert. ``input_json`` is canonical JSON (sorted keys, no spaces).

    A named tuple rather than a dataclass: a batch enqueue makes one per run, and a tuple
    is made about four times faster than a frozen dataclass."""

    id: str
    kind: str
    input_json: str
    max_attempts: int
    priority: int = 0
    run_at: datetime | None = None  # None: now, on the store's clock
    project_id: str | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None
    trace_context: dict[str, str] | None = None
    # The run's concurrency key (flow control): runs of a limited kind count per key.
    concurrency_key: str | None = None
    # Debounce (seconds): a queued run of the kind with the same concurrency key takes this
    # run's input and starts this long from now instead; else this run starts then.
    debounce: float | None = None


@dataclass(frozen=True, slots=True)
class Enqueued:
    run: Run
    created: bool  # False: an existing run with the same idempotency key (or debounced)


@dataclass(frozen=True, slots=True)
class Fence:
    """Identifies one claim of one run: writes about it hold only while it is current."""

    run_id: str
    attempt: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a claimed attempt ended, for :meth:`RunQueue.complete`."""

    fence: Fence
    kind: OutcomeKind
    result_json: str | None = None  # succeeded: canonical JSON of the result
    output_ref: str | None = None
    error: str | None = None  # failed / retry / canceled: capped error text
    run_at: datetime | None = None  # retry: when to try again
    traceback: str | None = None  # failed / retry: the attempt's traceback, redacted, capped


class Landed(NamedTuple):
    """An outcome the store wrote (its fence held), with what the write left in the run that
    its worker cannot know from the claim and the outcome alone. (A named tuple: one is made
    per acknowledged run, and a tuple is made several times faster than a frozen dataclass.)
    """

    at: datetime  # the store's clock at the write: updated_at, and finished_at if finished
    run_at: datetime  # as stored (a retry's run_at at the store's precision)
    cancel_requested: bool  # asked while the attempt ran
    progress: int | None = None
    progress_message: str | None = None


def landed_of(run: Run) -> Landed:
    """The :class:`Landed` of a run as an outcome left it (for stores that have the row)."""
    return Landed(
        run.updated_at, run.run_at, run.cancel_requested, run.progress, run.progress_message
    )


# The state each outcome leaves a run in.
STATE_AFTER: Mapping[str, RunState] = {
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
    "retry": "queued",
    "released": "queued",
}


def check_outcomes(outcomes: Sequence[Outcome]) -> None:
    """Refuse an outcome kind no run can end an attempt with (before anything is written)."""
    for outcome in outcomes:
        if outcome.kind not in STATE_AFTER:
            raise UsageError(
                f"{outcome.kind!r} is not an outcome of a run; "
                f"use one of {', '.join(sorted(STATE_AFTER))}"
            )


def run_after(claimed: Run, outcome: Outcome, landed: Landed) -> Run:
    """The run as the store keeps it after ``outcome`` landed on the attempt ``claimed``
    (the run as its claim returned it): the transitions of :data:`TRANSITIONS` that an
    outcome makes, in one place. The contract suite checks every store against it."""
    kind = outcome.kind
    state = STATE_AFTER[kind]
    requeued = state == "queued"
    succeeded = kind == "succeeded"
    result = claimed.result
    if succeeded:
        result = None if outcome.result_json is None else json.loads(outcome.result_json)
    return Run(
        claimed.id,
        claimed.kind,
        claimed.input,
        state,
        claimed.attempt - 1 if kind == "released" else claimed.attempt,
        claimed.max_attempts,
        claimed.priority,
        landed.run_at,
        claimed.created_at,
        landed.at,
        claimed.project_id,
        claimed.idempotency_key,
        claimed.correlation_id,
        result,
        outcome.output_ref if succeeded else claimed.output_ref,
        outcome.error if kind in ("failed", "canceled", "retry") else claimed.error,
        None if requeued else claimed.claimed_by,
        None if requeued else claimed.claimed_at,
        None,
        None if requeued else claimed.started_at,
        claimed.finished_at if requeued else landed.at,
        landed.progress,
        landed.progress_message,
        landed.cancel_requested,
        claimed.trace_context,
    )


@dataclass(frozen=True, slots=True)
class KindLimit:
    """Flow control of one kind, per concurrency key (runs without a key share one count,
    the kind's): at most ``concurrency`` of its runs running at once, and at most ``rate``
    starts per ``per`` seconds with a burst of ``rate`` (a token bucket holding at most
    ``rate`` starts, refilled at ``rate`` per ``per`` seconds: in any window of ``per``
    seconds, at most ``2 * rate`` start)."""

    kind: str
    concurrency: int | None = None
    rate: int | None = None
    per: float | None = None


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    worker_id: str
    kinds: Sequence[str] | None
    limit: int
    lease: float
    # The limits of the claimed kinds that have one (from the worker's jobs). A claim with
    # none takes the store's plain path; one with limits names its kinds.
    limits: tuple[KindLimit, ...] = ()
    # At most this many runs of limited kinds (the worker's free slots): a limited run
    # claimed ahead would hold a slot of its key while it waits in the worker.
    room: int | None = None


def limited_want(request: ClaimRequest) -> int:
    """How many runs of limited kinds a claim takes at most."""
    return request.limit if request.room is None else max(0, min(request.limit, request.room))


@dataclass(frozen=True, slots=True)
class FlowCount:
    """A run's concurrency key and how many runs of its (kind, key) run under a live lease:
    what a queue with a ``flow_of(run_id)`` method answers (for status and the API)."""

    key: str | None
    running: int
    # Its (kind, key)'s rate bucket as stored: the starts left at ``tokens_at`` (None: none
    # stored yet, a full bucket).
    tokens: float | None = None
    tokens_at: datetime | None = None


Beat = Literal["ok", "cancel", "lost"]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    run_id: str
    attempt: int
    worker_id: str
    started_at: datetime | None
    finished_at: datetime
    outcome: AttemptOutcome
    error: str | None = None
    traceback: str | None = None  # where the attempt's exception was raised, when it was


@dataclass(frozen=True, slots=True)
class RunFilter:
    project_id: str | None = None
    state: RunState | None = None
    kind: str | None = None
    since: datetime | None = None  # created_at >= since
    before: datetime | None = None  # created_at < before
    idempotency_key: str | None = None
    correlation_id: str | None = None
    ids: tuple[str, ...] | None = None  # only these runs (a page following what it shows)
    # Only runs of these projects (a token bound to several): each is read by its own
    # index range, so a page costs the same for two projects as for one.
    project_ids: tuple[str, ...] | None = None
    order: RunOrder = "newest"  # by (created_at, id): newest or oldest first


# How many runs a count in :class:`RunCounts` and :class:`RunStats` reads at most: per kind
# for queued runs, in all for running ones and for those finished in the window; beyond it the
# count shows as "at least".
STATS_CAP = 10_000
# Seconds of finished runs :meth:`RunQueue.run_counts` counts when not told a moment.
COUNT_WINDOW = 3600.0
# Stopped workers a listing of workers shows (:meth:`RunQueue.workers`), the ones seen last;
# every worker not stopped is shown too.
STOPPED_SHOWN = 20
# Seconds after its last heartbeat that a worker's row is pruned (stopped, or killed
# without a word), with finished runs.
WORKER_RETENTION = 86_400.0


@dataclass(frozen=True, slots=True)
class RunStats:
    """A bounded summary of the queue, cheap enough for every page view of a dashboard
    (made of :class:`RunCounts`: the same bounded reads).

    ``active`` counts queued and running runs per ``(state, kind)``; ``finished`` counts the
    runs that finished (succeeded, failed, canceled) since ``since``. Queued runs are
    counted up to ``cap`` per kind, running ones and finished ones up to ``cap`` in all: a
    state whose runs were cut off is in ``capped``, and its counts are lower bounds."""

    now: datetime
    since: datetime
    active: Mapping[tuple[str, str], int]
    finished: Mapping[tuple[str, str], int]
    capped: frozenset[str]
    oldest_queued: datetime | None  # run_at of the queued run due the longest, if any is due


ACTIVE: tuple[str, ...] = ("queued", "running")


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    started_at: datetime
    last_seen: datetime
    concurrency: int
    kinds: tuple[str, ...] = ()
    state: Literal["running", "stopping", "stopped"] = "running"


@dataclass(frozen=True, slots=True)
class RunCounts:
    """What the store holds, counted by bounded index reads (for metrics and the dashboard):
    runs per ``(kind, state)`` (only pairs that have runs), per kind the ``run_at`` of its
    oldest due queued run (exact; kinds with none due are absent), and the store's clock
    at the read.

    Never a count over the whole table: queued runs are counted up to a cap per kind,
    running runs up to the cap in all, and finished runs (succeeded, failed, canceled) are
    those that finished at or after ``since``, up to the cap in all. A state whose count
    was cut off is in ``capped``, and its counts are lower bounds."""

    counts: Mapping[tuple[str, str], int]
    oldest_due: Mapping[str, datetime]
    now: datetime
    since: datetime
    capped: frozenset[str] = frozenset()
