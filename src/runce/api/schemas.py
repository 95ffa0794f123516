"""The wire models of the HTTP API v1: what the server answers and what the client sends.

Both sides import these, so a field changes in one place. Runs, attempts and workers mirror
the dataclasses of :mod:`runce.stores.queue` field for field, schedules those of
:mod:`runce.stores.schedules` (with the input as JSON, not as text); ``from_*`` and ``to_*``
convert.
Datetimes travel as ISO-8601 with an offset; naive datetimes are refused on input.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    model_validator,
)

from runce.domain.runs import (
    AttemptOutcome,
    AttemptRecord,
    Beat,
    OutcomeKind,
    Run,
    RunCounts,
    RunState,
    WorkerInfo,
)
from runce.domain.schedules import Schedule
from runce.runs.jobs import MAX_RATE, MAX_RATE_WINDOW
from runce.runs.limits import (  # the library's own limits, declared in the OpenAPI document
    MAX_ATTEMPTS,
    MAX_DEPTH,
    MAX_INT,
    MAX_PRIORITY,
    MIN_INT,
    MIN_PRIORITY,
)
from runce.runs.service import canonical_json
from runce.stores.queue import MAX_CONCURRENCY

PROBLEM_BASE = "https://runce.dev/problems/"
MAX_BATCH = 100
MAX_WAIT = 30.0
# Bounds that keep seconds inside what datetime arithmetic and every store can hold.
MAX_LEASE = 7 * 86400.0
MAX_AGE = 100 * 365 * 86400.0

# RFC 3339 with seconds and an offset, in UTC years 1970 to 9999 (an offset may move the
# year across either end; the server checks the UTC year).
TIME_PATTERN = (
    r"^(19[7-9][0-9]|[2-9][0-9]{3})-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
)
# Names and ids: printable, one line. Text of any kind: no NUL, no lone surrogate (a
# surrogate cannot be written in a pattern every JSON Schema validator reads, so the
# descriptions say it).
NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"
PROSE_PATTERN = r"^[^\x00]*$"
_TIME = re.compile(TIME_PATTERN)
_SURROGATE = re.compile("[\ud800-\udfff]")

Scope = Literal["runs:read", "runs:write", "runs:work"]
SCOPES: tuple[Scope, ...] = ("runs:read", "runs:write", "runs:work")


def _storable(moment: datetime) -> datetime:
    """Times a store can keep and order: UTC years 1970 to 9999."""
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range (UTC years 1970 to 9999)") from None
    if not 1970 <= utc.year <= 9999:
        raise ValueError("the time is out of range (UTC years 1970 to 9999)")
    return utc


def _time_text(value: Any) -> Any:
    """A time arrives as RFC 3339 text: a number is not a time (nor read as one)."""
    if isinstance(value, datetime):  # a model made in Python, not read from JSON
        return value
    if not isinstance(value, str) or not _TIME.match(value):
        raise ValueError(
            "a time is text like 2026-11-23T09:00:00Z or 2026-11-23T10:00:00+01:00 "
            "(with seconds and an offset, years 1970 to 9999)"
        )
    return value


def _storable_text(value: Any) -> Any:
    """Text a store can keep: no NUL (PostgreSQL refuses it, SQLite's JSON functions cut
    text at it) and no lone surrogate (it is not UTF-8)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text with a NUL character (\\u0000) cannot be stored")
        if _SURROGATE.search(value):
            raise ValueError("text with a lone surrogate (\\ud800 to \\udfff) cannot be stored")
    return value


