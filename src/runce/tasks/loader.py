"""Import a task file and find its one :class:`~runce.tasks.model.Task`
(docs/once-tasks.md#writing-a-task)."""

from __future__ import annotations

import importlib.util
import re
import sys
import traceback
from types import ModuleType

from runce.errors import TaskLoadError
from runce.tasks.discovery import TaskFile
from runce.tasks.model import Task

MODULE_PREFIX = "runce_tasks."
_SOURCE = "__runce_source__"  # which file and content a cached module came from


def _source_of(task_file: TaskFile) -> tuple[str, str]:
    return (str(task_file.path), task_file.checksum)


def load_task(task_file: TaskFile) -> Task:
    """Import ``task_file`` (once per process) and return its task."""
    module = _import(task_file)
    tasks = [(name, value) for name, value in vars(module).items() if isinstance(value, Task)]
    if not tasks:
        raise TaskLoadError(
            f"{task_file.path} defines no runce.Task; write "
            "`task = runce.Task(title=..., run=run)` "
            "or decorate its run(ctx) function with @runce.task(title=...)"
        )
    if len(tasks) > 1:
        names = ", ".join(name for name, _ in tasks)
        raise TaskLoadError(
            f"{task_file.path} defines several runce.Task objects ({names}); keep one"
        )
    return tasks[0][1]


def _import(task_file: TaskFile) -> ModuleType:
    name = MODULE_PREFIX + re.sub(r"\W", "_", task_file.id)
    cached = sys.modules.get(name)
    if cached is not None and getattr(cached, _SOURCE, None) == _source_of(task_file):
        return cached
    spec = importlib.util.spec_from_file_location(name, task_file.path)
    if spec is None or spec.loader is None:  # pragma: no cover - only for non-.py paths
        raise TaskLoadError(f"{task_file.path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    setattr(module, _SOURCE, _source_of(task_file))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[name]  # as Python's importer does, so a fixed file loads later
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _load_error(task_file, exc) from exc
    return module


def _load_error(task_file: TaskFile, exc: BaseException) -> TaskLoadError:
    if isinstance(exc, SyntaxError):
        where = exc.filename or str(task_file.path)
        via = "" if where == str(task_file.path) else f" (imported by {task_file.path})"
        line = f", line {exc.lineno}" if exc.lineno else ""  # None for a NUL byte, say
        return TaskLoadError(f"{where}{line}: syntax error: {exc.msg}{via}")
    line = _line_in(task_file, exc)
    return TaskLoadError(f"{task_file.path}{line} raised {type(exc).__name__} on import: {exc}")


def _line_in(task_file: TaskFile, exc: BaseException) -> str:
    """``, line N`` of the deepest frame inside the task file, if any."""
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(task_file.path)
    ]
    return f", line {frames[-1].lineno}" if frames else ""
