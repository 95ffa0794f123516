"""Which files under a tasks folder are tasks, and their checksums. Standard library only:
:mod:`runce.tasks.discovery` and the command line's fast path (:mod:`runce.cli.quick`) both
find and checksum task files through it."""

import hashlib
import os
from collections.abc import Iterator

IGNORED_PREFIXES = ("_", ".")  # files and folders whose names start so are not tasks


def checksum_of(data: bytes) -> str:
    """``sha256:<hex>`` of the file with line endings normalised, so a checkout on Windows
    and one on Linux agree."""
    normalised = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return "sha256:" + hashlib.sha256(normalised).hexdigest()


def task_paths(tasks_dir: str | os.PathLike[str]) -> Iterator[tuple[str, str]]:
    """``(task id, path)`` of every task file under ``tasks_dir``, sub-folders included, in
    the order the folders are walked (not id order)."""
    for root, dirs, files in os.walk(tasks_dir):
        dirs[:] = [d for d in dirs if not d.startswith(IGNORED_PREFIXES)]
        for name in files:
            if name.endswith(".py") and not name.startswith(IGNORED_PREFIXES):
                yield name[:-3], os.path.join(root, name)
