"""The in-process store (``memory://`` or ``memory://name``), for users' own unit tests.

Stores with the same URL share their state within one process, so separate calls to
``runce.run_tasks`` see each other's records; :func:`reset` forgets everything.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Any

from runce.domain.locks import Lease, LockHolder, Owner
from runce.domain.runs import (
    COUNT_WINDOW,
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
    landed_of,
    limited_want,
)
from runce.domain.schedules import Schedule, ScheduleDefinition
from runce.domain.schema import SchemaStatus
from runce.domain.tasks import (
    AppliedRecord,
    Attempt,
    Checkpoint,
    ControlCommand,
    RangeClaim,
    TaskControl,
    latest_of,
)
from runce.domain.tokens import NewToken, Token
from runce.errors import LockHeld, LockLost, StoreError, UnsupportedFeature, UsageError
from runce.stores.base import StoreSpec, Transaction
from runce.stores.liveness import process_alive
from runce.stores.queue import (
    Bucket,
    counted,
    enqueue_debounced,
    pick_limited,
    rate_room,
    rated_kinds,
    shown_workers,
    spent_buckets,
    split_claim,
    started_groups,
    stats_of,
    unbound,
)
from runce.timeutil import utcnow


class _State:
    def __init__(self) -> None:
        self.mutex = threading.RLock()
        self.applied: dict[str, AppliedRecord] = {}
        self.history: list[Attempt] = []
        self.holder: LockHolder | None = None
        self.runs = _Runs()
        self.tokens: dict[str, Token] = {}
        self.schedules: dict[str, Schedule] = {}
        self.checkpoints: dict[tuple[str, int], Checkpoint] = {}
        self.controls: dict[str, TaskControl] = {}


_states: dict[str, _State] = {}
_states_mutex = threading.Lock()


def reset() -> None:
    """Forget every memory store in this process."""
    with _states_mutex:
        _states.clear()


def _state_for(name: str) -> _State:
    with _states_mutex:
        return _states.setdefault(name, _State())


class MemoryTracker:
    def __init__(self, state: _State) -> None:
        self._state = state

    def applied(self) -> dict[str, AppliedRecord]:
        with self._state.mutex:
            return dict(self._state.applied)

    def history(self, task_id: str | None = None) -> list[Attempt]:
        with self._state.mutex:
            return [a for a in self._state.history if task_id is None or a.task_id == task_id]

    def latest_attempts(self, task_ids: Sequence[str], per_task: int) -> dict[str, list[Attempt]]:
        with self._state.mutex:
            return latest_of(self._state.history, task_ids, per_task)

    def open_attempts(self) -> list[Attempt]:
        with self._state.mutex:
            return [a for a in self._state.history if a.status == "started"]

    def begin(self, attempt: Attempt, lease: Lease | None) -> None:
        with self._state.mutex:
            self._check(lease)
            self._state.history.append(replace(attempt, status="started"))

    def progress(self, attempt_id: str, done: int, total: int | None, lease: Lease | None) -> None:
        with self._state.mutex:
            self._check(lease)
            index = self._open_index(attempt_id)
            row = self._state.history[index]
            self._state.history[index] = replace(row, progress_done=done, progress_total=total)

    def finish(self, attempt: Attempt, applied: AppliedRecord | None, lease: Lease | None) -> None:
        with self._state.mutex:
            self._check(lease)
            self._state.history[self._open_index(attempt.attempt_id)] = attempt
            if applied is not None:
                self._state.applied[applied.id] = applied

    def record(self, attempt: Attempt, applied: AppliedRecord | None, lease: Lease | None) -> None:
        with self._state.mutex:
            self._check(lease)
            self._state.history.append(attempt)
            if applied is not None:
                self._state.applied[applied.id] = applied

    def transaction(
        self, lease: Lease | None, claim: RangeClaim | None = None
    ) -> AbstractContextManager[Transaction]:
        raise UnsupportedFeature(
            "the memory store has no database to run a transactional task in; "
            "use the sqlite or postgresql store for transactional tasks"
        )

    def checkpoints(self, task_id: str) -> list[Checkpoint]:
        return [c for c in self.all_checkpoints() if c.task_id == task_id]

    def all_checkpoints(self) -> list[Checkpoint]:
        with self._state.mutex:
            return [self._state.checkpoints[key] for key in sorted(self._state.checkpoints)]

    def save_checkpoint(self, checkpoint: Checkpoint, lease: Lease | None) -> None:
        with self._state.mutex:
            self._check(lease)
            self._state.checkpoints[(checkpoint.task_id, checkpoint.part)] = checkpoint

    def controls(self) -> dict[str, TaskControl]:
        with self._state.mutex:
            return dict(self._state.controls)

    def set_control(self, task_id: str, command: ControlCommand | None, requested_by: str) -> None:
        with self._state.mutex:
            if command is None:
                self._state.controls.pop(task_id, None)
            else:
                self._state.controls[task_id] = TaskControl(
                    task_id, command, utcnow(), requested_by
                )

    def _open_index(self, attempt_id: str) -> int:
        for index, row in enumerate(self._state.history):
            if row.attempt_id == attempt_id and row.status == "started":
                return index
        raise StoreError(f"no started attempt {attempt_id!r} to update in the memory store")

    def _check(self, lease: Lease | None) -> None:
        holder = self._state.holder
        if lease is not None and (holder is None or holder.token != lease.token):
            raise LockLost("the memory store's lock is no longer held by this runner")


class MemoryLock:
    def __init__(self, state: _State) -> None:
        self._state = state

    def try_acquire(self, owner: Owner, ttl: float) -> Lease | None:
        with self._state.mutex:
            current = self.holder()
            if current is not None and current.state == "live":
                return None
            now = utcnow()
            lease = Lease(token=secrets.token_hex(16), owner=owner, acquired_at=now, ttl=ttl)
            self._state.holder = LockHolder(
                owner=owner.label,
                host=owner.host,
                pid=owner.pid,
                since=now,
                state="live",
                token=lease.token,
                machine=owner.machine,
                lease_until=now + timedelta(seconds=ttl),
            )
            return lease

    def renew(self, lease: Lease) -> bool:
        with self._state.mutex:
            holder = self._state.holder
            if holder is None or holder.token != lease.token:
                return False
            until = utcnow() + timedelta(seconds=lease.ttl)
            self._state.holder = replace(holder, lease_until=until)
            return True

    def release(self, lease: Lease) -> None:
        with self._state.mutex:
            holder = self._state.holder
            if holder is not None and holder.token == lease.token:
                self._state.holder = None

    def holder(self) -> LockHolder | None:
        with self._state.mutex:
            holder = self._state.holder
            if holder is None:
                return None
            if process_alive(holder.machine, holder.pid) is False:
                return replace(holder, state="dead")
            if holder.lease_until is not None and holder.lease_until < utcnow():
                return replace(holder, state="expired")
            return holder

    def clear(self, *, force: bool = False) -> LockHolder | None:
        with self._state.mutex:
            holder = self.holder()
            if holder is not None and holder.state == "live" and not force:
                raise LockHeld(f"the lock is held by {holder.describe()}")
            self._state.holder = None
            return holder


class MemoryStore:
    """State lives in this process only; nothing is ever migrated."""

    def __init__(self, name: str) -> None:
        state = _state_for(name)
        self._name = name
        self.tracker = MemoryTracker(state)
        self.lock = MemoryLock(state)
        self.runs = MemoryRunQueue(state)
        self.tokens = MemoryTokens(state)
        self.schedules = MemorySchedules(state)

    @property
    def description(self) -> str:
        return f"memory://{self._name}"

    @property
    def supports_transactions(self) -> bool:
        return False

    def schema_status(self) -> SchemaStatus:
        return SchemaStatus(current=0, latest=0)

    def upgrade(self) -> list[str]:
        return []

    def schema_sql(self) -> str:
        return "-- the memory store keeps no schema\n"

    def close(self) -> None:
        """State outlives the store object, by design (see the module docstring)."""


def open_store(spec: StoreSpec) -> MemoryStore:
    name = (spec.url or "memory://").partition("://")[2] or str(spec.options.get("name", ""))
    return MemoryStore(name)


# -- the run queue ----------------------------------------------------------------------------


class _Runs:
    """The memory store's runs, attempts and workers (inside a store's shared state)."""

    def __init__(self) -> None:
        self.rows: dict[str, Run] = {}
        self.keys: dict[str, str] = {}  # idempotency key -> run id
        self.flow_keys: dict[str, str] = {}  # run id -> concurrency key (runs that have one)
        self.buckets: dict[tuple[str, str | None], Bucket] = {}  # rate limits per (kind, key)
        self.attempts: list[AttemptRecord] = []
        self.workers: dict[str, WorkerInfo] = {}
        self.changed = threading.Condition()


class MemoryRunQueue:
    def __init__(self, state: _State) -> None:
        self._mutex = state.mutex
        self._runs = state.runs

    def now(self) -> datetime:
        return utcnow()

    def run_counts(self, since: datetime | None = None, cap: int = STATS_CAP) -> RunCounts:
        now = utcnow()
        since = now - timedelta(seconds=COUNT_WINDOW) if since is None else since
        queued: dict[str, int] = {}
        running: dict[str, int] = {}
        finished: dict[tuple[str, str], int] = {}
        oldest: dict[str, datetime] = {}
        with self._mutex:
            for run in self._runs.rows.values():
                if run.state == "queued":
                    queued[run.kind] = min(queued.get(run.kind, 0) + 1, cap + 1)
                    if run.run_at <= now:
                        oldest[run.kind] = min(run.run_at, oldest.get(run.kind, run.run_at))
                elif run.state == "running":
                    running[run.kind] = running.get(run.kind, 0) + 1
                elif run.finished_at is not None and run.finished_at >= since:
                    finished[run.kind, run.state] = finished.get((run.kind, run.state), 0) + 1
        return counted(now, since, queued, running, finished, oldest, cap)

    def enqueue(self, runs: Sequence[NewRun], connection: Any = None) -> list[Enqueued]:
        if connection is not None:
            raise UnsupportedFeature(
                "the memory store cannot enqueue inside your transaction (connection=...)"
            )
        with self._mutex:
            results = enqueue_debounced(
                runs, utcnow(), self._merge, lambda batch: [self._insert(new) for new in batch]
            )
        self._announce()
        return results

    def _merge(self, new: NewRun, at: datetime) -> Run | None:
        """The key's queued run not yet started, given ``new``'s input and ``at``."""
        for run in self._runs.rows.values():
            if (
                run.kind == new.kind
                and run.state == "queued"
                and run.attempt == 0
                and run.idempotency_key is None
                and self._runs.flow_keys.get(run.id) == new.concurrency_key
            ):
                merged = replace(
                    run, input=json.loads(new.input_json), run_at=at, updated_at=utcnow()
                )
                self._runs.rows[run.id] = merged
                return merged
        return None

    def _insert(self, new: NewRun) -> Enqueued:
        key = new.idempotency_key
        if key is not None and key in self._runs.keys:
            return Enqueued(self._runs.rows[self._runs.keys[key]], created=False)
        now = utcnow()
        run = Run(
            id=new.id,
            kind=new.kind,
            input=json.loads(new.input_json),
            state="queued",
            attempt=0,
            max_attempts=new.max_attempts,
            priority=new.priority,
            run_at=new.run_at or now,
            created_at=now,
            updated_at=now,
            project_id=new.project_id,
            idempotency_key=key,
            correlation_id=new.correlation_id,
            trace_context=new.trace_context,
        )
        self._runs.rows[run.id] = run
        if key is not None:
            self._runs.keys[key] = run.id
        if new.concurrency_key is not None:
            self._runs.flow_keys[run.id] = new.concurrency_key
        return Enqueued(run, created=True)

    def claim(
        self, worker_id: str, kinds: Sequence[str] | None, limit: int, lease: float
    ) -> list[Run]:
        return self._claim(ClaimRequest(worker_id, kinds, limit, lease))

    def _claim(self, request: ClaimRequest) -> list[Run]:
        if not request.limits:
            return self._claim_plain(request.worker_id, request.kinds, request.limit, request.lease)
        limited, unlimited = split_claim(request)
        with self._mutex:  # counting and claiming under the store's lock: atomic
            now = utcnow()
            flow_keys = self._runs.flow_keys
            running: dict[tuple[str, str | None], int] = {}
            due: list[Run] = []
            for run in self._runs.rows.values():
                if run.kind not in limited:
                    continue
                if run.state == "running" and (
                    run.lease_expires_at is not None and run.lease_expires_at > now
                ):
                    group = (run.kind, flow_keys.get(run.id))
                    running[group] = running.get(group, 0) + 1
                elif run.state == "queued" and run.run_at <= now:
                    due.append(run)
            rated = rated_kinds(request)
            unbound(limited, unlimited, running, rated, limited_want(request))
            due = [r for r in due if r.kind in limited]
            due.sort(key=lambda r: (-r.priority, r.run_at, r.id))
            candidates = [(r.id, r.kind, flow_keys.get(r.id)) for r in due]
            buckets = self._runs.buckets
            room = rate_room(rated, buckets, now) if rated else None
            ids = pick_limited(candidates, running, limited, limited_want(request), room)
            if rated:
                buckets.update(spent_buckets(rated, buckets, started_groups(candidates, ids), now))
            claimed = [self._claimed(self._runs.rows[i], request, now) for i in ids]
            self._store(claimed)
            rest = request.limit - len(claimed)
            if unlimited and rest > 0:
                claimed += self._claim_plain(request.worker_id, unlimited, rest, request.lease)
            return claimed

    def _claimed(self, run: Run, request: ClaimRequest, now: datetime) -> Run:
        return replace(
            run,
            state="running",
            attempt=run.attempt + 1,
            claimed_by=request.worker_id,
            claimed_at=now,
            started_at=now,
            lease_expires_at=now + timedelta(seconds=request.lease),
            updated_at=now,
            progress=None,
            progress_message=None,
        )

    def _claim_plain(
        self, worker_id: str, kinds: Sequence[str] | None, limit: int, lease: float
    ) -> list[Run]:
        with self._mutex:
            now = utcnow()
            due = sorted(
                (
                    r
                    for r in self._runs.rows.values()
                    if r.state == "queued" and r.run_at <= now and (not kinds or r.kind in kinds)
                ),
                key=lambda r: (-r.priority, r.run_at, r.id),
            )[:limit]
            until = now + timedelta(seconds=lease)
            claimed = [
                replace(
                    r,
                    state="running",
                    attempt=r.attempt + 1,
                    claimed_by=worker_id,
                    claimed_at=now,
                    started_at=now,
                    lease_expires_at=until,
                    updated_at=now,
                    progress=None,  # a new attempt starts over
                    progress_message=None,
                )
                for r in due
            ]
            self._store(claimed)
            return claimed

    def exchange(
        self, outcomes: Sequence[Outcome], claim: ClaimRequest | None
    ) -> tuple[list[Landed | None], list[Run]]:
        with self._mutex:
            done = self.complete(outcomes) if outcomes else []
            if claim is None:
                return done, []
            return done, self._claim(claim)

    def heartbeat(self, fences: Sequence[Fence], lease: float) -> dict[str, Beat]:
        beats: dict[str, Beat] = {}
        with self._mutex:
            until = utcnow() + timedelta(seconds=lease)
            for fence in fences:
                run = self._current(fence)
                if run is None:
                    beats[fence.run_id] = "lost"
                    continue
                self._store([replace(run, lease_expires_at=until)])
                beats[fence.run_id] = "cancel" if run.cancel_requested else "ok"
        return beats

    def progress(self, fence: Fence, percent: int, message: str | None) -> bool:
        with self._mutex:
            run = self._current(fence)
            if run is None:
                return False
            self._store(
                [replace(run, progress=percent, progress_message=message, updated_at=utcnow())]
            )
            return True

    def complete(self, outcomes: Sequence[Outcome]) -> list[Landed | None]:
        with self._mutex:
            done = [self._complete_one(outcome) for outcome in outcomes]
        if any(o.kind in ("retry", "released") for o in outcomes):
            self._announce()
        return [None if run is None else landed_of(run) for run in done]

    def _complete_one(self, outcome: Outcome) -> Run | None:
        run = self._current(outcome.fence)
        if run is None:
            return None
        now = utcnow()
        if outcome.kind == "succeeded":
            result = None if outcome.result_json is None else json.loads(outcome.result_json)
            after = replace(
                run,
                state="succeeded",
                result=result,
                output_ref=outcome.output_ref,
                finished_at=now,
                lease_expires_at=None,
                updated_at=now,
            )
        elif outcome.kind in ("failed", "canceled"):
            after = replace(
                run,
                state=outcome.kind,
                error=outcome.error,
                finished_at=now,
                lease_expires_at=None,
                updated_at=now,
            )
        elif outcome.kind == "retry":
            after = replace(
                run,
                state="queued",
                error=outcome.error,
                run_at=outcome.run_at or now,
            )
        else:  # released: handed back without spending the attempt
            after = replace(run, state="queued", attempt=run.attempt - 1)
        if outcome.kind != "succeeded":
            self._record_attempt(run, outcome.kind, outcome.error, now, outcome.traceback)
        if after.state == "queued":
            after = _unclaimed(after, now)
        self._store([after])
        return after

    def cancel(self, run_id: str) -> Run | None:
        with self._mutex:
            run = self._runs.rows.get(run_id)
            if run is None:
                return None
            now = utcnow()
            if run.state == "queued":
                run = replace(
                    run, state="canceled", cancel_requested=True, finished_at=now, updated_at=now
                )
            elif run.state == "running":
                run = replace(run, cancel_requested=True, updated_at=now)
            self._store([run])
            return run

    def retry(self, run_id: str, run_at: datetime | None = None) -> Run | None:
        with self._mutex:
            run = self._runs.rows.get(run_id)
            if run is None or run.state not in ("failed", "canceled"):
                return run
            now = utcnow()
            run = replace(
                run,
                state="queued",
                run_at=run_at or now,
                max_attempts=run.attempt + 1,
                cancel_requested=False,
                finished_at=None,
                started_at=None,
                updated_at=now,
            )
            self._store([run])
        self._announce()
        return run

    def reclaim(self) -> list[Run]:
        with self._mutex:
            now = utcnow()
            expired = [
                r
                for r in self._runs.rows.values()
                if r.state == "running"
                and r.lease_expires_at is not None
                and r.lease_expires_at < now
            ]
            changed = [self._expire(run, now) for run in expired]
        if changed:
            self._announce()
        return changed

    def _expire(self, run: Run, now: datetime) -> Run:
        error = f"the lease of attempt {run.attempt} expired (worker {run.claimed_by} stopped "
        error += "heartbeating)"
        self._record_attempt(run, "lease-expired", error, now)
        if run.attempt >= run.max_attempts:
            after = replace(
                run,
                state="failed",
                error=error,
                finished_at=now,
                claimed_by=None,
                claimed_at=None,
                lease_expires_at=None,
                updated_at=now,
            )
        else:
            after = _unclaimed(replace(run, state="queued", error=error), now)
        self._store([after])
        return after

    def get(self, run_id: str) -> Run | None:
        with self._mutex:
            return self._runs.rows.get(run_id)

    def page(self, filters: RunFilter, after: tuple[datetime, str] | None, limit: int) -> list[Run]:
        with self._mutex:
            rows = [
                r
                for r in self._runs.rows.values()
                if _matches(r, filters) and (after is None or _beyond(r, after, filters.order))
            ]
        rows.sort(key=lambda r: (r.created_at, r.id), reverse=filters.order == "newest")
        return rows[:limit]

    def flow_of(self, run_id: str) -> FlowCount | None:
        """The run's concurrency key and the runs of its (kind, key) running now."""
        with self._mutex:
            run = self._runs.rows.get(run_id)
            if run is None:
                return None
            keys, now = self._runs.flow_keys, utcnow()
            key = keys.get(run_id)
            running = sum(
                1
                for other in self._runs.rows.values()
                if other.kind == run.kind
                and other.state == "running"
                and keys.get(other.id) == key
                and other.lease_expires_at is not None
                and other.lease_expires_at > now
            )
            bucket = self._runs.buckets.get((run.kind, key))
            if bucket is None:
                return FlowCount(key, running)
            return FlowCount(key, running, bucket.tokens, bucket.at)

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        with self._mutex:
            return [a for a in self._runs.attempts if a.run_id == run_id]

    def prune(
        self, succeeded_before: datetime, failed_before: datetime, limit: int | None = None
    ) -> int:
        with self._mutex:
            doomed = [
                r
                for r in self._runs.rows.values()
                if r.finished_at is not None
                and (
                    (r.state == "succeeded" and r.finished_at < succeeded_before)
                    or (r.state in ("failed", "canceled") and r.finished_at < failed_before)
                )
            ]
            if limit is not None:
                doomed.sort(key=lambda r: (r.finished_at, r.id))
                del doomed[limit:]
            for run in doomed:
                del self._runs.rows[run.id]
                if run.idempotency_key is not None:
                    self._runs.keys.pop(run.idempotency_key, None)
                self._runs.flow_keys.pop(run.id, None)
            gone = {r.id for r in doomed}
            self._runs.attempts = [a for a in self._runs.attempts if a.run_id not in gone]
            return len(doomed)

    def wait_for_work(self, timeout: float) -> None:
        with self._runs.changed:
            self._runs.changed.wait(timeout)

    def worker_seen(self, info: WorkerInfo) -> None:
        with self._mutex:
            self._runs.workers[info.id] = info

    def workers(self, stopped: int = STOPPED_SHOWN) -> list[WorkerInfo]:
        with self._mutex:
            return shown_workers(self._runs.workers.values(), stopped)

    def prune_workers(self, seen_before: datetime) -> int:
        with self._mutex:
            gone = [w.id for w in self._runs.workers.values() if w.last_seen < seen_before]
            for worker_id in gone:
                del self._runs.workers[worker_id]
            return len(gone)

    def stats(self, since: datetime, cap: int = STATS_CAP) -> RunStats:
        return stats_of(self.run_counts(since, cap))

    def _current(self, fence: Fence) -> Run | None:
        run = self._runs.rows.get(fence.run_id)
        if run is None or run.state != "running" or run.attempt != fence.attempt:
            return None
        return run if run.claimed_by == fence.worker_id else None

    def _record_attempt(
        self,
        run: Run,
        outcome: str,
        error: str | None,
        now: datetime,
        traceback: str | None = None,
    ) -> None:
        self._runs.attempts.append(
            AttemptRecord(
                run.id,
                run.attempt,
                run.claimed_by or "",
                run.started_at,
                now,
                outcome,  # type: ignore[arg-type]
                error,
                traceback,
            )
        )

    def _store(self, runs: Iterable[Run]) -> None:
        for run in runs:
            self._runs.rows[run.id] = run

    def _announce(self) -> None:
        with self._runs.changed:
            self._runs.changed.notify_all()

    def start(self, run: NewRun, worker_id: str, lease: float) -> Run:
        if run.idempotency_key is not None:
            raise UsageError("a run started at once takes no idempotency key")
        with self._mutex:
            queued = self._insert(run).run
            now = queued.created_at
            started = replace(
                queued,
                state="running",
                attempt=1,
                claimed_by=worker_id,
                claimed_at=now,
                started_at=now,
                lease_expires_at=now + timedelta(seconds=lease),
            )
            self._store([started])
            return started


