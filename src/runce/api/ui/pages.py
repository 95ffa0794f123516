"""The dashboard's pages (GET): overview, runs, a run, once tasks, schedules, workers, the
sign-in form, the live state the pages poll, and the script and stylesheet."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib.resources import files
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from runce.api.appstate import AppState, app_state
from runce.api.problems import ProblemError
from runce.api.ui import views
from runce.api.ui.render import HEADERS, PageError, page, pretty, when
from runce.api.ui.session import SIGN_IN, Viewer, csrf_for, reader, set_cookie, sign_in_nonce
from runce.domain.runs import FINISHED, RUN_STATES, Run, RunFilter, RunState
from runce.errors import UnknownRun, UsageError
from runce.runs import redact

router = APIRouter(prefix="/ui", include_in_schema=False)
Ctx = Annotated[AppState, Depends(app_state)]
Text = Annotated[str | None, Query(max_length=1000)]
PAGE = 50
_STATIC = {
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


@router.get("")
def overview(request: Request, ctx: Ctx) -> Response:
    viewer = reader(request, ctx)
    found = views.overview(ctx, with_tasks=True) if viewer.sees_everything else None
    workers = found.workers if found else views.workers(ctx)
    return page(
        request,
        "overview.html",
        viewer=viewer,
        overview=found,
        workers=workers,
        cap=views.CAP,
        nav="overview",
    )


@router.get("/login")
def login_form(request: Request, next: Text = None) -> Response:
    return sign_in_page(request, safe_next(next), None)


def sign_in_page(request: Request, next: str, error: str | None, status: int = 200) -> Response:
    nonce = sign_in_nonce(request)
    response = page(
        request, "login.html", status, viewer=None, next=next, csrf=csrf_for(nonce), error=error
    )
    set_cookie(request, response, SIGN_IN, nonce)
    return response


def safe_next(wanted: str | None) -> str:
    """Where to go after signing in: a dashboard path only (never another site)."""
    if wanted and wanted.startswith("/ui") and not wanted.startswith("//") and "\\" not in wanted:
        return wanted
    return "/ui"


@dataclass(frozen=True)
class Listing:
    runs: list[Run]
    next_cursor: str | None
    filters: dict[str, str]
    error: str | None = None


@dataclass
class Wanted:
    """The runs page's query: its filters, a search, and the cursor of the page."""

    state: Text = None
    kind: Text = None
    project: Text = None
    since: Text = None
    before: Text = None
    q: Text = None
    cursor: Text = None


WantedRuns = Annotated[Wanted, Depends()]


@router.get("/runs")
def runs(request: Request, ctx: Ctx, wanted: WantedRuns) -> Response:
    viewer = reader(request, ctx)
    listing = _listing(ctx, viewer, wanted)
    return page(request, "runs.html", viewer=viewer, listing=listing, states=RUN_STATES, nav="runs")


def _listing(ctx: AppState, viewer: Viewer, wanted: Wanted) -> Listing:
    given = {k: v.strip() for k, v in asdict(wanted).items() if v and v.strip()}
    shown = {k: v for k, v in given.items() if k != "cursor"}
    try:
        if any("\x00" in value for value in given.values()):
            raise ValueError("a filter holds a NUL character, which no run's field can")
        projects = viewer.caller.projects_to_read(shown.get("project"))
        if shown.get("q"):
            return Listing(ctx.runs.find(shown["q"], project_ids=projects, limit=PAGE), None, shown)
        state = shown.get("state")
        if state is not None and state not in RUN_STATES:
            raise ValueError(f"state {state!r} is not one of {', '.join(RUN_STATES)}")
        filters = RunFilter(
            None,
            _state(state),
            shown.get("kind"),
            views.parse_moment(shown.get("since"), "since"),
            views.parse_moment(shown.get("before"), "before"),
            project_ids=projects,
        )
        found = ctx.runs.page(filters, cursor=given.get("cursor"), limit=PAGE)
    except (ValueError, UsageError, ProblemError) as exc:
        message = exc.detail if isinstance(exc, ProblemError) else str(exc)
        return Listing([], None, shown, message)
    return Listing(found.runs, found.next_cursor, shown)


def _state(text: str | None) -> RunState | None:
    for state in RUN_STATES:
        if state == text:
            return state
    return None


