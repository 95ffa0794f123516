"""The wire models of the HTTP API v1: what the server answers and what the client sends.

Both sides import these, so a field changes in one place. Runs, attempts and workers mirror
the dataclasses of :mod:`runce.stores.queue` field for field, schedules those of
:mod:`runce.stores.schedules` (with the input as JSON, not as text); ``from_*`` and ``to_*``
convert.
Datetimes travel as ISO-8601 with an offset; naive datetimes are refused on input.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from runce.runs.service import canonical_json
from runce.stores.queue import (
    AttemptOutcome,
    AttemptRecord,
    Beat,
    OutcomeKind,
    Run,
    RunState,
    WorkerInfo,
)
from runce.stores.schedules import Schedule

PROBLEM_BASE = "https://runce.dev/problems/"
MAX_BATCH = 100
MAX_WAIT = 30.0
# Bounds that keep seconds inside what datetime arithmetic and every store can hold.
MAX_LEASE = 7 * 86400.0
MAX_AGE = 100 * 365 * 86400.0

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


def _without_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("text with a NUL character cannot be stored")
    return text


def _json_without_nul(value: Any) -> Any:
    # PostgreSQL's jsonb refuses \u0000 and SQLite's JSON functions cut text at it.
    if _has_nul(value):
        raise ValueError("text with a NUL character (\\u0000) cannot be stored")
    return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


Moment = Annotated[AwareDatetime, AfterValidator(_storable)]
# Names and ids: printable, one line.
Text = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
WorkerId = Text
Prose = Annotated[str, AfterValidator(_without_nul)]
Json = Annotated[Any, AfterValidator(_json_without_nul)]
Attempt = Annotated[int, Field(ge=0, le=1_000_000)]
Lease = Annotated[float, Field(gt=0, le=MAX_LEASE, description="seconds")]


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
    max_attempts: Annotated[int, Field(ge=1, le=1000)] | None = None
    priority: Annotated[int, Field(ge=-1_000_000, le=1_000_000)] = 0
    correlation_id: Text | None = None


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

    @classmethod
    def from_record(cls, record: AttemptRecord) -> AttemptModel:
        return cls(**{name: getattr(record, name) for name in cls.model_fields})

    def to_record(self) -> AttemptRecord:
        return AttemptRecord(**{name: getattr(self, name) for name in type(self).model_fields})


class AttemptList(_Answer):
    attempts: list[AttemptModel]


class PruneRequest(_Model):
    """Seconds since finishing; absent: the server's ``runs.retention.*``."""

    succeeded_after: Annotated[float, Field(ge=0, le=MAX_AGE)] | None = None
    failed_after: Annotated[float, Field(ge=0, le=MAX_AGE)] | None = None


class PruneResult(_Answer):
    deleted: int


# -- workers -----------------------------------------------------------------------------------


class WorkerModel(_Model):
    """``PUT /v1/workers/{worker_id}`` takes these fields (``id`` must match the path)."""

    id: WorkerId
    host: Annotated[Prose, Field(max_length=255)]
    pid: Annotated[int, Field(ge=0, le=2**31 - 1)]
    started_at: Moment
    last_seen: Moment
    concurrency: Annotated[int, Field(ge=0, le=100_000)]
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


class ClaimRequest(_Model):
    worker_id: WorkerId
    kinds: list[Text] | None = Field(default=None, max_length=MAX_BATCH)
    limit: Annotated[int, Field(ge=1, le=MAX_BATCH)] = 1
    lease: Lease
    wait: Annotated[float, Field(ge=0, le=MAX_WAIT, description="seconds of long-poll")] = 0


class RunsAnswer(_Answer):
    """Runs handed out (claim) or put back (reclaim)."""

    runs: list[RunModel]


class HeartbeatRequest(_Model):
    worker_id: WorkerId
    attempt: Attempt
    lease: Lease


class HeartbeatAnswer(_Answer):
    status: Literal["ok", "cancel"]


class ProgressRequest(_Model):
    worker_id: WorkerId
    attempt: Attempt
    percent: Annotated[int, Field(ge=0, le=100)]
    message: Annotated[Prose, Field(max_length=1000)] | None = None


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


class OutcomeModel(_Model):
    run_id: Text
    worker_id: WorkerId
    attempt: Attempt
    kind: OutcomeKind
    result: Json = None
    output_ref: Annotated[Prose, Field(max_length=2000)] | None = None
    error: Prose | None = None
    run_at: Moment | None = None


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
