"""The dashboard's actions (POST forms): sign in and out, cancel and retry a run, switch a
schedule, pause, resume or cancel a once task (a backfill). Each checks the form's CSRF
token and the token's scope (``runs:write``) before calling the library, then sends the
browser back to the page it came from.

Forms arrive URL-encoded and are read here (no multipart parser needed); the work itself
runs on the thread pool like the API's routes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from runce.api.appstate import AppState, app_state
from runce.api.ratelimit import RateLimiter, spend
from runce.api.ui import pages
from runce.api.ui.render import PageError, redirect
from runce.api.ui.session import (
    SESSION,
    SignInNeeded,
    check_csrf,
    check_sign_in_csrf,
    clear,
    set_cookie,
    viewer,
    viewer_for,
    writer,
)
from runce.errors import (
    IllegalTransition,
    TaskLoadError,
    UnknownSchedule,
    UnknownTask,
    UsageError,
)
from runce.runs import library as runs_library
from runce.tasks import control

router = APIRouter(prefix="/ui", include_in_schema=False)
Ctx = Annotated[AppState, Depends(app_state)]
MAX_FORM = 16 * 1024


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM:
        raise PageError(413, "the form is too large")
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


@router.post("/login")
async def login(request: Request, ctx: Ctx) -> Response:
    form = await _form(request)
    check_sign_in_csrf(request, form.get("csrf"))
    token = form.get("token", "").strip()
    target = pages.safe_next(form.get("next"))

    def check() -> Response:
        try:
            viewer_for(ctx, token)  # checked exactly as each later request will be
        except SignInNeeded:  # said on the form, not by a redirect
            return pages.sign_in_page(request, target, "That token is unknown or revoked.", 401)
        response = redirect(target)
        set_cookie(request, response, SESSION, token)
        return response

    return await run_in_threadpool(check)


@router.post("/logout")
async def logout(request: Request, ctx: Ctx) -> Response:
    form = await _form(request)
    found = await run_in_threadpool(viewer, request, ctx)
    check_csrf(found, form.get("csrf"))
    response = redirect("/ui/login")
    clear(response)
    return response


@router.post("/runs/{run_id}/cancel")
async def cancel(run_id: str, request: Request, ctx: Ctx) -> Response:
    """As ``POST /v1/runs/{id}:cancel``, within the same per-token limit (``cancel_limit``)."""
    return await _on_run(request, ctx, run_id, ctx.runs.cancel, ctx.cancel_limit)


@router.post("/runs/{run_id}/retry")
async def retry(run_id: str, request: Request, ctx: Ctx) -> Response:
    return await _on_run(request, ctx, run_id, ctx.runs.retry)


async def _on_run(
    request: Request,
    ctx: AppState,
    run_id: str,
    act: Callable[[str], object],
    limit: RateLimiter | None = None,
) -> Response:
    form = await _form(request)

    def work() -> Response:
        found = writer(request, ctx, form.get("csrf"))
        if limit is not None:  # over it: 429 with Retry-After, a page on the dashboard
            spend(limit, found.caller.token.id, "cancel")
        pages.reachable_run(ctx, found, run_id)
        try:
            act(run_id)
        except IllegalTransition as exc:
            raise PageError(409, str(exc)) from None
        return redirect(f"/ui/runs/{quote(run_id, safe='')}")

    return await run_in_threadpool(work)


@router.post("/schedules/{name}/enable")
async def enable(name: str, request: Request, ctx: Ctx) -> Response:
    return await _switch(request, ctx, name, runs_library.enable_schedule)


@router.post("/schedules/{name}/disable")
async def disable(name: str, request: Request, ctx: Ctx) -> Response:
    return await _switch(request, ctx, name, runs_library.disable_schedule)


async def _switch(
    request: Request, ctx: AppState, name: str, switch: Callable[..., object]
) -> Response:
    form = await _form(request)

    def work() -> Response:
        found = writer(request, ctx, form.get("csrf"))
        if not found.sees_everything:  # a schedule's runs belong to no project (as in the API)
            raise PageError(403, "only a token bound to no project may switch schedules")
        try:
            switch(name, config=ctx.config)
        except UnknownSchedule as exc:
            raise PageError(404, str(exc)) from None
        return redirect("/ui/schedules")

    return await run_in_threadpool(work)


@router.post("/tasks/{task_id}/pause")
async def pause_task(task_id: str, request: Request, ctx: Ctx) -> Response:
    return await _on_task(request, ctx, task_id, control.pause_task)


@router.post("/tasks/{task_id}/resume")
async def resume_task(task_id: str, request: Request, ctx: Ctx) -> Response:
    return await _on_task(request, ctx, task_id, control.resume_task)


@router.post("/tasks/{task_id}/cancel")
async def cancel_task(task_id: str, request: Request, ctx: Ctx) -> Response:
    return await _on_task(request, ctx, task_id, control.cancel_task)


async def _on_task(
    request: Request, ctx: AppState, task_id: str, act: Callable[..., control.ControlResult]
) -> Response:
    """A pause, resume or cancel request, as ``POST /v1/tasks/{id}:pause`` and the CLI make
    it: ``runs:write`` on a token bound to no project (once tasks belong to none)."""
    form = await _form(request)

    def work() -> Response:
        found = writer(request, ctx, form.get("csrf"))
        if not found.sees_everything:
            raise PageError(403, "only a token bound to no project may pause or resume tasks")
        if "\x00" in task_id:
            raise PageError(404, "no task id holds a NUL character")
        try:
            act(task_id, config=ctx.config)
        except UnknownTask as exc:
            raise PageError(404, str(exc)) from None
        except (UsageError, TaskLoadError) as exc:
            raise PageError(409, str(exc)) from None
        return redirect("/ui/tasks")

    return await run_in_threadpool(work)