@router.get("/runs/{run_id}")
def run_page(run_id: str, request: Request, ctx: Ctx) -> Response:
    viewer = reader(request, ctx)
    run = reachable_run(ctx, viewer, run_id)
    return page(
        request,
        "run.html",
        viewer=viewer,
        run=run,
        shown_input=redact.masked_input(run.input, ctx.config.worker.redact),
        attempts=ctx.runs.attempts(run.id),
        finished=FINISHED,
        nav="runs",
    )


def reachable_run(ctx: AppState, viewer: Viewer, run_id: str) -> Run:
    try:
        return viewer.caller.check_run(ctx.runs.get(run_id))
    except UnknownRun:
        raise PageError(404, f"no run has the id {run_id!r}") from None
    except ProblemError as exc:
        raise PageError(403, exc.detail) from None


@router.get("/live/runs")
def live_runs(
    request: Request, ctx: Ctx, id: Annotated[list[str] | None, Query()] = None
) -> Response:
    """The runs a page shows (``?id=...&id=...``, at most one page of them) as they are now:
    the page polls this to move their states on, even out of the filter it was loaded with."""
    viewer = reader(request, ctx)
    wanted = tuple(run_id for run_id in (id or [])[:PAGE] if "\x00" not in run_id)
    filters = RunFilter(ids=wanted, project_ids=viewer.caller.projects_to_read(None))
    found = ctx.runs.page(filters, limit=PAGE).runs if wanted else []
    return _json({"runs": [_live(run) for run in found]})


@router.get("/live/runs/{run_id}")
def live_run(run_id: str, request: Request, ctx: Ctx, result: bool = False) -> Response:
    """One run as its page shows it now: also its worker, start and finish, and (asked
    with ``?result=true``, by a page that does not show it yet) a succeeded run's result
    and ``output_ref``."""
    viewer = reader(request, ctx)
    run = reachable_run(ctx, viewer, run_id)
    shown = {**_live(run), **_details(run, with_result=result)}
    return _json({"runs": [shown], "attempts": len(ctx.runs.attempts(run.id))})


def _live(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "state": run.state,
        "progress": run.progress,
        "progress_message": run.progress_message,
        "attempt": run.attempt,
        "max_attempts": run.max_attempts,
        "cancel_requested": run.cancel_requested,
        "error": run.error,
        "finished": run.finished,
    }


def _details(run: Run, with_result: bool) -> dict[str, Any]:
    """What a run's page shows beyond a row, as the page's text: a result only once the run
    succeeded (it may be large: sent when asked for)."""
    outcome = with_result and run.state == "succeeded"
    return {
        "worker": run.claimed_by,
        "started_at": when(run.started_at),
        "finished_at": when(run.finished_at),
        "result": pretty(run.result) if outcome else None,
        "output_ref": run.output_ref if outcome else None,
    }


def _json(body: dict[str, Any]) -> Response:
    return JSONResponse(body, headers=dict(HEADERS))


@router.get("/tasks")
def tasks(request: Request, ctx: Ctx) -> Response:
    viewer = _everything(request, ctx)
    return page(request, "tasks.html", viewer=viewer, board=views.task_board(ctx), nav="tasks")


@router.get("/live/tasks")
def live_tasks(request: Request, ctx: Ctx) -> Response:
    """Every once task as it is now (state, backfill progress, the actions it allows): the
    once tasks page polls this to move its progress on."""
    _everything(request, ctx)
    return _json({"tasks": [views.live_task(s) for s in views.task_statuses(ctx)]})


@router.get("/schedules")
def schedules(request: Request, ctx: Ctx) -> Response:
    viewer = reader(request, ctx)
    return page(
        request, "schedules.html", viewer=viewer, schedules=views.schedules(ctx), nav="schedules"
    )


@router.get("/workers")
def workers(request: Request, ctx: Ctx) -> Response:
    viewer = reader(request, ctx)
    return page(request, "workers.html", viewer=viewer, workers=views.workers(ctx), nav="workers")


def _everything(request: Request, ctx: AppState) -> Viewer:
    viewer = reader(request, ctx)
    if not viewer.sees_everything:
        raise PageError(
            403, "once tasks belong to no project: a token bound to projects sees only their runs"
        )
    return viewer


@router.get("/static/{name}")
def static(name: str) -> Response:
    media = _STATIC.get(name)
    if media is None:
        raise PageError(404, f"no file {name!r}")
    body = files("runce.api.ui").joinpath("static", name).read_bytes()
    headers = {**HEADERS, "Cache-Control": "public, max-age=300"}
    return Response(body, media_type=media, headers=headers)
