"""runce in an ASGI application (FastAPI, Starlette): a lifespan that applies pending once
tasks before the app serves and can run an embedded worker, and a dependency giving
``services``.

::

    from fastapi import Depends, FastAPI
    from runce.contrib import asgi

    app = FastAPI(lifespan=asgi.lifespan(worker=True))

    @app.get("/stock")
    def stock(services: Services = Depends(asgi.services)) -> ...: ...

The lifespan's configuration is the one runce's functions use in the app's process when
given none (``runce.aenqueue(...)``, ``await job.alater(...)``, ``runce.aget_run(...)``),
until the app shuts down; with two apps in one process, the one started last.

On start-up the lifespan waits (at most ``wait`` seconds) for replicas applying the same
tasks, then applies what is still pending; a failure raises, so the server does not start
half-migrated. With ``worker=True`` a worker runs in a thread of the app's process until
shutdown, when it stops claiming, lets running jobs finish within ``shutdown_timeout``
seconds and hands back the rest (as ``runce worker`` does on SIGTERM).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from runce.config import (
    Config,
    ConfigArg,
    ServiceFactory,
    framework_config_in_use,
    resolve_config,
)
from runce.errors import UsageError
from runce.runs.library import worker as make_worker
from runce.runs.worker import Worker
from runce.tasks.library import run_pending_on_boot

log = logging.getLogger("runce.asgi")

# What FastAPI and Starlette take as ``lifespan=``: called with the app, entered once.
Lifespan = Callable[[object], AbstractAsyncContextManager[None]]


@dataclass
class Runtime:
    """What the lifespan set up for one app, kept on ``app.state.runce``."""

    config: Config
    services: ServiceFactory
    worker: Worker | None = None
    thread: threading.Thread | None = field(default=None, repr=False)


def lifespan(
    config: ConfigArg = None,
    *,
    apply_tasks: bool = True,
    wait: float = 300.0,
    worker: bool = False,
    concurrency: int | None = None,
    kinds: Sequence[str] | None = None,
    shutdown_timeout: float | None = None,
    around: Callable[[Any], AbstractAsyncContextManager[None]] | None = None,
) -> Lifespan:
    """The app's lifespan (``FastAPI(lifespan=...)``, ``Starlette(lifespan=...)``).

    ``around`` is the app's own lifespan, entered once runce's start-up is done and left
    before the worker stops. (An app whose lifespan yields state enters this one inside
    its own instead: ``async with runce_lifespan(app): ... yield state``.)
    """

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[None]:
        cfg = await asyncio.to_thread(resolve_config, config)
        runtime = Runtime(cfg, ServiceFactory(cfg))
        with framework_config_in_use(cfg):  # what runce.enqueue(...) without config uses
            if apply_tasks:
                await asyncio.to_thread(run_pending_on_boot, cfg, wait=wait)
            if worker:
                await asyncio.to_thread(_start_worker, runtime, concurrency, kinds)
            app.state.runce = runtime
            try:
                if around is None:
                    yield
                else:
                    async with around(app):
                        yield
            finally:
                await _stop_worker(runtime, shutdown_timeout)

    return run


def _start_worker(runtime: Runtime, concurrency: int | None, kinds: Sequence[str] | None) -> None:
    embedded = make_worker(
        runtime.config, concurrency=concurrency, kinds=kinds, services=runtime.services.get
    )
    thread = threading.Thread(target=embedded.run, name="runce-worker", daemon=True)
    thread.start()
    runtime.worker, runtime.thread = embedded, thread
    log.info("runce: embedded worker %s started", embedded.id)


async def _stop_worker(runtime: Runtime, timeout: float | None) -> None:
    if runtime.worker is None or runtime.thread is None:
        return
    runtime.worker.stop(timeout)
    await asyncio.to_thread(runtime.thread.join)
    log.info("runce: embedded worker %s stopped", runtime.worker.id)


def services(request: Request) -> Any:
    """A dependency (``Depends(services)``): the configured ``services`` factory's result,
    made once per app and shared with its embedded worker's jobs (``ctx.services``).

    Its type is the app's own, which runce cannot know: ``Any``, as ``ctx.services`` is,
    for the parameter's annotation to name it (``Annotated[Services, Depends(services)]``).
    """
    runtime: Runtime | None = getattr(request.app.state, "runce", None)
    if runtime is None:
        raise UsageError(
            "runce.contrib.asgi.services needs the app's lifespan to be "
            "runce.contrib.asgi.lifespan(...)"
        )
    return runtime.services.get()
