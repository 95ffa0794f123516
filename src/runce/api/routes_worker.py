"""The worker endpoints (docs/remote.md): a remote worker's claim, heartbeats and outcomes, over the
store's :class:`~runce.stores.queue.RunQueue`.

Every write about a claimed run carries its fence (run id, attempt, worker id); the queue
writes nothing when the fence no longer holds, and the single-run routes answer 409
``lease-lost`` then (the batch routes say so per run).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from runce.api.appstate import AppState, app_state
from runce.api.auth import require
from runce.api.params import Name, RunId
from runce.api.problems import ProblemError, answers
from runce.api.schemas import (
    BatchHeartbeatAnswer,
    BatchHeartbeatRequest,
    ClaimRequest,
    CompleteAnswer,
    CompleteRequest,
    FailRequest,
    HeartbeatAnswer,
    HeartbeatRequest,
    OutcomeModel,
    ProgressRequest,
    ReclaimRequest,
    RunCountsAnswer,
    RunModel,
    RunsAnswer,
    SucceedRequest,
    WorkerList,
    WorkerModel,
)
from runce.domain.runs import ClaimRequest as StoreClaim
from runce.domain.runs import Fence, KindLimit, Outcome, Run, Unreadable
from runce.errors import UsageError
from runce.runs.service import canonical_json, cap_error, cap_traceback

router = APIRouter(
    prefix="/v1",
    tags=["workers"],
    dependencies=[Depends(require("runs:work", all_projects=True))],
    responses=answers(401, 403, 408, 413, 422, 503),
)
# GET /v1/workers is a read for callers, not a worker endpoint.
readers = APIRouter(prefix="/v1", tags=["runs"], responses=answers(401, 403, 503))

Ctx = Annotated[AppState, Depends(app_state)]

LEASE_LOST = answers(409)


@router.post("/runs:claim", response_model=RunsAnswer)
def claim(body: ClaimRequest, ctx: Ctx) -> RunsAnswer:
    """Take up to ``limit`` due runs; with ``wait``, hold the request until one is due or
    ``wait`` seconds pass."""
    deadline = time.monotonic() + body.wait
    limits = tuple(
        KindLimit(limit.kind, limit.concurrency, limit.rate, limit.per) for limit in body.limits
    )
    if limits and body.kinds is None:
        raise UsageError("a claim with flow-control limits must name its kinds")
    request = StoreClaim(body.worker_id, body.kinds, body.limit, body.lease, limits, body.room)
    while True:
        if limits:
            runs = _readable(ctx, ctx.queue.exchange([], request)[1])
        else:
            runs = _readable(
                ctx, ctx.queue.claim(body.worker_id, body.kinds, body.limit, body.lease)
            )
        remaining = deadline - time.monotonic()
        if runs or remaining <= 0:
            return RunsAnswer(runs=[RunModel.from_run(r) for r in runs])
        ctx.queue.wait_for_work(remaining)


@router.post("/runs/{run_id}:heartbeat", response_model=HeartbeatAnswer, responses=LEASE_LOST)
def heartbeat(run_id: RunId, body: HeartbeatRequest, ctx: Ctx) -> HeartbeatAnswer:
    """Extend the lease; ``cancel`` asks the worker to stop the run cooperatively."""
    fence = Fence(run_id, body.attempt, body.worker_id)
    beat = ctx.queue.heartbeat([fence], body.lease).get(run_id, "lost")
    if beat == "lost":
        raise _lost(fence)
    return HeartbeatAnswer(status=beat)


@router.post(
    "/runs/{run_id}:progress", status_code=204, response_class=Response, responses=LEASE_LOST
)
def progress(run_id: RunId, body: ProgressRequest, ctx: Ctx) -> Response:
    fence = Fence(run_id, body.attempt, body.worker_id)
    if not ctx.queue.progress(fence, body.percent, body.message):
        raise _lost(fence)
    return Response(status_code=204)


@router.post("/runs/{run_id}:succeed", response_model=RunModel, responses=LEASE_LOST)
def succeed(run_id: RunId, body: SucceedRequest, ctx: Ctx) -> RunModel:
    fence = Fence(run_id, body.attempt, body.worker_id)
    text = canonical_json(body.result, "result")
    outcome = Outcome(fence, "succeeded", result_json=text, output_ref=body.output_ref)
    return _one(ctx, outcome)


@router.post("/runs/{run_id}:fail", response_model=RunModel, responses=LEASE_LOST)
def fail(run_id: RunId, body: FailRequest, ctx: Ctx) -> RunModel:
    """End an attempt without success: ``failed`` (final), ``retry`` (again at ``run_at``),
    ``canceled``, or ``released`` (handed back unfinished; the attempt is not spent)."""
    fence = Fence(run_id, body.attempt, body.worker_id)
    outcome = Outcome(
        fence,
        body.outcome,
        error=cap_error(body.error),
        run_at=body.run_at,
        traceback=_traceback(body.traceback),
    )
    return _one(ctx, outcome)


@router.post("/runs:complete", response_model=CompleteAnswer)
def complete(body: CompleteRequest, ctx: Ctx) -> CompleteAnswer:
    """Many outcomes in one write; ``null`` in ``results`` where the fence was lost."""
    outcomes = [_outcome(o) for o in body.outcomes]
    landed = ctx.queue.complete(outcomes)
    return CompleteAnswer(
        results=[
            None if done is None else _run_now(ctx, outcome.fence)
            for outcome, done in zip(outcomes, landed, strict=True)
        ]
    )


@router.post("/runs:heartbeat", response_model=BatchHeartbeatAnswer)
def heartbeat_many(body: BatchHeartbeatRequest, ctx: Ctx) -> BatchHeartbeatAnswer:
    fences = [Fence(f.run_id, f.attempt, body.worker_id) for f in body.runs]
    return BatchHeartbeatAnswer(beats=ctx.queue.heartbeat(fences, body.lease))


@router.post("/runs:reclaim", response_model=RunsAnswer)
def reclaim(body: ReclaimRequest, ctx: Ctx) -> RunsAnswer:
    """Put runs whose lease expired back in the queue (or fail them, when out of attempts)."""
    return RunsAnswer(runs=[RunModel.from_run(r) for r in ctx.queue.reclaim()])


@router.get("/runs:counts", response_model=RunCountsAnswer)
def run_counts(ctx: Ctx) -> RunCountsAnswer:
    """Runs per kind and state, and per kind the ``run_at`` of its oldest due queued run:
    a remote worker with flow-control limits asks before ``--drain`` stops on an empty
    claim, as runs of its limited kinds may still be due, held back by their limits."""
    return RunCountsAnswer.from_counts(ctx.queue.run_counts())


@router.put("/workers/{worker_id}", status_code=204, response_class=Response)
def worker_seen(worker_id: Name, body: WorkerModel, ctx: Ctx) -> Response:
    """Record a worker's heartbeat (``GET /v1/workers`` lists them)."""
    if body.id != worker_id:
        raise ProblemError(
            "invalid-request", f"the body's id {body.id!r} is not the path's {worker_id!r}"
        )
    ctx.queue.worker_seen(body.to_info())
    return Response(status_code=204)


