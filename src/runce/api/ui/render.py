"""Pages from the templates: Jinja2 with autoescaping on, the security headers every
dashboard answer carries, and the error pages: the dashboard's own (sign in, refused, not
found) and, on its paths, the errors the API answers as problem+json.

The Content-Security-Policy allows scripts, styles, images and form targets from the
server only and no inline code at all: the dashboard's script and stylesheet are files of
this package (``static/``), served by :mod:`runce.api.ui.pages`.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.exceptions import HTTPException as StarletteHTTPException

from runce._version import __version__
from runce.api import problems
from runce.api.problems import ProblemError
from runce.api.ui.session import Refused, SignInNeeded
from runce.domain.runs import STOPPED_SHOWN
from runce.errors import RunceError
from runce.tasks.states import BackfillProgress

log = logging.getLogger("runce.api")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class PageError(Exception):
    """An error a dashboard route answers as a page, with its status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float | timedelta | None) -> str:
    """A duration for people: ``42s``, ``3m 5s``, ``2h 10m``, ``4d 1h``."""
    if seconds is None:
        return "—"
    total = int(seconds.total_seconds() if isinstance(seconds, timedelta) else seconds)
    total = max(total, 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def progress_text(progress: BackfillProgress) -> str:
    """A backfill's progress in one line: done of total, the rate and the time left."""
    of = f" of {progress.total:,}" if progress.total is not None else ""
    text = f"{progress.done:,}{of} done"
    if progress.total:
        text += f" ({min(100.0, 100 * progress.done / progress.total):.1f}%)"
    if progress.moving and progress.rate:
        text += f", {progress.rate:,.1f}/s"
    eta = progress.eta_seconds
    if eta is not None:
        text += f", about {age(eta)} left"
    if progress.ranges > 1:
        text += f"; {progress.finished_ranges} of {progress.ranges} ranges finished"
    return text


def progress_percent(progress: BackfillProgress) -> int | None:
    if not progress.total:
        return None
    return max(0, min(100, int(100 * progress.done / progress.total)))


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("runce.api.ui", "templates"),
        autoescape=True,  # every stored string is text on the page, never markup
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        age=age,
        pretty=pretty,
        q=lambda s: quote(str(s), safe=""),
        backfill_text=progress_text,
        percent=progress_percent,
    )
    env.globals.update(version=__version__, stopped_shown=STOPPED_SHOWN)
    return env


_env = _environment()


def page(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = _env.get_template(template).render(request=request, **values)
    return HTMLResponse(html, status_code=status, headers=dict(HEADERS))


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=dict(HEADERS))


def install(app: FastAPI) -> None:
    """Answer the dashboard's errors as pages: its own (sign in, refused, not found) and,
    on its paths, those the API answers as problem+json (a bad request, a store that does
    not answer, an unknown page), which keep their status there."""

    async def on_sign_in(request: Request, exc: Exception) -> Response:
        wanted = request.url.path if request.method == "GET" else "/ui"
        if request.url.query and request.method == "GET":
            wanted += "?" + request.url.query
        return redirect("/ui/login?next=" + quote(wanted, safe=""))

    async def on_refused(request: Request, exc: Exception) -> Response:
        return page(request, "error.html", 403, title="Not allowed", message=str(exc), viewer=None)

    async def on_page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return error_page(request, exc.status, exc.message)

    app.add_exception_handler(SignInNeeded, on_sign_in)
    app.add_exception_handler(Refused, on_refused)
    app.add_exception_handler(PageError, on_page_error)
    _on_dashboard(app, ProblemError, _problem_page)
    _on_dashboard(app, RequestValidationError, _invalid_page)
    _on_dashboard(app, StarletteHTTPException, _http_page)
    _on_dashboard(app, RunceError, _runce_page)
    app.state.internal_page = _internal_page


TITLES = {403: "Not allowed", 404: "Not found", 409: "Not possible now", 422: "Invalid request"}


def error_page(
    request: Request,
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    title: str | None = None,
) -> HTMLResponse:
    """The error page: ``title`` (else one for ``status``) and one sentence."""
    title = title or TITLES.get(status, "Error")
    answer = page(request, "error.html", status, title=title, message=message, viewer=None)
    answer.headers.update(headers or {})
    return answer


def on_dashboard(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/")


def _on_dashboard(
    app: FastAPI, kind: type[Exception], answer: Callable[[Request, Any], Response]
) -> None:
    """Answer ``kind`` with ``answer`` on the dashboard's paths and, elsewhere, with the
    handler the API installed for it (problems.install runs first)."""
    api = app.exception_handlers[kind]

    async def handler(request: Request, exc: Exception) -> Response:
        if on_dashboard(request.url.path):
            return answer(request, exc)
        found = api(request, exc)
        return await found if inspect.isawaitable(found) else found

    app.add_exception_handler(kind, handler)


def _problem_page(request: Request, exc: ProblemError) -> Response:
    title = problems.TITLES[exc.slug]
    return error_page(request, problems.STATUS[exc.slug], exc.detail, exc.headers, title)


def _invalid_page(request: Request, exc: RequestValidationError) -> Response:
    wrong = problems.field_errors(exc.errors())
    text = "; ".join(f"{e.loc[-1]}: {e.msg}" for e in wrong) or "the request is not valid"
    return error_page(request, 422, f"This address is not valid ({text}).")


def _http_page(request: Request, exc: StarletteHTTPException) -> Response:
    message = {
        404: f"No page of the dashboard is at {request.url.path}.",
        405: f"{request.method} is not allowed on {request.url.path}.",
    }.get(exc.status_code, str(exc.detail))
    return error_page(request, exc.status_code, message, exc.headers)


def _runce_page(request: Request, exc: RunceError) -> Response:
    slug = problems.slug_of(exc) or "internal"
    if slug in ("store-unavailable", "tasks-unreadable", "internal"):
        log.warning("%s %s: %s", request.method, request.url.path, exc)
    return error_page(request, problems.STATUS[slug], str(exc), title=problems.TITLES[slug])


def _internal_page(request: Request) -> Response | None:
    """What a dashboard path answers when a route failed unexpectedly (logged already)."""
    if not on_dashboard(request.url.path):
        return None
    message = problems.INTERNAL_DETAIL[0].upper() + problems.INTERNAL_DETAIL[1:] + "."
    return error_page(request, 500, message, title="Server error")
