"""``HttpRunQueue``: the :class:`~runce.stores.queue.RunQueue` contract over a runce server's
worker endpoints, so the ordinary :class:`~runce.runs.worker.Worker` runs jobs remotely
(docs/remote.md) without reaching the database.

Fencing is the server's: a write whose (run id, attempt, worker id) no longer holds gets
``null`` in a batch answer, ``lost`` in a heartbeat or 409 ``lease-lost``, and the worker
drops the run as it does on a local store. The server cannot be reached? That is a
:class:`~runce.errors.ServerUnavailable`, a store error, which the worker rides out.

A claim long-polls (the server holds it until work may be due) only while this queue has
no run out, so a busy worker's acknowledgements never wait behind an idle claim.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from runce.api.client import Client, _model, run_from_json, run_path, wire_time
from runce.api.schemas import MAX_BATCH, MAX_WAIT, RunCountsAnswer
from runce.domain.runs import (
    STATS_CAP,
    STOPPED_SHOWN,
    AttemptRecord,
    Beat,
    ClaimRequest,
    Enqueued,
    Fence,
    Landed,
    NewRun,
    Outcome,
    Run,
    RunCounts,
    RunFilter,
    RunStats,
    WorkerInfo,
    landed_of,
)
from runce.errors import (
    IllegalTransition,
    RemoteError,
    StoreError,
    UnknownRun,
    UnsupportedFeature,
)
from runce.stores.queue import RunQueue, shown_workers
from runce.timeutil import from_iso

log = logging.getLogger("runce.worker")

T = TypeVar("T")
# Bytes of outcomes in one request: half the server's default api.max_body (1 MiB), so a
# batch of failures with long tracebacks is sent in several requests, never refused.
BATCH_BYTES = 512 * 1024


class HttpRunQueue:
    """A run queue on a runce server. ``long_poll`` is the most seconds an idle claim waits
    on the server for work (0: never wait, as ``--drain`` wants)."""

    def __init__(self, client: Client, *, long_poll: float = 2.0) -> None:
        self.client = client
        self.long_poll = min(max(long_poll, 0.0), MAX_WAIT)
        self.description = f"runce server {client.url}"
        self._out: set[tuple[str, int]] = set()  # (run id, attempt) claimed, not yet completed
        self._mutex = threading.Lock()
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()
        self.client.close()

    # -- enqueueing ---------------------------------------------------------------------------

    def enqueue(self, runs: Sequence[NewRun], connection: Any = None) -> list[Enqueued]:
        if connection is not None:
            raise UnsupportedFeature(
                f"{self.description} cannot enqueue inside your database transaction "
                "(connection=); enqueue on the store itself for that"
            )
        return [self._enqueue_one(new) for new in runs]

    def _enqueue_one(self, new: NewRun) -> Enqueued:
        # The server gives the run its own id; ``new.id`` is not sent.
        run, created = self.client.enqueue_answer(
            new.kind,
            json.loads(new.input_json),
            idempotency_key=new.idempotency_key,
            run_at=new.run_at,
            max_attempts=new.max_attempts,
            priority=new.priority,
            project_id=new.project_id,
            correlation_id=new.correlation_id,
            trace_context=new.trace_context,
            # The key this process worked out (the server debounces by its own jobs).
            concurrency_key=new.concurrency_key,
        )
        return Enqueued(run, created)

    # -- claims and outcomes ------------------------------------------------------------------

    def claim(
        self, worker_id: str, kinds: Sequence[str] | None, limit: int, lease: float
    ) -> list[Run]:
        return self._claim(ClaimRequest(worker_id, kinds, limit, lease))

    def _claim(self, request: ClaimRequest) -> list[Run]:
        if request.limit < 1:
            return []
        wait = self._claim_wait()
        body: dict[str, Any] = {
            "worker_id": request.worker_id,
            "kinds": list(request.kinds) if request.kinds is not None else None,
            "limit": min(request.limit, MAX_BATCH),
            "lease": request.lease,
            "wait": wait,
        }
        if request.limits:  # the server's store enforces them
            body["limits"] = [
                {
                    "kind": limit.kind,
                    "concurrency": limit.concurrency,
                    "rate": limit.rate,
                    "per": limit.per,
                }
                for limit in request.limits
            ]
            body["room"] = request.room
        timeout = self.client.timeout + wait
        data = self.client.request("POST", "/v1/runs:claim", json=body, timeout=timeout).json()
        runs = [run_from_json(r) for r in data["runs"]]
        with self._mutex:
            self._out.update((r.id, r.attempt) for r in runs)
        return runs

    def _claim_wait(self) -> float:
        with self._mutex:
            idle = not self._out
        return self.long_poll if idle else 0.0

    def exchange(
        self, outcomes: Sequence[Outcome], claim: ClaimRequest | None
    ) -> tuple[list[Landed | None], list[Run]]:
        """Two requests, outcomes first. When the outcomes landed but the claim fails, the
        outcomes' answer is kept (sending them again would read as lost leases) and the
        claim is simply tried again next time."""
        done = self.complete(outcomes) if outcomes else []
        if claim is None:
            return done, []
        try:
            claimed = self._claim(claim)
        except StoreError as exc:
            if not outcomes:
                raise
            log.warning("worker.error: claiming after acknowledging failed: %s", exc)
            claimed = []
        return done, claimed

    def complete(self, outcomes: Sequence[Outcome]) -> list[Landed | None]:
        results: list[Landed | None] = []
        for chunk, bodies in _outcome_batches(outcomes):
            body = {"outcomes": bodies}
            data = self.client.request("POST", "/v1/runs:complete", json=body).json()
            results.extend(
                None if r is None else landed_of(run_from_json(r)) for r in data["results"]
            )
            self._returned((o.fence.run_id, o.fence.attempt) for o in chunk)
        return results

    def heartbeat(self, fences: Sequence[Fence], lease: float) -> dict[str, Beat]:
        beats: dict[str, Beat] = {}
        for worker_id in sorted({f.worker_id for f in fences}):
            mine = [f for f in fences if f.worker_id == worker_id]
            for chunk in _chunks(mine):
                beats.update(self._beat(worker_id, chunk, lease))
        lost = [(f.run_id, f.attempt) for f in fences if beats.get(f.run_id, "lost") == "lost"]
        self._returned(lost)
        return beats

    def _beat(self, worker_id: str, fences: Sequence[Fence], lease: float) -> dict[str, Beat]:
        body = {
            "worker_id": worker_id,
            "lease": lease,
            "runs": [{"run_id": f.run_id, "attempt": f.attempt} for f in fences],
        }
        answer: dict[str, Beat] = self.client.request(
            "POST", "/v1/runs:heartbeat", json=body
        ).json()["beats"]
        return answer

    def progress(self, fence: Fence, percent: int, message: str | None) -> bool:
        body = {"worker_id": fence.worker_id, "attempt": fence.attempt, "percent": percent}
        if message is not None:
            body["message"] = message[:1000]
        try:
            self.client.request("POST", run_path(fence.run_id, ":progress"), json=body)
        except RemoteError as exc:
            if exc.problem_type == "lease-lost":
                return False
            raise
        return True

    def reclaim(self) -> list[Run]:
        data = self.client.request("POST", "/v1/runs:reclaim", json={}).json()
        return [run_from_json(r) for r in data["runs"]]

    def _returned(self, claims: Iterable[tuple[str, int]]) -> None:
        with self._mutex:
            self._out.difference_update(claims)

    # -- reads and changes a worker may make ----------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        try:
            return self.client.get_run(run_id)
        except UnknownRun:
            return None

    def cancel(self, run_id: str) -> Run | None:
        try:
            return self.client.cancel_run(run_id)
        except UnknownRun:
            return None
        except IllegalTransition:
            return self.get(run_id)

    def retry(self, run_id: str, run_at: datetime | None = None) -> Run | None:
        if run_at is not None:
            raise UnsupportedFeature(f"{self.description} retries a run now, not at a set time")
        try:
            return self.client.retry_run(run_id)
        except UnknownRun:
            return None
        except IllegalTransition:
            return self.get(run_id)

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        try:
            return self.client.attempts(run_id)
        except UnknownRun:
            return []

    def page(self, filters: RunFilter, after: tuple[datetime, str] | None, limit: int) -> list[Run]:
        raise UnsupportedFeature(
            f"{self.description} is a worker's queue and does not page through runs; "
            "use runce.Client(...).list_runs"
        )

    def stats(self, since: datetime, cap: int = STATS_CAP) -> RunStats:
        raise UnsupportedFeature(
            f"{self.description} is a worker's queue and does not count runs; "
            "the server's dashboard (/ui) shows them"
        )

    def start(self, run: NewRun, worker_id: str, lease: float) -> Run:
        raise UnsupportedFeature(
            f"{self.description} is a worker's queue and cannot record a job called "
            "in-process; call job.now() where the store is configured"
        )

    def run_counts(self, since: datetime | None = None, cap: int = STATS_CAP) -> RunCounts:
        """``GET /v1/runs:counts``: what ``--drain`` asks when the worker's jobs have limits."""
        data = self.client.request("GET", "/v1/runs:counts").json()
        return _model(RunCountsAnswer, data).to_counts()

    def prune(
        self, succeeded_before: datetime, failed_before: datetime, limit: int | None = None
    ) -> int:
        raise UnsupportedFeature(
            f"{self.description} is a worker's queue and does not prune runs; "
            "use runce.Client(...).prune_runs or `runce runs prune --remote`"
        )

    # -- waiting, workers and the clock -------------------------------------------------------

    def wait_for_work(self, timeout: float) -> None:
        """A plain pause: the claim itself long-polls the server when this worker is idle."""
        self._closed.wait(timeout)

    def worker_seen(self, info: WorkerInfo) -> None:
        # Checked by the server, not here: a refusal is then runce's error, not pydantic's.
        body = {
            "id": info.id,
            "host": info.host,
            "pid": info.pid,
            "started_at": wire_time(info.started_at),
            "last_seen": wire_time(info.last_seen),
            "concurrency": info.concurrency,
            "kinds": list(info.kinds),
            "state": info.state,
        }
        self.client.request("PUT", f"/v1/workers/{quote(info.id, safe='')}", json=body)

    def workers(self, stopped: int = STOPPED_SHOWN) -> list[WorkerInfo]:
        """``GET /v1/workers``: the server's listing, already bounded the same way."""
        return shown_workers(self.client.workers(), stopped)

    def prune_workers(self, seen_before: datetime) -> int:
        raise UnsupportedFeature(
            f"{self.description} is a worker's queue and does not prune workers; "
            "use runce.Client(...).prune_runs or `runce runs prune --remote`"
        )

    def now(self) -> datetime:
        """The server's store clock, as ``/healthz`` reads it."""
        return from_iso(str(self.client.health()["time"]))


