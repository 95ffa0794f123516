"""``create_app(config)``: the FastAPI application ``runce serve`` runs (docs/http-api.md).

The app works on the library's runtime for its configuration (:mod:`runce.runtime`): the
process's shared store, opened once and used by every request, and the run service and
token store made on it; routes are plain ``def`` functions that FastAPI runs on its thread pool,
which every store supports (SQLite hands each thread a pooled connection of its own).
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

from runce._version import __version__
from runce.api import (
    metrics,
    openapi,
    problems,
    routes_runs,
    routes_schedules,
    routes_tasks,
    routes_worker,
)
from runce.api.appstate import AppState
from runce.api.bodylimit import BodyLimit
from runce.api.bodytimeout import BodyTimeout
from runce.api.params import refuse_unknown_query
from runce.api.ratelimit import RateLimiter
from runce.api.routes_misc import router as misc_router
from runce.api.ui import mount as mount_dashboard
from runce.config import ConfigArg, Rate, resolve_config
from runce.runs import library as runs_library
from runce.runs.tokens import tokens_of

DESCRIPTION = """\
runce's durable job queue over HTTP: enqueue, read and cancel runs, list and switch the
cron schedules; remote workers claim and complete runs through the worker endpoints. Every
`/v1` route needs a bearer token (`runce tokens create`); every error is
`application/problem+json`.
"""


def create_app(config: ConfigArg = None) -> FastAPI:
    """The HTTP service for ``config`` (a path, values, a loaded config, or None to find
    it from the current directory)."""
    cfg = resolve_config(config)
    runtime = runs_library.runtime(cfg)
    store = runtime.store
    app = FastAPI(
        title="runce",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(refuse_unknown_query)],
    )
    app.state.runce = AppState(
        runtime=runtime,
        runs=runtime.part(runs_library.run_service),
        tokens=runtime.part(tokens_of),
        enqueue_limit=_limiter(cfg.api.enqueue_rate),
        cancel_limit=_limiter(cfg.api.cancel_rate),
        metrics=metrics.registry_of(metrics.StoreCollector(cfg, store)),
    )
    problems.install(app)
    app.add_middleware(BodyLimit, max_body=cfg.api.max_body)
    app.add_middleware(BodyTimeout, timeout=cfg.api.body_timeout)
    openapi.install(app)
    app.include_router(misc_router)
    app.include_router(routes_runs.router)
    app.include_router(routes_worker.router)
    app.include_router(routes_worker.readers)
    app.include_router(routes_schedules.router)
    mount_dashboard(app)
    app.include_router(metrics.router)
    app.include_router(routes_tasks.router)
    return app


def _limiter(rate: Rate | None) -> RateLimiter | None:
    return RateLimiter(rate) if rate is not None else None