def _storable_json(value: Any) -> Any:
    """A JSON value a store can keep: text as :func:`_storable_text` says, integers within
    64 bits, nested at most ``MAX_DEPTH`` levels."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels cannot be stored")
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
            if isinstance(item, dict):
                pending.extend((key, depth) for key in item)
        elif isinstance(item, str):
            _storable_text(item)
        elif isinstance(item, int) and not MIN_INT <= item <= MAX_INT:  # bools are in range
            raise ValueError("an integer outside 64 bits (-2^63 to 2^63-1) cannot be stored")
    return value


Moment = Annotated[
    AwareDatetime,
    BeforeValidator(_time_text),
    AfterValidator(_storable),
    Field(json_schema_extra={"pattern": TIME_PATTERN}),
]
# A validator before the constraints would hide the pattern from the JSON schema.
Text = Annotated[
    str,
    Field(min_length=1, max_length=200, pattern=NAME_PATTERN),
    BeforeValidator(_storable_text),
]
WorkerId = Text
Prose = Annotated[
    str,
    Field(
        json_schema_extra={"pattern": PROSE_PATTERN},
        description="Text without NUL or lone surrogates",
    ),
    BeforeValidator(_storable_text),
]
Json = Annotated[
    Any,
    AfterValidator(_storable_json),
    Field(
        description=f"Any JSON value, nested at most {MAX_DEPTH} levels, with integers within "
        "64 bits and text without NUL or lone surrogates"
    ),
]
# Numbers are numbers: false is not 0, "3" is not 3 (and an integer is a float's value).
Count = Annotated[int, Strict()]
Seconds = Annotated[float, Strict()]
Attempt = Annotated[Count, Field(ge=0, le=1_000_000)]
Lease = Annotated[Seconds, Field(gt=0, le=MAX_LEASE, description="seconds")]


class _Model(BaseModel):
    """A request body: unknown fields are refused (a typo is an error, not a default)."""

    model_config = ConfigDict(extra="forbid")


class _Answer(BaseModel):
    """An answer: fields a newer server adds are ignored by an older client."""

    model_config = ConfigDict(extra="ignore")


# -- runs --------------------------------------------------------------------------------------


class RunModel(_Answer):
    """One run, as ``GET /v1/runs/{id}`` answers it."""

    id: str
    kind: str
    input: Any = None
    state: RunState
    attempt: int
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
    trace_context: dict[str, str] | None = Field(
        default=None,
        description="The W3C trace context (traceparent, tracestate) the run was enqueued "
        "in, when tracing was on: a remote worker continues that trace",
    )

    @classmethod
    def from_run(cls, run: Run) -> RunModel:
        return cls(**{name: getattr(run, name) for name in cls.model_fields})

    def to_run(self) -> Run:
        return Run(**{name: getattr(self, name) for name in type(self).model_fields})


class EnqueueRequest(_Model):
    """``POST /v1/runs``; the idempotency key travels in the ``Idempotency-Key`` header."""

    kind: Text
    input: Json = None
    project_id: Text | None = None
    run_at: Moment | None = None
    max_attempts: Annotated[Count, Field(ge=1, le=MAX_ATTEMPTS)] | None = None
    priority: Annotated[Count, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)] = 0
    correlation_id: Text | None = None
    concurrency_key: Text | None = Field(
        default=None,
        description="the run's key for its job's flow-control limits, instead of the one "
        "its job's concurrency_key gives",
    )


class FlowModel(_Answer):
    """A run's flow control: its job's limit, and why it waits when its limit holds it back
    (both as the server's jobs declare them; null when it has none or does not wait)."""

    limit: str | None = None
    waiting: str | None = None


class RunList(_Answer):
    runs: list[RunModel]
    next_cursor: str | None = None


class AttemptModel(_Answer):
    run_id: str
    attempt: int
    worker_id: str
    started_at: datetime | None
    finished_at: datetime
    outcome: AttemptOutcome
    error: str | None = None
    traceback: str | None = Field(
        default=None,
        description="Where the attempt's exception was raised (redacted, at most 16 KiB, "
        "keeping the end); null when it ended without one",
    )

    @classmethod
    def from_record(cls, record: AttemptRecord) -> AttemptModel:
        return cls(**{name: getattr(record, name) for name in cls.model_fields})

    def to_record(self) -> AttemptRecord:
        return AttemptRecord(**{name: getattr(self, name) for name in type(self).model_fields})


class AttemptList(_Answer):
    attempts: list[AttemptModel]


class PruneRequest(_Model):
    """Seconds since finishing; absent: the server's ``runs.retention.*``."""

    succeeded_after: Annotated[Seconds, Field(ge=0, le=MAX_AGE)] | None = None
    failed_after: Annotated[Seconds, Field(ge=0, le=MAX_AGE)] | None = None


class PruneResult(_Answer):
    deleted: int


# -- workers -----------------------------------------------------------------------------------


class WorkerModel(_Model):
    """``PUT /v1/workers/{worker_id}`` takes these fields (``id`` must match the path)."""

    id: WorkerId
    host: Annotated[Prose, Field(max_length=255)]
    pid: Annotated[Count, Field(ge=0, le=2**31 - 1)]
    started_at: Moment
    last_seen: Moment
    concurrency: Annotated[Count, Field(ge=0, le=100_000)]
    kinds: list[Text] = Field(default_factory=list, max_length=MAX_BATCH)
    state: Literal["running", "stopping", "stopped"] = "running"

    @classmethod
    def from_info(cls, info: WorkerInfo) -> WorkerModel:
        values = {name: getattr(info, name) for name in cls.model_fields}
        values["kinds"] = list(info.kinds)
        return cls(**values)

    def to_info(self) -> WorkerInfo:
        values = {name: getattr(self, name) for name in type(self).model_fields}
        values["kinds"] = tuple(self.kinds)
        return WorkerInfo(**values)


class WorkerList(_Answer):
    workers: list[WorkerModel]
    limits: dict[str, str] = Field(
        default_factory=dict,
        description="the flow-control limit in words of each job of the server's "
        'worker.handlers that has one, by kind ("concurrency 2 per customer_id"): '
        "enforced over every worker of the kind",
    )


RateCount = Annotated[Count, Field(ge=1, le=MAX_RATE, description="starts per window")]
RateWindow = Annotated[Seconds, Field(ge=1, le=MAX_RATE_WINDOW, description="seconds")]


class KindLimitModel(_Model):
    """A kind's flow-control limit, as the claiming worker's job declares it."""

    kind: Text
    concurrency: Annotated[Count, Field(ge=1, le=MAX_CONCURRENCY)] | None = None
    rate: Annotated[Count, Field(ge=1, le=MAX_RATE, description="starts per window")] | None = None
    per: (
        Annotated[Seconds, Field(ge=1, le=MAX_RATE_WINDOW, description="the window, seconds")]
        | None
    ) = None

    @model_validator(mode="after")
    def _complete(self) -> KindLimitModel:
        if (self.rate is None) != (self.per is None):
            raise ValueError("a rate needs both rate and per")
        if self.concurrency is None and self.rate is None:
            raise ValueError("a limit needs a concurrency or a rate")
        return self


class ClaimRequest(_Model):
    worker_id: WorkerId
    kinds: list[Text] | None = Field(default=None, max_length=MAX_BATCH)
    limit: Annotated[Count, Field(ge=1, le=MAX_BATCH)] = 1
    lease: Lease
    wait: Annotated[Seconds, Field(ge=0, le=MAX_WAIT, description="seconds of long-poll")] = 0
    limits: list[KindLimitModel] = Field(
        default_factory=list,
        max_length=MAX_BATCH,
        description="the limits of the claimed kinds that have one (a claim with limits "
        "names its kinds); the store enforces them over every worker",
    )
    room: Annotated[Count, Field(ge=0, le=MAX_BATCH)] | None = Field(
        default=None, description="at most this many runs of limited kinds (free slots)"
    )


class RunsAnswer(_Answer):
    """Runs handed out (claim) or put back (reclaim)."""

    runs: list[RunModel]


class KindStateCount(_Answer):
    kind: str
    state: RunState
    runs: int


class RunCountsAnswer(_Answer):
    """What the store holds, by bounded reads: runs per kind and state (only pairs that
    have runs; queued runs up to a cap per kind, running ones and those finished at or
    after ``since`` up to the cap in all), per kind the ``run_at`` of its oldest due queued
    run (kinds with none due are absent), the store's clock at the read, and the states
    whose counts the cap cut off (lower bounds)."""

    counts: list[KindStateCount]
    oldest_due: dict[str, datetime]
    now: datetime
    since: datetime
    capped: list[str] = Field(default_factory=list)

    @classmethod
    def from_counts(cls, found: RunCounts) -> RunCountsAnswer:
        counts = [
            KindStateCount(kind=kind, state=state, runs=runs)  # type: ignore[arg-type]
            for (kind, state), runs in sorted(found.counts.items())
        ]
        return cls(
            counts=counts,
            oldest_due=dict(found.oldest_due),
            now=found.now,
            since=found.since,
            capped=sorted(found.capped),
        )

    def to_counts(self) -> RunCounts:
        counts: dict[tuple[str, str], int] = {(c.kind, c.state): c.runs for c in self.counts}
        return RunCounts(
            counts, dict(self.oldest_due), self.now, self.since, frozenset(self.capped)
        )


class HeartbeatRequest(_Model):
    worker_id: WorkerId
    attempt: Attempt
    lease: Lease


class HeartbeatAnswer(_Answer):
    status: Literal["ok", "cancel"]


class ProgressRequest(_Model):
    worker_id: WorkerId
    attempt: Attempt
    percent: Annotated[Count, Field(ge=0, le=100)]
    message: Annotated[Prose, Field(max_length=1000)] | None = None


TRACEBACK = (
    "The failing attempt's traceback; the server redacts it and keeps at most 16 KiB, the end"
)


class SucceedRequest(_Model):
    worker_id: WorkerId
    attempt: Attempt
    result: Json = None
    output_ref: Annotated[Prose, Field(max_length=2000)] | None = None


class FailRequest(_Model):
    worker_id: WorkerId
    attempt: Attempt
    error: Prose
    outcome: Literal["failed", "retry", "canceled", "released"]
    run_at: Moment | None = None
    traceback: Annotated[Prose, Field(description=TRACEBACK)] | None = None


class OutcomeModel(_Model):
    run_id: Text
    worker_id: WorkerId
    attempt: Attempt
    kind: OutcomeKind
    result: Json = None
    output_ref: Annotated[Prose, Field(max_length=2000)] | None = None
    error: Prose | None = None
    run_at: Moment | None = None
    traceback: Annotated[Prose, Field(description=TRACEBACK)] | None = None


class CompleteRequest(_Model):
    outcomes: list[OutcomeModel] = Field(max_length=MAX_BATCH)


class CompleteAnswer(_Answer):
    """One entry per outcome, in order: the run after the write, or null when the fence
    no longer held (nothing was written for it)."""

    results: list[RunModel | None]


class FenceModel(_Model):
    run_id: Text
    attempt: Attempt


class BatchHeartbeatRequest(_Model):
    worker_id: WorkerId
    lease: Lease
    runs: list[FenceModel] = Field(max_length=MAX_BATCH)


class BatchHeartbeatAnswer(_Answer):
    beats: dict[str, Beat]


class ReclaimRequest(_Model):
    pass


# -- schedules ---------------------------------------------------------------------------------


class ScheduleModel(_Answer):
    """One stored cron schedule, as ``GET /v1/schedules`` lists it."""

    name: str
    kind: str
    expression: str
    timezone: str
    input: Any = None
    enabled: bool
    next_run_at: datetime
    last_run_at: datetime | None = None
    last_run_id: str | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_schedule(cls, schedule: Schedule) -> ScheduleModel:
        values: dict[str, Any] = {"input": json.loads(schedule.input_json)}
        for name in cls.model_fields.keys() - values.keys():
            values[name] = getattr(schedule, name)
        return cls(**values)

    def to_schedule(self) -> Schedule:
        values = {name: getattr(self, name) for name in type(self).model_fields}
        # The store keeps canonical JSON, so encoding the value again gives the same text.
        values["input_json"] = canonical_json(values.pop("input"))
        return Schedule(**values)


class ScheduleList(_Answer):
    schedules: list[ScheduleModel]


# -- tasks, health, problems ---------------------------------------------------------------------


class TaskList(BaseModel):
    """What ``runce status --json`` prints: the store, the lock's holder and every task."""

    model_config = ConfigDict(extra="allow")

    store: str
    lock: dict[str, Any] | None = None
    tasks: list[dict[str, Any]]


class TaskControlAnswer(_Answer):
    """What a pause, resume or cancel of a once task did."""

    id: str
    requested: Literal["pause", "resume", "cancel"]
    state_before: str
    message: str


class Health(_Answer):
    status: Literal["ok"]
    store: str
    time: datetime


class FieldError(_Answer):
    loc: list[str | int]
    msg: str


class Problem(_Answer):
    """Every error answer, as ``application/problem+json`` (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None
