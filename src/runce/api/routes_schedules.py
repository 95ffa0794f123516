"""``/v1/schedules``: the stored cron schedules, listed and switched on or off
(docs/runs.md#cron-schedules, docs/remote.md).

Each route is one call into :mod:`runce.runs.library` (``list_schedules``, ``enable_schedule``,
``disable_schedule``) on the server's configuration, the same calls ``runce schedules``
makes on a store. A schedule belongs to no project: any ``runs:read`` token lists them (as
it lists workers), but its runs are enqueued without a project, so only a token bound to
no project may switch one (as only such a token may prune).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from runce.api.appstate import AppState, app_state
from runce.api.auth import require
from runce.api.params import Name
from runce.api.problems import answers
from runce.api.schemas import ScheduleList, ScheduleModel
from runce.runs import library as runs_library

router = APIRouter(prefix="/v1", tags=["schedules"], responses=answers(401, 403, 503))

Ctx = Annotated[AppState, Depends(app_state)]

READ = [Depends(require("runs:read"))]
SWITCH = [Depends(require("runs:write", all_projects=True))]
SWITCH_ANSWERS: dict[int | str, dict[str, Any]] = {
    **answers(422),
    403: {"description": "The token lacks `runs:write`, or is bound to projects (`forbidden`)"},
    404: {"description": "No stored schedule has this name (`not-found`)"},
}


@router.get("/schedules", response_model=ScheduleList, dependencies=READ)
def list_schedules(ctx: Ctx) -> ScheduleList:
    """Every stored schedule, by name (a worker stores those its code declares)."""
    found = runs_library.list_schedules(config=ctx.config)
    return ScheduleList(schedules=[ScheduleModel.from_schedule(s) for s in found])


@router.post(
    "/schedules/{name}:enable",
    response_model=ScheduleModel,
    dependencies=SWITCH,
    responses=SWITCH_ANSWERS,
)
def enable_schedule(name: Name, ctx: Ctx) -> ScheduleModel:
    """Switch a schedule on: it next runs at its first tick from now (no catch-up run)."""
    return ScheduleModel.from_schedule(runs_library.enable_schedule(name, config=ctx.config))


@router.post(
    "/schedules/{name}:disable",
    response_model=ScheduleModel,
    dependencies=SWITCH,
    responses=SWITCH_ANSWERS,
)
def disable_schedule(name: Name, ctx: Ctx) -> ScheduleModel:
    """Switch a schedule off: no worker enqueues its ticks until it is enabled again."""
    return ScheduleModel.from_schedule(runs_library.disable_schedule(name, config=ctx.config))