def _outcome(outcome: Outcome) -> dict[str, Any]:
    fence = outcome.fence
    body: dict[str, Any] = {
        "run_id": fence.run_id,
        "worker_id": fence.worker_id,
        "attempt": fence.attempt,
        "kind": outcome.kind,
    }
    if outcome.result_json is not None:
        body["result"] = json.loads(outcome.result_json)
    optional = {
        "output_ref": outcome.output_ref,
        "error": outcome.error,
        "run_at": wire_time(outcome.run_at),
        "traceback": outcome.traceback,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def _outcome_batches(
    outcomes: Sequence[Outcome],
) -> Iterator[tuple[Sequence[Outcome], list[dict[str, Any]]]]:
    """Outcomes with their bodies, at most MAX_BATCH a request and, past the first, at most
    BATCH_BYTES of JSON: errors and tracebacks (up to 16 KiB each) and results add up."""
    start, size = 0, 0
    bodies: list[dict[str, Any]] = []
    for index, outcome in enumerate(outcomes):
        body = _outcome(outcome)
        weight = len(json.dumps(body))  # escaped ASCII: never fewer bytes than on the wire
        if bodies and (len(bodies) == MAX_BATCH or size + weight > BATCH_BYTES):
            yield outcomes[start:index], bodies
            start, size, bodies = index, 0, []
        bodies.append(body)
        size += weight
    if bodies:
        yield outcomes[start:], bodies


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), MAX_BATCH):
        yield items[start : start + MAX_BATCH]


if TYPE_CHECKING:
    # mypy checks here that a remote worker's queue fulfils the run-queue contract.
    def _fulfils(queue: HttpRunQueue) -> RunQueue:
        return queue
