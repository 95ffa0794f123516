"""The library's entry points for runs (docs/runs.md). The CLI and HTTP API call these too.

Each takes ``config=`` like the once-task functions (a path, a ``define_config`` result, a
dict, a loaded :class:`~runce.config.Config`, or None to find it from the current
directory). Stores are opened once per process and kept, so enqueueing in a loop does not
set up a connection per run.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Unpack

from runce.config import (
    MAX_CONCURRENCY,
    MAX_RUN_TIME,
    Config,
    ConfigArg,
    ServiceFactory,
    bounded,
    framework_config,
    import_object,
    load_config,
    resolution_key,
    resolve_config,
    runce_environment,
)
from runce.domain.runs import (
    EnqueueOptions,
    Run,
    RunQuery,
    check_enqueue_options,
    check_query,
    filter_of,
)
from runce.domain.schedules import Schedule
from runce.errors import ConfigError, UnknownSchedule, UnsupportedFeature, UsageError
from runce.runs import redact, secrets
from runce.runs.dispatch import Dispatch, install
from runce.runs.events import events
from runce.runs.inline import InlineCall, run_batch
from runce.runs.jobs import Job, load_handlers
from runce.runs.jobs import registry as job_registry
from runce.runs.retention import Retention, RetentionLoop, check_expression, is_internal
from runce.runs.scheduler import Scheduler, SchedulerLoop, set_enabled
from runce.runs.schedules import check_handled, unhandled
from runce.runs.schedules import registry as schedule_registry
from runce.runs.service import RunPage, RunService
from runce.runs.worker import Worker, WorkerOptions, WorkerSummary
from runce.runtime import Runtime, close_shared, on_close_shared, shared_store
from runce.stores.base import Store
from runce.stores.queue import RunQueue
from runce.stores.schedules import ScheduleStore

_configs: dict[tuple[object, ...], Config] = {}
# Configurations given as keys or as a TOML file, resolved, by what they resolve from.
_given: dict[tuple[object, ...], Config] = {}
_GIVEN_KEPT = 64
# The runtime of each configuration found when none is given (by id: a Config holds a dict,
# so it is not hashable); valid while that same Config is still the one found.
_runtimes: dict[int, Runtime] = {}
_mutex = threading.Lock()


def _config(config: ConfigArg) -> Config:
    if isinstance(config, Config):
        return config
    if config is not None:  # kept while what it resolves from is unchanged
        key = resolution_key(config)
        if key is None:
            return resolve_config(config)
        return _kept(_given, key, lambda: resolve_config(config), _GIVEN_KEPT)
    framework = framework_config()
    if isinstance(framework, Config):  # an ASGI app's, resolved by its lifespan
        return framework
    if framework is None:
        return _kept(_configs, _default_key(None), resolve_config)
    return _kept(_configs, _default_key(framework), lambda: _from_framework(framework))


def _kept(
    cache: dict[tuple[object, ...], Config],
    key: tuple[object, ...],
    make: Callable[[], Config],
    most: int | None = None,
) -> Config:
    """The configuration ``cache`` keeps under ``key``, made first if it has none (the
    cache starting afresh once it holds ``most``): enqueueing in a loop resolves once."""
    with _mutex:
        found = cache.get(key)
    if found is None:
        found = make()
        with _mutex:
            if most is not None and len(cache) >= most:  # many different ones
                cache.clear()
            cache[key] = found
    return found


def _default_key(framework: tuple[dict[str, Any], Path] | None) -> tuple[object, ...]:
    """What the configuration used when none is given depends on: the keys a framework
    gives (the Django app's, which follow ``DATABASES``) or the file found from the current
    directory, and the ``RUNCE_`` environment variables."""
    values = None if framework is None else repr(framework)
    return (os.getcwd(), runce_environment(), values)


def _from_framework(framework: tuple[dict[str, Any], Path]) -> Config:
    values, start = framework
    return load_config(values=values, start=start)


def queue_of(store: Store) -> RunQueue:
    queue = store.runs
    if queue is None:
        raise UnsupportedFeature(
            f"{store.description} has no run queue; use the sqlite, postgresql or mongodb store"
        )
    return queue


def runtime(config: ConfigArg = None) -> Runtime:
    """The runtime the library's functions use for ``config``: on the process's shared
    store; the one for the configuration found when none is given is kept."""
    cfg = _config(config)
    kept = _runtimes.get(id(cfg))
    if kept is not None and kept.config is cfg:
        return kept
    made = Runtime.shared(cfg)
    if config is None:  # found from the current directory: kept with the config
        with _mutex:
            _runtimes[id(cfg)] = made
    return made


def run_service(runtime: Runtime) -> RunService:
    """The run service on a runtime's store, with ``worker.handlers`` imported so typed
    jobs validate their inputs at enqueue (a part of the runtime: made once per runtime)."""
    cfg = runtime.config
    _load_handlers_once(cfg)
    return RunService(queue_of(runtime.store), default_max_attempts=cfg.worker.max_attempts)


def service(config: ConfigArg = None) -> RunService:
    """A :class:`RunService` on the configured store."""
    return runtime(config).part(run_service)


_loaded: set[tuple[str, ...]] = set()


def _load_handlers_once(cfg: Config) -> None:
    if cfg.worker.handlers and cfg.worker.handlers not in _loaded:
        load_handlers(cfg.worker.handlers, f"{cfg.source}: worker.handlers")
        _loaded.add(cfg.worker.handlers)


def _forget_runtimes() -> None:
    with _mutex:
        _runtimes.clear()
        _aservices.clear()


on_close_shared(_forget_runtimes)


# Close the process's shared stores (and forget what was made on them); the next call opens
# them again (the Django app calls it when Django makes its connections anew).
close_stores = close_shared


# -- enqueueing ------------------------------------------------------------------------------


def enqueue(
    kind: str,
    input: object = None,
    *,
    idempotency_key: str | None = None,
    connection: Any = None,
    config: ConfigArg = None,
    **options: Unpack[EnqueueOptions],
) -> Run:
    """Enqueue one run; the same ``idempotency_key`` returns the same run.

    The options (:class:`~runce.EnqueueOptions`): ``run_at``, ``max_attempts``,
    ``priority``, ``project_id``, ``correlation_id`` and ``concurrency_key``, the run's key
    for its job's ``concurrency`` limit instead of the one its job's ``concurrency_key``
    gives. With ``connection`` (your open transaction on the store's database), the run
    exists only if your transaction commits.
    """
    check_enqueue_options(options, "enqueue")
    return service(config).enqueue(
        kind, input, idempotency_key=idempotency_key, connection=connection, **options
    )


def enqueue_many(
    kind: str,
    inputs: Sequence[object],
    *,
    idempotency_keys: Sequence[str | None] | None = None,
    connection: Any = None,
    config: ConfigArg = None,
    **options: Unpack[EnqueueOptions],
) -> list[Run]:
    """Enqueue many runs of one kind in one round trip (the options are :func:`enqueue`'s)."""
    check_enqueue_options(options, "enqueue_many")
    return service(config).enqueue_many(
        kind, inputs, idempotency_keys=idempotency_keys, connection=connection, **options
    )


# -- enqueueing from async code -----------------------------------------------------------------


async def aenqueue(
    kind: str,
    input: object = None,
    *,
    idempotency_key: str | None = None,
    connection: Any = None,
    config: ConfigArg = None,
    **options: Unpack[EnqueueOptions],
) -> Run:
    """:func:`enqueue` for async callers. With ``connection=`` a psycopg ``AsyncConnection``
    in a transaction, the insert is awaited on it; otherwise it runs on a worker thread."""
    check_enqueue_options(options, "aenqueue")
    [result] = await (await _aservice(config)).aenqueue_results(
        kind, [input], idempotency_keys=[idempotency_key], connection=connection, **options
    )
    return result.run


async def aenqueue_many(
    kind: str,
    inputs: Sequence[object],
    *,
    idempotency_keys: Sequence[str | None] | None = None,
    connection: Any = None,
    config: ConfigArg = None,
    **options: Unpack[EnqueueOptions],
) -> list[Run]:
    """:func:`enqueue_many` for async callers (see :func:`aenqueue`)."""
    check_enqueue_options(options, "aenqueue_many")
    results = await (await _aservice(config)).aenqueue_results(
        kind, inputs, idempotency_keys=idempotency_keys, connection=connection, **options
    )
    return [result.run for result in results]


# The services async callers got for a configuration they passed, under _async_key's key,
# with the Config it was made for when that was one (kept with it, so its id stays its).
_aservices: dict[tuple[object, ...], tuple[Config | None, RunService]] = {}
_ASYNC_KEPT = 256  # configurations kept; past that, the oldest is forgotten


async def _aservice(config: ConfigArg) -> RunService:
    """The service without leaving the event loop once it is made (the first call reads
    files and imports handlers, on a thread)."""
    if config is None:
        kept = _default_service()
        return kept if kept is not None else await asyncio.to_thread(service, None)
    key = _async_key(config)
    anchor = config if isinstance(config, Config) else None
    found = _aservices.get(key) if key is not None else None
    if found is not None and found[0] is anchor:
        return found[1]
    made = await asyncio.to_thread(service, config)
    if key is not None:
        with _mutex:
            _aservices[key] = (anchor, made)
            while len(_aservices) > _ASYNC_KEPT:
                del _aservices[next(iter(_aservices))]
    return made


def _default_service() -> RunService | None:
    """The service of the configuration used when none is given, if made already."""
    framework = framework_config()
    if isinstance(framework, Config):
        cfg: Config | None = framework
    else:
        with _mutex:
            cfg = _configs.get(_default_key(framework))
    kept = _runtimes.get(id(cfg)) if cfg is not None else None
    return kept.part(run_service) if kept is not None and kept.config is cfg else None


def _async_key(config: ConfigArg) -> tuple[object, ...] | None:
    """What the configuration ``config`` resolves to depends on, read without a thread: a
    Config itself, else :func:`~runce.config.resolution_key`'s key (None: there is none)."""
    if isinstance(config, Config):
        return ("config", id(config))
    return resolution_key(config)


# -- reading and changing -------------------------------------------------------------------


def get_run(run_id: str, *, config: ConfigArg = None) -> Run:
    return service(config).get(run_id)


def list_runs(*, config: ConfigArg = None, **query: Unpack[RunQuery]) -> RunPage:
    """Runs newest first (``order="oldest"``: oldest first); pass ``page.next_cursor`` back
    as ``cursor``, with the same ``order``, for the next page (:class:`~runce.RunQuery`)."""
    check_query(query, "list_runs")
    page = service(config).page
    return page(filter_of(query), cursor=query.get("cursor"), limit=query.get("limit", 50))


def ensure_idempotent(key: str, factory: Callable[[], Run], *, config: ConfigArg = None) -> Run:
    """The run holding idempotency key ``key``, or the one ``factory()`` creates
    (docs/runs.md#enqueueing).

    ``factory`` enqueues it with that key, e.g. ``lambda: runce.enqueue(kind, input,
    idempotency_key=key)``; the store keeps one run per key, so concurrent callers all get
    the same run. A factory returning a run without that key is a :class:`UsageError`.
    """
    return service(config).ensure_idempotent(key, factory)


def cancel_run(run_id: str, *, config: ConfigArg = None) -> Run:
    return service(config).cancel(run_id)


def retry_run(run_id: str, *, config: ConfigArg = None) -> Run:
    return service(config).retry(run_id)


def prune_runs(
    *,
    succeeded_after: float | None = None,
    failed_after: float | None = None,
    config: ConfigArg = None,
) -> int:
    """Delete finished runs older than the retention (``runs.retention`` by default)."""
    cfg = _config(config)
    return service(cfg).prune(
        cfg.retention.succeeded if succeeded_after is None else succeeded_after,
        cfg.retention.failed if failed_after is None else failed_after,
        batch=cfg.retention.batch,
    )


def wait(run_id: str, timeout: float | None = None, *, config: ConfigArg = None) -> Run:
    """Block until the run finishes (or ``timeout`` seconds pass) and return it."""
    if timeout is not None:
        bounded("timeout", timeout, 0, MAX_RUN_TIME)
    return service(config).wait(run_id, timeout)


async def aget_run(run_id: str, *, config: ConfigArg = None) -> Run:
    """:func:`get_run` for async callers (on a worker thread)."""
    return await asyncio.to_thread(get_run, run_id, config=config)


async def alist_runs(*, config: ConfigArg = None, **query: Unpack[RunQuery]) -> RunPage:
    """:func:`list_runs` for async callers (on a worker thread)."""
    check_query(query, "alist_runs")
    return await asyncio.to_thread(lambda: list_runs(config=config, **query))


async def acancel_run(run_id: str, *, config: ConfigArg = None) -> Run:
    """:func:`cancel_run` for async callers (on a worker thread)."""
    return await asyncio.to_thread(cancel_run, run_id, config=config)


# -- working ----------------------------------------------------------------------------------


def worker(
    config: ConfigArg = None,
    *,
    concurrency: int | None = None,
    kinds: Sequence[str] | None = None,
    drain: bool = False,
    max_time: float | None = None,
    queue: RunQueue | None = None,
    services: Callable[[], Any] | None = None,
) -> Worker:
    """A worker on the configured store (or on ``queue``, a remote worker's), with the jobs
    of ``worker.handlers`` loaded; ``services`` makes ``ctx.services`` (by default the
    configured ``services`` factory, called once)."""
    if kinds is not None:  # a selection that names nothing must not mean "every job"
        given = kinds.split(",") if isinstance(kinds, str) else list(kinds)
        if not [k for k in given if k.strip()]:
            raise UsageError(f"kinds names no job kind ({kinds!r}); leave it out to run every job")
        kinds = [k.strip() for k in given if k.strip()]
    if concurrency is not None:
        bounded("concurrency", concurrency, 1, MAX_CONCURRENCY, duration=False)
    if max_time is not None:
        bounded("max_time", max_time, 0, MAX_RUN_TIME)
    cfg = _config(config)
    load_handlers(cfg.worker.handlers, f"{cfg.source}: worker.handlers")
    settings = cfg.worker
    prepare_secrets(cfg)
    options = WorkerOptions(
        concurrency=concurrency or settings.concurrency,
        kinds=kinds,
        lease=settings.lease,
        poll=settings.poll,
        backoff_base=settings.backoff_base,
        shutdown_timeout=settings.shutdown_timeout,
        drain=drain,
        max_time=max_time,
    )
    services = services or ServiceFactory(cfg).get
    if queue is not None:  # a remote worker: the server's queue, and no scheduler here
        return Worker(queue, options, services=services)
    store = shared_store(cfg.store)
    return Worker(
        queue_of(store),
        options,
        services=services,
        companions=[*_scheduler_of(cfg, store), *_retention_of(cfg, store)],
    )


def prepare_secrets(cfg: Config) -> None:
    """Where jobs run: resolve secret references as configured, and redact what is secret."""
    secrets.use_resolver(_resolver(cfg) if cfg.worker.secrets else None)
    redact.install(cfg.worker.redact)


def _resolver(cfg: Config) -> secrets.Resolver:
    target = import_object(cfg.worker.secrets or "", f"{cfg.source}: worker.secrets")
    if not callable(target):
        raise ConfigError(f"{cfg.source}: worker.secrets {cfg.worker.secrets!r} is not a function")
    resolver: secrets.Resolver = target
    return resolver


def _scheduler_of(cfg: Config, store: Store) -> list[SchedulerLoop]:
    """The worker's scheduler, when code declares schedules and the store keeps them."""
    specs = schedule_registry.all()
    if not specs:
        return []
    made = service(cfg)
    check_handled(specs, made.jobs.kinds())  # the worker's handlers are loaded by now
    scheduler = Scheduler(schedules_of(store), made, specs)
    return [SchedulerLoop(scheduler)]


def _retention_of(cfg: Config, store: Store) -> list[RetentionLoop]:
    """The worker's share of retention (``runs.retention.auto``), where the store keeps
    schedules (its ticks are stored with them)."""
    settings = cfg.retention
    if not settings.auto or store.schedules is None:
        return []
    check_expression(settings.schedule, cfg.source)
    retention = Retention(
        schedules_of(store),
        service(cfg),
        succeeded_after=settings.succeeded,
        failed_after=settings.failed,
        expression=settings.schedule,
        batch=settings.batch,
    )
    return [RetentionLoop(retention)]


def drain(
    config: ConfigArg = None,
    *,
    concurrency: int | None = None,
    kinds: Sequence[str] | None = None,
    max_time: float | None = None,
) -> WorkerSummary:
    """Reclaim expired leases, run everything due, and return a summary: the tick of a
    cron-triggered or serverless worker."""
    return worker(config, concurrency=concurrency, kinds=kinds, drain=True, max_time=max_time).run()


# -- schedules ---------------------------------------------------------------------------------


def schedules_of(store: Store) -> ScheduleStore:
    schedules = store.schedules
    if schedules is None:
        raise UnsupportedFeature(
            f"{store.description} keeps no schedules; use the sqlite, postgresql or mongodb store"
        )
    return schedules


def list_schedules(*, config: ConfigArg = None) -> list[Schedule]:
    """The stored schedules, by name (a worker stores those its code declares when it starts)."""
    cfg = _config(config)
    stored = schedules_of(shared_store(cfg.store)).all()
    return [schedule for schedule in stored if not is_internal(schedule.name)]


def enable_schedule(name: str, *, config: ConfigArg = None) -> Schedule:
    """Switch a schedule on; it next runs at its first tick from now (no catch-up)."""
    return _switch(name, True, config)


def disable_schedule(name: str, *, config: ConfigArg = None) -> Schedule:
    """Switch a schedule off; workers leave it alone until it is enabled again."""
    return _switch(name, False, config)


def _switch(name: str, enabled: bool, config: ConfigArg) -> Schedule:
    if is_internal(name):  # runce's own (retention): runs.retention.auto switches it
        raise UnknownSchedule(f"no schedule is named {name!r}; `runce schedules list` shows them")
    cfg = _config(config)
    store = shared_store(cfg.store)
    schedules = schedules_of(store)
    if enabled and cfg.worker.handlers:  # the jobs are known here: refuse what none runs
        _refuse_unhandled(cfg, schedules.get(name))
    return set_enabled(schedules, name, enabled, queue_of(store).now())


def _refuse_unhandled(cfg: Config, stored: Schedule | None) -> None:
    _load_handlers_once(cfg)
    if stored is not None and job_registry.get(stored.kind) is None:
        raise unhandled(stored.name, stored.kind, job_registry.kinds())


# -- jobs called in-process ---------------------------------------------------------------------


def inline_call(job: Job[Any, Any], *, persist: bool, config: ConfigArg) -> InlineCall:
    """What ``job.now()`` and ``job.batch()`` run with: the store (unless not persisted),
    the lease, ``ctx.services``, and the secrets set-up of a worker."""
    cfg = _config(config)
    prepare_secrets(cfg)
    services = ServiceFactory(cfg).get
    if not persist:
        return InlineCall(job, None, events, services=services)
    runs = service(cfg)
    return InlineCall(job, runs.queue, runs.bus, cfg.worker.lease, services)


install(Dispatch(enqueue, aenqueue, inline_call, run_batch))  # what jobs' .later/.now/.batch call
