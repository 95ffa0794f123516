"""runce: run code once, durably, on the database a service already has.

Once tasks are Python files in a ``tasks/`` folder, applied once per environment::

    import runce

    @runce.task(title="Create the billing queues")
    def run(ctx: runce.TaskContext) -> None:
        ...

    report = runce.run_tasks()          # or `runce run` on the command line
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from runce._version import __version__
from runce.errors import (
    AuthError,
    ConfigError,
    DriftError,
    IdempotencyConflict,
    IllegalTransition,
    InvalidInput,
    JobFailed,
    LockError,
    LockHeld,
    LockLost,
    NonRetryable,
    OutOfOrderError,
    RateLimited,
    RemoteError,
    RunceError,
    RunError,
    SchemaError,
    ServerUnavailable,
    StoreError,
    StoreUnavailable,
    TaskLoadError,
    TaskRunError,
    TasksFailed,
    UnknownRun,
    UnknownSchedule,
    UnknownStore,
    UnsupportedFeature,
    UsageError,
)

if _TYPE_CHECKING:  # what type checkers see; at run time these load on first use (below)
    from runce import stores as stores
    from runce.api.async_client import AsyncClient
    from runce.api.client import Client
    from runce.config import Config, define_config, load_config
    from runce.runs.api import (
        acancel_run,
        aenqueue,
        aenqueue_many,
        aget_run,
        alist_runs,
    )
    from runce.runs.context import JobContext
    from runce.runs.jobs import Job, job
    from runce.runs.service import RunPage
    from runce.stores.queue import Run
    from runce.tasks.api import (
        StatusReport,
        alist_applied,
        arun_pending_on_boot,
        arun_tasks,
        atask_status,
        list_applied,
        run_pending_on_boot,
        run_tasks,
        task_status,
    )
    from runce.tasks.model import Task, TaskContext, task
    from runce.tasks.report import RunReport, TaskResult
    from runce.tasks.states import TaskState

# Names load on first use: `runce run` reads only what it needs (its fast path, none of
# these), and nothing pays for the job queue unless it uses it.
_LAZY = {
    "Config": "runce.config",
    "define_config": "runce.config",
    "load_config": "runce.config",
    "StatusReport": "runce.tasks.api",
    "alist_applied": "runce.tasks.api",
    "arun_pending_on_boot": "runce.tasks.api",
    "arun_tasks": "runce.tasks.api",
    "atask_status": "runce.tasks.api",
    "list_applied": "runce.tasks.api",
    "run_pending_on_boot": "runce.tasks.api",
    "run_tasks": "runce.tasks.api",
    "task_status": "runce.tasks.api",
    "Task": "runce.tasks.model",
    "TaskContext": "runce.tasks.model",
    "task": "runce.tasks.model",
    "RunReport": "runce.tasks.report",
    "TaskResult": "runce.tasks.report",
    "TaskState": "runce.tasks.states",
    "job": "runce.runs.jobs",
    "Job": "runce.runs.jobs",
    "JobContext": "runce.runs.context",
    "events": "runce.runs.events",
    "Event": "runce.runs.events",
    "Run": "runce.stores.queue",
    "RunPage": "runce.runs.service",
    "WorkerSummary": "runce.runs.worker",
    "enqueue": "runce.runs.api",
    "enqueue_many": "runce.runs.api",
    "get_run": "runce.runs.api",
    "list_runs": "runce.runs.api",
    "cancel_run": "runce.runs.api",
    "retry_run": "runce.runs.api",
    "prune_runs": "runce.runs.api",
    "wait": "runce.runs.api",
    "worker": "runce.runs.api",
    "drain": "runce.runs.api",
    "schedule": "runce.runs.schedules",
    "Secret": "runce.runs.secret_field",
    "JobResult": "runce.runs.inline",
    "list_schedules": "runce.runs.api",
    "enable_schedule": "runce.runs.api",
    "disable_schedule": "runce.runs.api",
    "aenqueue": "runce.runs.api",
    "aenqueue_many": "runce.runs.api",
    "aget_run": "runce.runs.api",
    "alist_runs": "runce.runs.api",
    "acancel_run": "runce.runs.api",
    "Client": "runce.api.client",  # needs httpx: the extra nurv-runce[client]
    "AsyncClient": "runce.api.async_client",
}


# Subpackages users reach as attributes: ``runce.stores.from_postgres_pool(pool)``.
_SUBPACKAGES = {"stores"}


def __getattr__(name: str) -> object:
    import importlib

    if name in _SUBPACKAGES:
        return importlib.import_module(f"runce.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runce' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncClient",
    "AuthError",
    "Client",
    "Config",
    "ConfigError",
    "DriftError",
    "Event",
    "IdempotencyConflict",
    "IllegalTransition",
    "InvalidInput",
    "Job",
    "JobContext",
    "JobFailed",
    "JobResult",
    "LockError",
    "LockHeld",
    "LockLost",
    "NonRetryable",
    "OutOfOrderError",
    "RateLimited",
    "RemoteError",
    "Run",
    "RunError",
    "RunPage",
    "RunReport",
    "RunceError",
    "SchemaError",
    "Secret",
    "ServerUnavailable",
    "StatusReport",
    "StoreError",
    "StoreUnavailable",
    "Task",
    "TaskContext",
    "TaskLoadError",
    "TaskResult",
    "TaskRunError",
    "TaskState",
    "TasksFailed",
    "UnknownRun",
    "UnknownSchedule",
    "UnknownStore",
    "UnsupportedFeature",
    "UsageError",
    "WorkerSummary",
    "__version__",
    "acancel_run",
    "aenqueue",
    "aenqueue_many",
    "aget_run",
    "alist_applied",
    "alist_runs",
    "arun_pending_on_boot",
    "arun_tasks",
    "atask_status",
    "cancel_run",
    "define_config",
    "disable_schedule",
    "drain",
    "enable_schedule",
    "enqueue",
    "enqueue_many",
    "events",
    "get_run",
    "job",
    "list_applied",
    "list_runs",
    "list_schedules",
    "load_config",
    "prune_runs",
    "retry_run",
    "run_pending_on_boot",
    "run_tasks",
    "schedule",
    "task",
    "task_status",
    "wait",
    "worker",
]
