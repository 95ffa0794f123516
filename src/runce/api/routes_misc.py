"""``GET /healthz`` (no token) and ``GET /v1/tasks`` (the once tasks' status)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from runce.api.appstate import AppState, app_state
from runce.api.auth import require
from runce.api.problems import answers
from runce.api.schemas import Health, Problem, TaskList
from runce.tasks import library as tasks_library

router = APIRouter()

Ctx = Annotated[AppState, Depends(app_state)]


@router.get(
    "/healthz",
    response_model=Health,
    tags=["health"],
    responses={503: {"model": Problem, "description": "The store does not answer"}},
)
def healthz(ctx: Ctx) -> Health:
    """200 when the store answers (its clock is read); 503 ``store-unavailable`` otherwise."""
    ctx.store.schema_status()  # a read that reaches the database itself
    now = ctx.queue.now()
    return Health(status="ok", store=ctx.store.description, time=now)


@router.get(
    "/v1/tasks",
    response_model=TaskList,
    tags=["tasks"],
    dependencies=[Depends(require("runs:read"))],
    responses=answers(401, 403, 500, 503),
)
def tasks(ctx: Ctx) -> TaskList:
    """Every once task with its state, as ``runce status --json`` prints it; a missing
    tasks folder is the problem ``runce status`` reports (``tasks-unreadable``)."""
    report = tasks_library.status_on(ctx.store, ctx.config)
    return TaskList.model_validate(report.to_dict())
