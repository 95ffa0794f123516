"""The run service (docs/runs.md#enqueueing): idempotent enqueue, the state machine's
checks, reads and upkeep.

Stores execute conditional writes; this layer decides what is legal, turns the store's
answers into runce's errors, computes retries, and announces events.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random
import re
import secrets
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Unpack

from runce import tracing
from runce.domain.runs import (
    STATS_CAP,
    TRANSITIONS,
    WORKER_RETENTION,
    AttemptRecord,
    Enqueued,
    EnqueueOptions,
    NewRun,
    Run,
    RunFilter,
    RunStats,
)
from runce.errors import (
    IdempotencyConflict,
    IllegalTransition,
    InvalidInput,
    UnknownRun,
    UsageError,
)
from runce.errortext import cap, clean
from runce.runs.events import Event, EventBus, events
from runce.runs.jobs import Job, JobRegistry, check_concurrency_key, registry
from runce.runs.limits import (
    MAX_DEPTH,
    check_json,
    check_lookup,
    check_max_attempts,
    check_priority,
    check_text,
    check_time,
)
from runce.runs.redact import scrub
from runce.stores.queue import RunQueue
from runce.transaction import unwrap

RUN_ORDERS = ("newest", "oldest")

ERROR_CAP = 16 * 1024
MAX_PAGE = 100
# Runs one prune transaction deletes at most (as runs.retention.batch's default).
PRUNE_BATCH = 1000
# Long enough for the keys runce makes itself (a schedule's tick: at most 234), far below
# what the stores can index (PostgreSQL's index rows stop near 2.7 KB; 255 chars of 4 bytes fit).
MAX_KEY = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _canonical_encoder() -> Callable[[Any], str]:
    """One encoder for every call: ``json.dumps`` (and ``JSONEncoder.encode``) build a new one
    each time, which costs twice the encoding of a small input. The C encoder is built
    without circular-reference markers (a stale marker left by a failed call would refuse
    later inputs), so a circular input raises RecursionError instead."""
    standard = json.JSONEncoder(
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator
        return standard
    args = (None, _not_json, json.encoder.encode_basestring, None, ":", ",", True, False, False)
    try:
        chunks = make(*args)

        def fast(value: Any) -> str:
            return "".join(chunks(value, 0))

        probe = {"b": [1, 2.5, None, True], "a": "é\n"}
        if fast(probe) == standard(probe):
            return fast
    except TypeError:  # another Python's C encoder takes other arguments
        pass
    return standard


_encode = _canonical_encoder()


def canonical_json(value: Any, what: str = "input") -> str:
    """Sorted keys, no spaces, no NaN: equal values give equal text (idempotency compares it).

    Every input and result passes here, so here the limits of :mod:`runce.runs.limits` are
    kept: valid Unicode without NUL, nested at most 64 levels, integers in signed 64 bits.
    """
    if value is None:  # most jobs return nothing
        return "null"
    try:
        text: str = _encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"the run's {what} is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput(
            f"the run's {what} is not JSON: it contains itself "
            f"(or is nested deeper than {MAX_DEPTH} levels)"
        ) from None
    check_json(text, value, what)
    return text


def check_idempotency_key(key: str) -> str:
    """The one rule for idempotency keys, wherever they come from (library, CLI, HTTP):
    1 to 255 characters of Unicode text without control characters. Raise UsageError."""
    if not isinstance(key, str):
        raise UsageError(f"an idempotency key is text, not {type(key).__name__}")
    shown = repr(key) if len(key) <= 40 else repr(key[:40]) + "…"
    if not 1 <= len(key) <= MAX_KEY:
        raise UsageError(
            f"idempotency key {shown} must be 1 to {MAX_KEY} characters (it has {len(key)})"
        )
    control = _CONTROL.search(key)
    if control is not None:
        raise UsageError(
            f"idempotency key {shown} holds the control character "
            f"U+{ord(control.group()):04X}; keys are printable text"
        )
    try:
        key.encode()
    except UnicodeEncodeError:
        raise UsageError(
            f"idempotency key {shown} is not valid Unicode text (a lone surrogate)"
        ) from None
    return key


def new_run_id() -> str:
    """A UUIDv7: time-ordered, so ids sort by creation and index well."""
    return new_run_ids(1)[0]


# The variant's two fixed bits (0b10) over two random ones, for a hex digit of randomness.
_VARIANT = str.maketrans("0123456789abcdef", "89ab89ab89ab89ab")


class _IdClock:
    """The millisecond and 12-bit counter of the last id made (RFC 9562, UUIDv7 method 1):
    the counter starts at a random value below 2048 in each new millisecond and counts up
    within it, so ids made by one process strictly increase even within a millisecond; when
    it runs out, the id borrows the next millisecond (and a clock that steps back is not
    followed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._millis = 0
        self._counter = 0

    def take(self, count: int) -> list[tuple[int, int, int]]:
        """Room for ``count`` ids after the last: (millisecond, first counter, how many)
        spans, usually one."""
        spans: list[tuple[int, int, int]] = []
        with self._lock:
            now = time.time_ns() // 1_000_000
            if now > self._millis:
                self._millis, self._counter = now, secrets.randbits(11) - 1
            while count > 0:
                if self._counter >= 0xFFF:
                    self._millis, self._counter = self._millis + 1, secrets.randbits(11) - 1
                size = min(count, 0xFFF - self._counter)
                spans.append((self._millis, self._counter + 1, size))
                self._counter += size
                count -= size
        return spans


_clock = _IdClock()
_HEX3 = [f"{counter:03x}" for counter in range(0x1000)]


def new_run_ids(count: int) -> list[str]:
    """``count`` UUIDv7s (see :func:`new_run_id`), in increasing order and after every id
    this process made before: 48 bits of milliseconds, a 12-bit counter (:class:`_IdClock`)
    and 62 random bits after the variant, read from the system in one call."""
    pool = secrets.token_hex(8 * count)  # 16 hex digits per id, all used
    variant = pool.translate(_VARIANT)
    ids: list[str] = []
    for millis, first, size in _clock.take(count):
        stamp = f"{millis & 0xFFFF_FFFF_FFFF:012x}"
        head = f"{stamp[:8]}-{stamp[8:]}-7"
        at = 16 * len(ids)
        ids += [
            f"{head}{_HEX3[c]}-{variant[i]}{pool[i + 1 : i + 4]}-{pool[i + 4 : i + 16]}"
            for c, i in zip(range(first, first + size), range(at, at + 16 * size, 16), strict=True)
        ]
    return ids


def cap_error(text: str) -> str:
    """An error as a run keeps it: redacted (keys and resolved secrets), at most 16 KiB."""
    text = scrub(text)
    data = text.encode()
    if len(data) <= ERROR_CAP:
        return text
    marker = "…[truncated]"
    return data[: ERROR_CAP - len(marker.encode())].decode(errors="ignore") + marker


def cap_traceback(text: str) -> str:
    """A traceback as an attempt keeps it: safe, redacted, at most 16 KiB (keeping its end,
    where the exception is). Redacted before it is cut, so no secret is left half masked."""
    return cap(scrub(clean(text)), keep_end=True)


def traceback_of(exc: BaseException) -> str | None:
    """The traceback of what a job raised, as its attempt keeps it; None for an exception
    that was never raised (a timeout the worker declares), whose error says it all."""
    if exc.__traceback__ is None:
        return None
    try:
        text = "".join(traceback.format_exception(exc))
    except Exception:  # job code's exception: formatting it must not lose the outcome
        return None
    return cap_traceback(text)


def backoff_delay(attempt: int, base: float, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempt + 1``: ``base * 2^(attempt-1)`` with jitter.

    The jitter draws from the upper half of that span ("equal jitter"), so retries of many
    runs spread out and each retry still waits longer than the one before.
    """
    span = base * float(2 ** max(0, attempt - 1))
    draw: float = (rng or random).uniform(0, span / 2)
    return span / 2 + draw


@dataclass(frozen=True)
class RunPage:
    runs: list[Run]
    next_cursor: str | None


def encode_cursor(run: Run) -> str:
    raw = f"{run.created_at.isoformat()}|{run.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, run_id = raw.partition("|")
        return datetime.fromisoformat(moment), run_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise UsageError(f"cursor {cursor!r} is not one runce gave out") from None


@dataclass(frozen=True)
class FlowStatus:
    """A run's flow control, as status, the API and ``workers`` show it: its job's limit
    (``concurrency 1 per customer_id``) and, for a due queued run its limit holds back, why
    it waits (``waiting: concurrency of customer_id=42, 1 of 1 running``)."""

    limit: str | None = None
    waiting: str | None = None


_WINDOWS = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}


def _window_text(seconds: float) -> str:
    return _WINDOWS.get(seconds) or f"{seconds:g} s"


def limit_text(job: Job[Any, Any] | None) -> str | None:
    """A job's flow-control limit in words, or None when it has none."""
    if job is None or (job.concurrency is None and job.rate is None and job.debounce is None):
        return None
    per = job.concurrency_key
    per_text = f" per {per}" if isinstance(per, str) else " per key" if per is not None else ""
    parts = [] if job.concurrency is None else [f"concurrency {job.concurrency}"]
    if job.rate is not None:
        count, window = job.rate
        parts.append(f"rate {count} per {window:g} s (burst {count})")
    if job.debounce is not None:
        parts.append(f"debounce {job.debounce:g} s")
    return ", ".join(parts) + per_text


class RunService:
    """Everything a caller (library, CLI, HTTP API) does with runs, on one queue."""

    def __init__(
        self,
        queue: RunQueue,
        *,
        default_max_attempts: int = 3,
        jobs: JobRegistry = registry,
        bus: EventBus = events,
    ) -> None:
        self.queue = queue
        self.default_max_attempts = default_max_attempts
        self.jobs = jobs
        self.bus = bus

    def limits(self) -> dict[str, str]:
        """The flow-control limit in words of each of this process's jobs that has one, by
        kind (what ``runce workers`` shows)."""
        found = {kind: limit_text(self.jobs.get(kind)) for kind in self.jobs.kinds()}
        return {kind: text for kind, text in sorted(found.items()) if text}

    def flow(self, run: Run) -> FlowStatus:
        """The run's flow control (from this process's jobs and the store's counts)."""
        job = self.jobs.get(run.kind)
        limit = limit_text(job)
        flow_of = getattr(self.queue, "flow_of", None)
        if job is None or run.state != "queued" or flow_of is None:
            return FlowStatus(limit)
        if job.concurrency is None and job.rate is None:
            return FlowStatus(limit)
        now = self.queue.now()
        if run.run_at > now:  # not due yet: it waits for its time, not a slot
            return FlowStatus(limit)
        count = flow_of(run.id)
        if count is None:
            return FlowStatus(limit)
        per = job.concurrency_key
        if count.key is None:
            name = run.kind
        else:
            name = f"{per if isinstance(per, str) else 'key'}={count.key}"
        if job.concurrency is not None and count.running >= job.concurrency:
            running = f"{count.running} of {job.concurrency} running"
            return FlowStatus(limit, f"waiting: concurrency of {name}, {running}")
        if job.rate is not None and count.tokens is not None and count.tokens_at is not None:
            starts, window = job.rate
            elapsed = max(0.0, (now - count.tokens_at).total_seconds())
            tokens = min(float(starts), count.tokens + elapsed * starts / window)
            if tokens < 1 - 1e-9:
                wait = (1 - tokens) * window / starts
                waiting = (
                    f"waiting: rate of {name}, {starts} per {_window_text(window)}, "
                    f"next start in {wait:.1f} s"
                )
                return FlowStatus(limit, waiting)
        return FlowStatus(limit)

    # -- enqueue --------------------------------------------------------------------------------

    def enqueue(
        self,
        kind: str,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        connection: Any = None,
        **options: Unpack[EnqueueOptions],
    ) -> Run:
        keys = [idempotency_key]
        [result] = self.enqueue_results(
            kind, [input], idempotency_keys=keys, connection=connection, **options
        )
        return result.run

    def enqueue_many(
        self,
        kind: str,
        inputs: Sequence[Any],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
        connection: Any = None,
        **options: Unpack[EnqueueOptions],
    ) -> list[Run]:
        results = self.enqueue_results(
            kind, inputs, idempotency_keys=idempotency_keys, connection=connection, **options
        )
        return [r.run for r in results]

    def enqueue_results(
        self,
        kind: str,
        inputs: Sequence[Any],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
        connection: Any = None,
        trace_context: Mapping[str, str] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> list[Enqueued]:
        """:meth:`enqueue_many`, telling for each run whether this call created it (the
        HTTP API answers 201 or 200 from that). ``trace_context`` is a caller's W3C trace
        context (``traceparent``, ``tracestate``) to continue instead of the active span's."""
        new = self._new_runs(kind, inputs, idempotency_keys, options)
        connection = callers_connection(connection)
        if trace_context is None and not tracing.enabled():
            return self._enqueued(new, self.queue.enqueue(new, connection=connection))
        with tracing.enqueue_span(kind, len(new), trace_context) as carrier:
            new = [run._replace(trace_context=carrier) for run in new]
            results = self.queue.enqueue(new, connection=connection)
            tracing.name_runs([r.run.id for r in results])
        return self._enqueued(new, results)

    async def aenqueue_results(
        self,
        kind: str,
        inputs: Sequence[Any],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
        connection: Any = None,
        **options: Unpack[EnqueueOptions],
    ) -> list[Enqueued]:
        """:meth:`enqueue_results` for async callers: on the caller's async connection when
        the store can use one, else on a worker thread."""
        new = self._new_runs(kind, inputs, idempotency_keys, options)
        connection = callers_connection(connection)
        if tracing.enabled():
            with tracing.enqueue_span(kind, len(new), None) as carrier:
                new = [run._replace(trace_context=carrier) for run in new]
                results = await self._ainsert(new, connection)
                tracing.name_runs([r.run.id for r in results])
        else:
            results = await self._ainsert(new, connection)
        return self._enqueued(new, results)

    async def _ainsert(self, new: list[NewRun], connection: Any) -> list[Enqueued]:
        on_async = getattr(self.queue, "aenqueue", None)
        if connection is not None and on_async is not None:
            results: list[Enqueued] = await on_async(new, connection)
            return results
        return await asyncio.to_thread(self.queue.enqueue, new, connection)

    def _new_runs(
        self,
        kind: str,
        inputs: Sequence[Any],
        idempotency_keys: Sequence[str | None] | None,
        options: EnqueueOptions,
    ) -> list[NewRun]:
        """The runs to insert, their inputs validated and encoded."""
        keys = list(idempotency_keys) if idempotency_keys is not None else [None] * len(inputs)
        if len(keys) != len(inputs):
            raise UsageError("idempotency_keys must have one key (or None) per input")
        keys = [None if key is None else check_idempotency_key(key) for key in keys]
        run_at = options.get("run_at")
        priority = options.get("priority", 0)
        project_id = options.get("project_id")
        correlation_id = options.get("correlation_id")
        concurrency_key = options.get("concurrency_key")
        check_text(kind, "kind", optional=False)
        check_time(run_at, "run_at")
        check_priority(priority)
        check_text(project_id, "project_id")
        check_text(correlation_id, "correlation_id")
        attempts = self._max_attempts(kind, options.get("max_attempts"))
        job = self.jobs.get(kind)
        if job is not None:  # typed jobs refuse a bad input before anything is stored
            inputs = [job.input_for_storage(value) for value in inputs]
        texts = [canonical_json(value) for value in inputs]
        concurrency_keys: list[str | None]
        if concurrency_key is not None:
            concurrency_keys = [check_concurrency_key(concurrency_key)] * len(inputs)
        elif job is not None and job.concurrency_key is not None:
            concurrency_keys = [job.key_of(value) for value in inputs]
        else:
            concurrency_keys = [None] * len(inputs)
        # Debounced only by a key and without an idempotency key: that key's run wins.
        debounce = job.debounce if job is not None else None
        return [
            NewRun(
                id=run_id,
                kind=kind,
                input_json=text,
                max_attempts=attempts,
                priority=priority,
                run_at=run_at,
                project_id=project_id,
                idempotency_key=key,
                correlation_id=correlation_id,
                concurrency_key=flow_key,
                debounce=debounce if flow_key is not None and key is None else None,
            )
            for run_id, text, key, flow_key in zip(
                new_run_ids(len(texts)), texts, keys, concurrency_keys, strict=True
            )
        ]

    def _enqueued(self, new: list[NewRun], results: list[Enqueued]) -> list[Enqueued]:
        """Check runs met by their idempotency keys, and announce the ones created."""
        for wanted, result in zip(new, results, strict=True):
            if not result.created and wanted.debounce is None:
                _check_same(wanted, result.run)
        created = [r.run for r in results if r.created]
        if created and self.bus.wants("run.enqueued"):
            for run in created:
                self.bus.publish(Event("run.enqueued", run))
        return results

    def _max_attempts(self, kind: str, given: int | None) -> int:
        if given is not None:
            return check_max_attempts(given)
        job = self.jobs.get(kind)
        if job is not None and job.max_attempts is not None:
            return job.max_attempts
        return check_max_attempts(self.default_max_attempts)

    # -- reads -----------------------------------------------------------------------------------

    def get(self, run_id: str) -> Run:
        check_lookup(run_id, "run id")
        run = self.queue.get(run_id)
        if run is None:
            raise UnknownRun(f"no run has the id {run_id!r}")
        return run

    def page(
        self, filters: RunFilter | None = None, *, cursor: str | None = None, limit: int = 50
    ) -> RunPage:
        if not 1 <= limit <= MAX_PAGE:
            raise UsageError(f"limit must be between 1 and {MAX_PAGE}")
        after = decode_cursor(cursor) if cursor else None
        filters = filters or RunFilter()
        if filters.order not in RUN_ORDERS:
            raise UsageError(f"order {filters.order!r} is not one of: {', '.join(RUN_ORDERS)}")
        check_lookup(filters.project_id, "project_id")
        for project in filters.project_ids or ():
            check_lookup(project, "project_ids")
        check_lookup(filters.kind, "kind")
        check_time(filters.since, "since")
        check_time(filters.before, "before")
        runs = self.queue.page(filters, after, limit + 1)
        more = len(runs) > limit
        runs = runs[:limit]
        return RunPage(runs, encode_cursor(runs[-1]) if more else None)

    def ensure_idempotent(self, key: str, factory: Callable[[], Run]) -> Run:
        """The run holding idempotency key ``key``, or the one ``factory()`` creates.

        ``factory`` enqueues the run with ``idempotency_key=key``: the store keeps one run
        per key, so callers racing past the look-up all get the run the first one stored.
        """
        key = check_idempotency_key(key)
        found = self.queue.page(RunFilter(idempotency_key=key), None, 1)
        if found:
            return found[0]
        run = factory()
        if not isinstance(run, Run) or run.idempotency_key != key:
            made = getattr(run, "idempotency_key", None) if isinstance(run, Run) else run
            raise UsageError(
                f"ensure_idempotent({key!r}, factory): the factory must return the run it "
                f"enqueued with idempotency_key={key!r}, not {made!r}"
            )
        return run

    def stats(self, window: float = 3600.0, *, cap: int = STATS_CAP) -> RunStats:
        """Bounded counts for an overview: active runs per state and kind, and the runs
        that finished in the last ``window`` seconds (see :class:`RunStats`)."""
        return self.queue.stats(self.queue.now() - timedelta(seconds=window), cap)

    def find(
        self,
        text: str,
        *,
        project_id: str | None = None,
        project_ids: tuple[str, ...] | None = None,
        limit: int = 50,
    ) -> list[Run]:
        """Runs whose id, idempotency key or correlation id is ``text``, newest first; with
        ``project_id`` or ``project_ids``, only runs of that project or of those."""
        found: dict[str, Run] = {}
        run = self.queue.get(text)
        if run is not None and _of_projects(run, project_id, project_ids):
            found[run.id] = run
        by_key = RunFilter(project_id, idempotency_key=text, project_ids=project_ids)
        by_correlation = RunFilter(project_id, correlation_id=text, project_ids=project_ids)
        for filters in (by_key, by_correlation):
            for match in self.queue.page(filters, None, limit):
                found.setdefault(match.id, match)
        return sorted(found.values(), key=lambda r: (r.created_at, r.id), reverse=True)[:limit]

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        self.get(run_id)
        return self.queue.attempts(run_id)

    def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """Block until the run is finished (or ``timeout`` seconds pass); return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.01
        while True:
            run = self.get(run_id)
            if run.finished or (deadline is not None and time.monotonic() >= deadline):
                return run
            remaining = 1.0 if deadline is None else deadline - time.monotonic()
            time.sleep(max(0.0, min(pause, remaining)))
            pause = min(pause * 1.5, 0.25)

    # -- changes -------------------------------------------------------------------------------

    def cancel(self, run_id: str) -> Run:
        """Queued: canceled now. Running: asked to stop; the worker stops it cooperatively."""
        _check(self.get(run_id), "canceled")
        after = self.queue.cancel(run_id)
        if after is None:
            raise UnknownRun(f"no run has the id {run_id!r}")
        if after.state in ("succeeded", "failed"):  # it finished meanwhile: say so
            _check(after, "canceled")
        if after.state == "canceled" and self.bus.wants("run.canceled"):
            self.bus.publish(Event("run.canceled", after))
        return after

    def retry(self, run_id: str, run_at: datetime | None = None) -> Run:
        """A failed or canceled run back to the queue, with one more attempt."""
        check_time(run_at, "run_at")
        before = self.get(run_id)
        if before.state not in ("failed", "canceled"):
            raise IllegalTransition(
                f"run {run_id} is {before.state}; only failed or canceled runs can be retried"
            )
        after = self.queue.retry(run_id, run_at)
        if after is None or after.state != "queued":
            state = after.state if after else "gone"
            raise IllegalTransition(f"run {run_id} became {state} meanwhile; not retried")
        return after

    def prune(
        self,
        succeeded_after: float,
        failed_after: float,
        *,
        batch: int = PRUNE_BATCH,
        stop: Callable[[], bool] | None = None,
    ) -> int:
        """Delete runs finished longer ago than these many seconds (per outcome), in batches
        of ``batch`` runs, each its own short transaction, so that workers keep claiming
        meanwhile; ``stop`` is asked between batches (a stopping worker leaves the rest).
        Then the workers not heard from for :data:`WORKER_RETENTION` seconds (a day).
        Returns how many runs were deleted."""
        now = self.queue.now()
        succeeded_before = now - timedelta(seconds=succeeded_after)
        failed_before = now - timedelta(seconds=failed_after)
        pruned = 0
        while True:
            started = time.monotonic()
            gone = self.queue.prune(succeeded_before, failed_before, limit=batch)
            pruned += gone
            if gone < batch or (stop is not None and stop()):
                self.queue.prune_workers(now - timedelta(seconds=WORKER_RETENTION))
                return pruned
            # A breath between batches: on SQLite a writer waiting for the lock polls for it,
            # and a loop that took it back at once could keep a claim waiting.
            time.sleep(min((time.monotonic() - started) / 4, 0.1))


def callers_connection(connection: Any) -> Any:
    """The driver's connection under a framework's wrapper: Django's ``connection`` (after
    ``ensure_connection()``, which inside ``transaction.atomic()`` has been made already)."""
    connection = unwrap(connection)  # a transactional task's ctx.db: the driver's own
    if connection is None:
        return None
    ensure = getattr(connection, "ensure_connection", None)
    if callable(ensure) and hasattr(connection, "connection"):
        ensure()
        if connection.get_autocommit():
            raise UsageError(
                "connection= is Django's connection outside a transaction; enqueue inside "
                "`with transaction.atomic():` (the run is to exist only if it commits), or "
                "use runce.contrib.django.enqueue_on_commit"
            )
        return connection.connection
    return connection


def _of_projects(run: Run, project_id: str | None, project_ids: tuple[str, ...] | None) -> bool:
    return project_id in (None, run.project_id) and (
        project_ids is None or run.project_id in project_ids
    )


def _check(run: Run, target: str) -> None:
    if target not in TRANSITIONS[run.state]:
        raise IllegalTransition(f"run {run.id} is {run.state}; it cannot be {target}")


def _check_same(wanted: NewRun, existing: Run) -> None:
    """One key is one request: the same kind and input (as JSON values) in the same project,
    for every caller (library, CLI, HTTP API). The options (run_at, priority, max_attempts,
    correlation_id) are the first call's: a retry that computes them anew (``run_at=now +
    10 min``, a new request id) gets the run it made, unchanged."""
    if existing.project_id != wanted.project_id:
        # Not naming the run: over HTTP, another project's run is not the caller's to see.
        raise IdempotencyConflict(
            f"idempotency key {wanted.idempotency_key!r} was already used for a run of "
            "another project"
        )
    same_input = _stored_json(existing.input) == wanted.input_json or same_json(
        existing.input, json.loads(wanted.input_json)
    )
    if existing.kind != wanted.kind or not same_input:
        raise IdempotencyConflict(
            f"idempotency key {wanted.idempotency_key!r} was already used for run {existing.id} "
            f"({existing.kind}) with a different input"
        )


def _stored_json(value: Any) -> str | None:
    """A stored input's canonical text, without the limits: a store may give a value back in
    a form no caller may send (PostgreSQL's JSONB turns ``1e20`` into an integer)."""
    try:
        return _encode(value)
    except (TypeError, ValueError, RecursionError):
        return None


def same_json(a: Any, b: Any) -> bool:
    """Equal JSON values, numbers compared by value: a store may give ``1e16`` back as the
    integer it equals (PostgreSQL's JSONB does), which is the same input. ``true`` is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same_json, a, b))
    return type(a) is type(b) and bool(a == b)
