"""Deprecated home of the once-task functions, which live in :mod:`runce.tasks.library`.

Code that imports from here keeps working, with a ``DeprecationWarning``; import from
``runce.tasks.library`` (or use the names on ``runce`` itself) instead."""

import warnings

from runce.tasks.library import (
    StatusReport,
    baseline,
    list_applied,
    lock_holder,
    repair,
    run_pending_on_boot,
    run_tasks,
    task_history,
    task_status,
    unlock,
)

__all__ = [
    "StatusReport",
    "baseline",
    "list_applied",
    "lock_holder",
    "repair",
    "run_pending_on_boot",
    "run_tasks",
    "task_history",
    "task_status",
    "unlock",
]

warnings.warn(
    "runce.tasks.api is now runce.tasks.library; import from there",
    DeprecationWarning,
    stacklevel=2,
)
