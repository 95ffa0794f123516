"""Every error answer as ``application/problem+json`` with a stable ``type`` slug.

Routes raise :class:`ProblemError` (or let one of runce's errors through); the handlers
installed by :func:`install` turn those, FastAPI's validation errors, Starlette's 404/405
and anything unexpected into one shape. An unexpected exception is logged with its
traceback and answered as ``internal`` without one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runce.api.schemas import PROBLEM_BASE, FieldError, Problem
from runce.errors import (
    IdempotencyConflict,
    IllegalTransition,
    InvalidInput,
    RunceError,
    StoreError,
    TaskLoadError,
    UnknownRun,
    UnknownSchedule,
    UsageError,
)

log = logging.getLogger("runce.api")

MEDIA_TYPE = "application/problem+json"

TITLES: Mapping[str, str] = {
    "unauthorized": "Unauthorized",
    "forbidden": "Forbidden",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "invalid-request": "Invalid request",
    "invalid-input": "Invalid input",
    "idempotency-conflict": "Idempotency key reused",
    "illegal-transition": "Illegal transition",
    "lease-lost": "Lease lost",
    "rate-limited": "Rate limited",
    "payload-too-large": "Payload too large",
    "request-timeout": "Request timeout",
    "server-busy": "Server busy",
    "store-unavailable": "Store unavailable",
    "tasks-unreadable": "Task files unreadable",
    "internal": "Internal error",
}

STATUS: Mapping[str, int] = {
    "unauthorized": 401,
    "forbidden": 403,
    "not-found": 404,
    "method-not-allowed": 405,
    "invalid-request": 422,
    "invalid-input": 422,
    "idempotency-conflict": 409,
    "illegal-transition": 409,
    "lease-lost": 409,
    "rate-limited": 429,
    "payload-too-large": 413,
    "request-timeout": 408,
    "server-busy": 503,
    "store-unavailable": 503,
    "tasks-unreadable": 500,
    "internal": 500,
}

# What each status means on the routes that document it (the OpenAPI document's responses).
_MEANING: Mapping[int, str] = {
    401: "No token, or an unknown or revoked one (`unauthorized`)",
    403: "The token lacks the scope, or the run's project is not the token's (`forbidden`)",
    404: "No run has this id (`not-found`)",
    408: "The request's body did not arrive within `api.body_timeout` (`request-timeout`)",
    409: "Refused by the run's state, a reused idempotency key, or a lost lease",
    413: "The request body is larger than `api.max_body` (`payload-too-large`)",
    422: "The request (`invalid-request`) or the run's input (`invalid-input`) is not valid",
    429: "Too many requests for this token; `Retry-After` says when to try again",
    500: "The server's tasks folder is missing or its files cannot be read (`tasks-unreadable`)",
    503: "The store does not answer (`store-unavailable`), or the server has "
    "`api.max_connections` connections open (`server-busy`)",
}


def answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that may answer these problems."""
    return {code: {"description": _MEANING[code]} for code in codes}


# runce's errors a route may let through, by the slug they answer with (most specific first).
_ERRORS: Sequence[tuple[type[RunceError], str]] = (
    (UnknownRun, "not-found"),
    (UnknownSchedule, "not-found"),
    (IllegalTransition, "illegal-transition"),
    (IdempotencyConflict, "idempotency-conflict"),
    (InvalidInput, "invalid-input"),
    (UsageError, "invalid-request"),
    (StoreError, "store-unavailable"),
    (TaskLoadError, "tasks-unreadable"),
)


class ProblemError(Exception):
    """Raised by a route to answer with a problem; ``headers`` go on the response."""

    def __init__(
        self,
        slug: str,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.slug = slug
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})


def problem_document(slug: str, detail: str, *, instance: str | None = None) -> bytes:
    """The JSON text of a problem, for answers written below the ASGI app."""
    problem = Problem(
        type=PROBLEM_BASE + slug,
        title=TITLES[slug],
        status=STATUS[slug],
        detail=detail,
        instance=instance,
    )
    return problem.model_dump_json(exclude_none=True).encode()


def problem_response(
    slug: str,
    detail: str,
    *,
    instance: str | None = None,
    errors: list[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    problem = Problem(
        type=PROBLEM_BASE + slug,
        title=TITLES[slug],
        status=STATUS[slug],
        detail=detail,
        instance=instance,
        errors=errors,
    )
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=problem.status,
        media_type=MEDIA_TYPE,
        headers=dict(headers or {}),
    )


def slug_of(error: RunceError) -> str | None:
    for kind, slug in _ERRORS:
        if isinstance(error, kind):
            return slug
    return None


def field_errors(errors: Sequence[Any]) -> list[FieldError]:
    """``[{loc, msg}]`` from pydantic's error dicts."""
    return [
        FieldError(loc=[p if isinstance(p, int) else str(p) for p in e["loc"]], msg=e["msg"])
        for e in errors
    ]


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem+json."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(
            exc.slug,
            exc.detail,
            instance=request.url.path,
            errors=exc.errors,
            headers=exc.headers,
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = field_errors(exc.errors())
        detail = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors)
        return problem_response("invalid-request", detail, instance=request.url.path, errors=errors)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        slug = {
            404: "not-found",
            405: "method-not-allowed",
            408: "request-timeout",
            413: "payload-too-large",
        }
        found = slug.get(exc.status_code, "invalid-request")
        detail = {
            404: f"no route {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }.get(exc.status_code, str(exc.detail))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed(request))
        return problem_response(found, detail, instance=request.url.path, headers=headers)

    async def on_runce(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RunceError)
        slug = slug_of(exc)
        if slug is None or slug in ("store-unavailable", "tasks-unreadable", "internal"):
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        # runce's own sentence says what is wrong on the server (a store, a tasks folder).
        return problem_response(slug or "internal", str(exc), instance=request.url.path)

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RunceError, on_runce)
    app.add_middleware(CatchAll)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed(request: Request) -> list[str]:
    """The methods some route takes on this path (Starlette names only the first route's):
    the routes are asked, method by method, whether they would take the request."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


INTERNAL_DETAIL = "the server failed to answer; its log says why"


class CatchAll:
    """Answers any exception a route did not expect with ``internal`` (logged, no traceback
    in the body), or with what ``app.state.internal_page(request)`` answers when it answers
    (the dashboard's error page on its paths). It sits inside Starlette's own error
    middleware, which would re-raise."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            log.exception("%s %s failed", scope["method"], scope["path"])
            if started:
                raise
            page = getattr(scope["app"].state, "internal_page", None) if "app" in scope else None
            response = page(Request(scope)) if page is not None else None
            if response is None:
                response = problem_response("internal", INTERNAL_DETAIL, instance=scope["path"])
            await response(scope, receive, send)
