"""``/v1/runs`` for callers: enqueue, read, list, cancel, retry, prune (docs/http-api.md).

Each route is a thin call into :class:`~runce.runs.service.RunService`; runce's own errors
become problems in :mod:`runce.api.problems`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response

from runce.api import idempotency
from runce.api.appstate import AppState, app_state
from runce.api.auth import Caller, require
from runce.api.params import Cursor, NameFilter, PageSize, RunId, TimeFilter
from runce.api.problems import ProblemError, answers, field_errors
from runce.api.ratelimit import spend
from runce.api.schemas import (
    AttemptList,
    AttemptModel,
    EnqueueRequest,
    FlowModel,
    PruneRequest,
    PruneResult,
    RunList,
    RunModel,
)
from runce.domain.runs import RunFilter, RunOrder, RunState
from runce.errors import InvalidInput

router = APIRouter(prefix="/v1", tags=["runs"], responses=answers(401, 403, 422, 503))

Ctx = Annotated[AppState, Depends(app_state)]
Reader = Annotated[Caller, Depends(require("runs:read"))]
Writer = Annotated[Caller, Depends(require("runs:write"))]
Pruner = Annotated[Caller, Depends(require("runs:write", all_projects=True))]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=idempotency.HEADER,
        description="The key, percent-encoded as UTF-8: 1-255 characters without control "
        "characters once decoded; printable ASCII other than % and spaces may be sent as is",
        # Declared, not checked here: idempotency.from_header says what is wrong in words.
        json_schema_extra={
            "minLength": 1,
            "maxLength": idempotency.MAX_HEADER,
            "pattern": idempotency.HEADER_PATTERN,
        },
    ),
]


Traceparent = Annotated[
    str | None,
    Header(
        description="The caller's W3C trace context: the run's spans continue its trace "
        "(ignored when malformed)",
    ),
]
Tracestate = Annotated[str | None, Header(description="W3C vendor trace state, with traceparent")]


@router.post(
    "/runs",
    status_code=201,
    response_model=RunModel,
    responses={
        200: {
            "model": RunModel,
            "description": "An earlier run with the same key, kind, input and project",
        },
        **answers(408, 409, 413, 429),
    },
)
def enqueue(
    body: EnqueueRequest,
    response: Response,
    ctx: Ctx,
    caller: Writer,
    key: IdempotencyKey = None,
    traceparent: Traceparent = None,
    tracestate: Tracestate = None,
) -> RunModel:
    """Enqueue a run; with ``Idempotency-Key``, the same key, kind, input and project
    return the same run (its options are the first request's)."""
    spend(ctx.enqueue_limit, caller.token.id, "enqueue")
    project_id = caller.check_project(body.project_id)
    body = body.model_copy(update={"project_id": project_id})
    try:
        [result] = ctx.runs.enqueue_results(
            body.kind,
            [body.input],
            idempotency_keys=[None if key is None else idempotency.from_header(key)],
            run_at=body.run_at,
            max_attempts=body.max_attempts,
            priority=body.priority,
            project_id=body.project_id,
            correlation_id=body.correlation_id,
            trace_context=_trace_context(traceparent, tracestate),
            concurrency_key=body.concurrency_key,
        )
    except InvalidInput as exc:
        errors = field_errors([{"loc": ["input", *e["loc"]], "msg": e["msg"]} for e in exc.errors])
        raise ProblemError("invalid-input", str(exc), errors=errors or None) from None
    if not result.created:  # the service checked it is the same request
        response.status_code = 200
    return RunModel.from_run(result.run)


def _trace_context(traceparent: str | None, tracestate: str | None) -> dict[str, str] | None:
    if traceparent is None:
        return None
    return {"traceparent": traceparent, "tracestate": tracestate or ""}


@router.get("/runs", response_model=RunList)
def list_runs(
    ctx: Ctx,
    caller: Reader,
    project_id: NameFilter = None,
    state: RunState | None = None,
    kind: NameFilter = None,
    since: TimeFilter = None,
    before: TimeFilter = None,
    cursor: Cursor = None,
    limit: PageSize = 50,
    order: RunOrder = "newest",
) -> RunList:
    """Runs newest first, or oldest first with ``order=oldest``; pass ``next_cursor`` back
    as ``cursor`` (with the same ``order``) for the next page. Without ``project_id``, a
    token bound to projects lists the runs of all of them."""
    projects = caller.projects_to_read(project_id)
    filters = RunFilter(None, state, kind, since, before, order=order, project_ids=projects)
    page = ctx.runs.page(filters, cursor=cursor, limit=limit)
    return RunList(runs=[RunModel.from_run(r) for r in page.runs], next_cursor=page.next_cursor)


# {run_id:run_id} matches no ":", so /v1/runs/{id}:cancel is never read as a run id here.
@router.get("/runs/{run_id:run_id}", response_model=RunModel, responses=answers(404))
def get_run(run_id: RunId, ctx: Ctx, caller: Reader) -> RunModel:
    return RunModel.from_run(caller.check_run(ctx.runs.get(run_id)))


@router.get("/runs/{run_id}/flow", response_model=FlowModel, responses=answers(404))
def flow(run_id: RunId, ctx: Ctx, caller: Reader) -> FlowModel:
    """The run's flow-control limit and, for a due queued run it holds back, why it waits."""
    status = ctx.runs.flow(caller.check_run(ctx.runs.get(run_id)))
    return FlowModel(limit=status.limit, waiting=status.waiting)


@router.get("/runs/{run_id}/attempts", response_model=AttemptList, responses=answers(404))
def attempts(run_id: RunId, ctx: Ctx, caller: Reader) -> AttemptList:
    """The attempts that did not succeed, oldest first."""
    caller.check_run(ctx.runs.get(run_id))
    records = ctx.runs.attempts(run_id)
    return AttemptList(attempts=[AttemptModel.from_record(r) for r in records])


@router.post("/runs/{run_id}:cancel", response_model=RunModel, responses=answers(404, 409, 429))
def cancel(run_id: RunId, ctx: Ctx, caller: Writer) -> RunModel:
    """Queued: canceled now. Running: asked to stop (``cancel_requested``)."""
    spend(ctx.cancel_limit, caller.token.id, "cancel")
    caller.check_run(ctx.runs.get(run_id))
    return RunModel.from_run(ctx.runs.cancel(run_id))


@router.post("/runs/{run_id}:retry", response_model=RunModel, responses=answers(404, 409))
def retry(run_id: RunId, ctx: Ctx, caller: Writer) -> RunModel:
    """A failed or canceled run back to the queue, with one more attempt."""
    caller.check_run(ctx.runs.get(run_id))
    return RunModel.from_run(ctx.runs.retry(run_id))


@router.post("/runs:prune", response_model=PruneResult, responses=answers(408, 413))
def prune(body: PruneRequest, ctx: Ctx, caller: Pruner) -> PruneResult:
    """Delete finished runs of every project (so only a token bound to no project may);
    absent ages take the server's ``runs.retention.*``."""
    retention = ctx.config.retention
    deleted = ctx.runs.prune(
        retention.succeeded if body.succeeded_after is None else body.succeeded_after,
        retention.failed if body.failed_after is None else body.failed_after,
        batch=retention.batch,
    )
    return PruneResult(deleted=deleted)
