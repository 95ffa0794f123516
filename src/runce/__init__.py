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
    from runce.config import Config, define_config, load_config
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
    from runce.tasks.backfill import Backfill, backfill
    from runce.tasks.control import cancel_task, pause_task, resume_task
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
    "Backfill": "runce.tasks.backfill",
    "backfill": "runce.tasks.backfill",
    "pause_task": "runce.tasks.control",
    "resume_task": "runce.tasks.control",
    "cancel_task": "runce.tasks.control",
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
    "Client": "runce.api.client",  # needs the extra nurv-runce[api] (httpx)
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runce' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AuthError",
    "Backfill",
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
    "alist_applied",
    "arun_pending_on_boot",
    "arun_tasks",
    "atask_status",
    "backfill",
    "cancel_run",
    "cancel_task",
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
    "pause_task",
    "prune_runs",
    "resume_task",
    "retry_run",
    "run_pending_on_boot",
    "run_tasks",
    "schedule",
    "task",
    "task_status",
    "wait",
    "worker",
]
