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

# The one table of lazily loaded names. Type checkers read these imports as written; at run
# time nothing here is imported until a name is first used (`runce run`'s fast path needs
# none of them, and nothing pays for the job queue unless it uses it): `__getattr__` reads
# this block from the module's own source, once, to learn where each name lives.
if _TYPE_CHECKING:
    from runce import stores as stores  # a subpackage: runce.stores.from_postgres_pool(pool)
    from runce.api.async_client import AsyncClient  # needs httpx: nurv-runce[client]
    from runce.api.client import Client  # needs httpx: nurv-runce[client]
    from runce.config import Config, define_config, load_config
    from runce.domain.runs import EnqueueOptions, Run, RunQuery, Unreadable
    from runce.runs.context import JobContext
    from runce.runs.events import Event, events
    from runce.runs.inline import JobResult
    from runce.runs.jobs import Job, job
    from runce.runs.library import (
        acancel_run,
        aenqueue,
        aenqueue_many,
        aget_run,
        alist_runs,
        cancel_run,
        disable_schedule,
        drain,
        enable_schedule,
        enqueue,
        enqueue_many,
        ensure_idempotent,
        get_run,
        list_runs,
        list_schedules,
        prune_runs,
        retry_run,
        wait,
        worker,
    )
    from runce.runs.schedules import schedule
    from runce.runs.secret_field import Secret
    from runce.runs.service import RunPage
    from runce.runs.worker import WorkerSummary
    from runce.tasks.backfill import Backfill, backfill
    from runce.tasks.control import cancel_task, pause_task, resume_task
    from runce.tasks.library import (
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

_lazy: dict[str, str] = {}


def _lazy_table() -> dict[str, str]:
    """Where each lazily loaded name lives, read from the ``if _TYPE_CHECKING:`` block above."""
    if not _lazy:
        import ast
        from pathlib import Path

        tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
        block = next(
            node
            for node in tree.body
            if isinstance(node, ast.If) and ast.unparse(node.test) == "_TYPE_CHECKING"
        )
        for statement in block.body:
            if isinstance(statement, ast.ImportFrom) and statement.module:
                for alias in statement.names:
                    _lazy[alias.asname or alias.name] = statement.module
    return _lazy


def __getattr__(name: str) -> object:
    module = _lazy_table().get(name) if not name.startswith("__") else None
    if module is None:
        raise AttributeError(f"module 'runce' has no attribute {name!r}")
    import importlib

    if module == __name__:  # a subpackage, imported as itself
        return importlib.import_module(f"{__name__}.{name}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncClient",
    "AuthError",
    "Backfill",
    "Client",
    "Config",
    "ConfigError",
    "DriftError",
    "EnqueueOptions",
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
    "RunQuery",
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
    "Unreadable",
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
    "backfill",
    "cancel_run",
    "cancel_task",
    "define_config",
    "disable_schedule",
    "drain",
    "enable_schedule",
    "enqueue",
    "enqueue_many",
    "ensure_idempotent",
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