@readers.get("/workers", response_model=WorkerList, dependencies=[Depends(require("runs:read"))])
def workers(ctx: Ctx) -> WorkerList:
    """Workers that reported to the store: every one not stopped and the last 20 stopped
    ones; and the flow-control limits of the server's jobs."""
    found = [WorkerModel.from_info(w) for w in ctx.queue.workers()]
    return WorkerList(workers=found, limits=ctx.runs.limits())


def _readable(ctx: AppState, runs: list[Run]) -> list[Run]:
    """The claimed runs a remote worker can be given: a run whose stored input cannot be
    read back (its row written around runce) is failed here, saying so, as a local worker
    fails it; its marker must not reach a job as if it were the input."""
    spoiled = [run for run in runs if isinstance(run.input, Unreadable)]
    if not spoiled:
        return runs
    ctx.queue.complete(
        [
            Outcome(
                run.fence, "failed", error=f"its stored input cannot be read: {run.input.reason}"
            )
            for run in spoiled
            if isinstance(run.input, Unreadable)
        ]
    )
    return [run for run in runs if not isinstance(run.input, Unreadable)]


def _outcome(model: OutcomeModel) -> Outcome:
    fence = Fence(model.run_id, model.attempt, model.worker_id)
    result = canonical_json(model.result, "result") if model.kind == "succeeded" else None
    error = cap_error(model.error) if model.error is not None else None
    stack = _traceback(model.traceback)
    return Outcome(fence, model.kind, result, model.output_ref, error, model.run_at, stack)


def _traceback(text: str | None) -> str | None:
    """A remote worker's traceback, kept as a local worker keeps its own: redacted, capped."""
    return None if text is None else cap_traceback(text)


def _one(ctx: AppState, outcome: Outcome) -> RunModel:
    [landed] = ctx.queue.complete([outcome])
    if landed is None:
        raise _lost(outcome.fence)
    return _run_now(ctx, outcome.fence)


def _run_now(ctx: AppState, fence: Fence) -> RunModel:
    """The run an outcome landed on, as it is now (read back: the answer carries it whole)."""
    run = ctx.queue.get(fence.run_id)
    if run is None:  # pruned in the meantime: the outcome still landed
        raise ProblemError("not-found", f"run {fence.run_id} is gone (pruned)")
    return RunModel.from_run(run)


def _lost(fence: Fence) -> ProblemError:
    return ProblemError(
        "lease-lost",
        f"run {fence.run_id} attempt {fence.attempt} is no longer claimed by "
        f"{fence.worker_id!r}; nothing was written",
    )