def _unclaimed(run: Run, now: datetime) -> Run:
    return replace(
        run,
        claimed_by=None,
        claimed_at=None,
        lease_expires_at=None,
        started_at=None,
        updated_at=now,
    )


def _beyond(run: Run, after: tuple[datetime, str], order: str) -> bool:
    """Whether ``run`` comes after the page's last run ``after``, in that order."""
    key = (run.created_at, run.id)
    return key < after if order == "newest" else key > after


def _matches(run: Run, filters: RunFilter) -> bool:
    return (
        (filters.project_id is None or run.project_id == filters.project_id)
        and (filters.state is None or run.state == filters.state)
        and (filters.kind is None or run.kind == filters.kind)
        and (filters.since is None or run.created_at >= filters.since)
        and (filters.before is None or run.created_at < filters.before)
        and (filters.idempotency_key is None or run.idempotency_key == filters.idempotency_key)
        and (filters.correlation_id is None or run.correlation_id == filters.correlation_id)
        and (filters.ids is None or run.id in filters.ids)
        and (filters.project_ids is None or run.project_id in filters.project_ids)
    )


# -- schedules ----------------------------------------------------------------------------------


class MemorySchedules:
    def __init__(self, state: _State) -> None:
        self._mutex = state.mutex
        self._rows = state.schedules

    def insert(self, definition: ScheduleDefinition, next_run_at: datetime) -> bool:
        with self._mutex:
            if definition.name in self._rows:
                return False
            now = utcnow()
            self._rows[definition.name] = Schedule(
                **asdict(definition),
                enabled=True,
                next_run_at=next_run_at,
                created_at=now,
                updated_at=now,
            )
            return True

    def update_definition(
        self, definition: ScheduleDefinition, next_run_at: datetime | None
    ) -> Schedule | None:
        with self._mutex:
            found = self._rows.get(definition.name)
            if found is None:
                return None
            changes: dict[str, Any] = asdict(definition)
            if next_run_at is not None:
                changes["next_run_at"] = next_run_at
            return self._replace(found, **changes)

    def get(self, name: str) -> Schedule | None:
        with self._mutex:
            return self._rows.get(name)

    def all(self) -> list[Schedule]:
        with self._mutex:
            return [self._rows[name] for name in sorted(self._rows)]

    def advance(self, name: str, tick: datetime, next_run_at: datetime, run_id: str) -> bool:
        with self._mutex:
            found = self._rows.get(name)
            if found is None or found.next_run_at != tick:
                return False
            self._replace(found, next_run_at=next_run_at, last_run_at=tick, last_run_id=run_id)
            return True

    def set_enabled(
        self, name: str, enabled: bool, next_run_at: datetime | None = None
    ) -> Schedule | None:
        with self._mutex:
            found = self._rows.get(name)
            if found is None:
                return None
            when = found.next_run_at if next_run_at is None else next_run_at
            return self._replace(found, enabled=enabled, next_run_at=when)

    def _replace(self, found: Schedule, **changes: Any) -> Schedule:
        changed = self._rows[found.name] = replace(found, **changes, updated_at=utcnow())
        return changed


# -- tokens -----------------------------------------------------------------------------------


class MemoryTokens:
    """The HTTP API's tokens, in the store's shared state."""

    def __init__(self, state: _State) -> None:
        self._mutex = state.mutex
        self._tokens = state.tokens

    def create(self, token: NewToken) -> Token:
        with self._mutex:
            if token.id in self._tokens:
                raise UsageError(f"a token with the id {token.id} exists already")
            made = Token(
                token.id, token.name, token.secret_hash, token.scopes, token.projects, utcnow()
            )
            self._tokens[token.id] = made
            return made

    def find(self, token_id: str) -> Token | None:
        with self._mutex:
            return self._tokens.get(token_id)

    def list(self) -> list[Token]:
        with self._mutex:
            return sorted(self._tokens.values(), key=lambda t: (t.created_at, t.id))

    def revoke(self, token_id: str) -> Token | None:
        with self._mutex:
            token = self._tokens.get(token_id)
            if token is not None and token.revoked_at is None:
                token = self._tokens[token_id] = replace(token, revoked_at=utcnow())
            return token

    def touch(self, token_id: str) -> None:
        with self._mutex:
            token = self._tokens.get(token_id)
            if token is not None:
                self._tokens[token_id] = replace(token, last_used_at=utcnow())
