"""Pages from the templates: Jinja2 with autoescaping on, the security headers every
dashboard answer carries, and the error pages (sign in, refused, not found).

The Content-Security-Policy allows scripts, styles, images and form targets from the
server only and no inline code at all: the dashboard's script and stylesheet are files of
this package (``static/``), served by :mod:`runce.api.ui.pages`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined

from runce._version import __version__
from runce.api.ui.session import Refused, SignInNeeded
from runce.domain.runs import STOPPED_SHOWN
from runce.tasks.states import BackfillProgress

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
    """Answer the dashboard's own errors as pages (the API's stay problem+json)."""

    async def on_sign_in(request: Request, exc: Exception) -> Response:
        wanted = request.url.path if request.method == "GET" else "/ui"
        if request.url.query and request.method == "GET":
            wanted += "?" + request.url.query
        return redirect("/ui/login?next=" + quote(wanted, safe=""))

    async def on_refused(request: Request, exc: Exception) -> Response:
        return page(request, "error.html", 403, title="Not allowed", message=str(exc), viewer=None)

    async def on_page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        title = {404: "Not found", 409: "Not possible now"}.get(exc.status, "Error")
        return page(
            request, "error.html", exc.status, title=title, message=exc.message, viewer=None
        )

    app.add_exception_handler(SignInNeeded, on_sign_in)
    app.add_exception_handler(Refused, on_refused)
    app.add_exception_handler(PageError, on_page_error)
