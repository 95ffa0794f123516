"""``POST /v1/tasks/{id}:pause|:resume|:cancel``: ask a backfill to stop at its next batch
boundary, or withdraw that request (docs/backfills.md), as ``runce pause|resume|cancel ID`` do.

Once tasks belong to no project, so these need ``runs:write`` on a token bound to none.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from runce.api.appstate import AppState, app_state
from runce.api.auth import require
from runce.api.problems import answers
from runce.api.schemas import TaskControlAnswer
from runce.tasks import control

router = APIRouter(
    prefix="/v1",
    tags=["tasks"],
    dependencies=[Depends(require("runs:write", all_projects=True))],
)

Ctx = Annotated[AppState, Depends(app_state)]
_ANSWERS = answers(401, 403, 422, 500, 503)


@router.post("/tasks/{task_id}:pause", response_model=TaskControlAnswer, responses=_ANSWERS)
def pause(task_id: str, ctx: Ctx) -> TaskControlAnswer:
    """Pause at the next batch boundary, keeping the checkpoint; later tasks wait."""
    return TaskControlAnswer.model_validate(control.pause_task(task_id, ctx.config).to_dict())


@router.post("/tasks/{task_id}:resume", response_model=TaskControlAnswer, responses=_ANSWERS)
def resume(task_id: str, ctx: Ctx) -> TaskControlAnswer:
    """Withdraw a pause or cancel; the next run goes on from the checkpoint."""
    return TaskControlAnswer.model_validate(control.resume_task(task_id, ctx.config).to_dict())


@router.post("/tasks/{task_id}:cancel", response_model=TaskControlAnswer, responses=_ANSWERS)
def cancel(task_id: str, ctx: Ctx) -> TaskControlAnswer:
    """Stop at the next batch boundary and stay stopped; later tasks go on."""
    return TaskControlAnswer.model_validate(control.cancel_task(task_id, ctx.config).to_dict())
