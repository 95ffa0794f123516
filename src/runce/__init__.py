"""runce: run code once, durably, on the database a service already has.

Once tasks are Python files in a ``tasks/`` folder, applied once per environment::

    import runce

    @runce.task(title="Create the billing queues")
    def run(ctx: runce.TaskContext) -> None:
        ...

    report = runce.run_tasks()          # or `runce run` on the command line
"""

from runce._version import __version__
from runce.config import Config, define_config, load_config
from runce.errors import (
    ConfigError,
    DriftError,
    LockError,
    LockHeld,
    LockLost,
    OutOfOrderError,
    RunceError,
    SchemaError,
    StoreError,
    StoreUnavailable,
    TaskLoadError,
    TaskRunError,
    TasksFailed,
    UnknownStore,
    UnsupportedFeature,
    UsageError,
)
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

__all__ = [
    "Config",
    "ConfigError",
    "DriftError",
    "LockError",
    "LockHeld",
    "LockLost",
    "OutOfOrderError",
    "RunReport",
    "RunceError",
    "SchemaError",
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
    "UnknownStore",
    "UnsupportedFeature",
    "UsageError",
    "__version__",
    "alist_applied",
    "arun_pending_on_boot",
    "arun_tasks",
    "atask_status",
    "define_config",
    "list_applied",
    "load_config",
    "run_pending_on_boot",
    "run_tasks",
    "task",
    "task_status",
]
