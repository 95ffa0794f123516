"""Task files on disk: ids, order and checksums (docs/once-tasks.md#writing-a-task,
docs/once-tasks.md#running). Nothing here imports a task."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from runce.errors import TaskLoadError
from runce.tasks.taskfiles import checksum_of, task_paths

__all__ = ["TaskFile", "checksum_of", "discover", "skip_variable"]


@dataclass(frozen=True, slots=True)
class TaskFile:
    id: str
    path: Path
    checksum: str


def discover(tasks_dir: Path) -> list[TaskFile]:
    """Every task file under ``tasks_dir`` (sub-folders included), in id order.

    Files and folders whose names start with ``_`` or ``.`` are ignored. Two files with one
    id (in different folders) are an error naming both.
    """
    if tasks_dir.exists() and not tasks_dir.is_dir():
        raise TaskLoadError(
            f"tasks folder {tasks_dir} is a file, not a folder; set tasks_dir to a folder"
        )
    if not tasks_dir.is_dir():
        raise TaskLoadError(
            f"tasks folder {tasks_dir} does not exist; create it, set tasks_dir, "
            'or write a first task with `runce make "name"`'
        )
    found: dict[str, TaskFile] = {}
    for task_id, name in task_paths(tasks_dir):
        path = Path(name)
        if task_id in found:
            raise TaskLoadError(
                f"two task files have the id {task_id!r}: {found[task_id].path} and {path}; "
                "rename one"
            )
        found[task_id] = TaskFile(task_id, path, checksum_of(path.read_bytes()))
    return [found[task_id] for task_id in sorted(found)]


def skip_variable(task_id: str) -> str:
    """``RUNCE_SKIP_<ID>``: the id upper-cased, every run of non-alphanumerics turned to ``_``."""
    return "RUNCE_SKIP_" + re.sub(r"[^A-Za-z0-9]+", "_", task_id).upper()
