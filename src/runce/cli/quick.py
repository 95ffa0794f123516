"""``runce run`` and ``runce status`` when every task is applied, answered without loading
runce's machinery.

A deploy runs ``runce run`` (and often ``runce status``) on every release, and on a project
with a long history almost every time nothing is pending. The full commands import the
configuration system, the stores, the task runner and click before they can tell; this path
reads the same facts directly (the config file, the task files' checksums, and the SQLite
store's records through :mod:`runce.stores.sqlite.glance`) with nothing but the standard
library, and prints what the full command prints.

It answers only when it is certain, and otherwise hands over to the full command, which
then decides everything itself (errors included). Certain means: the command with no
options and no ``RUNCE_`` variable set; output to a pipe or file (a terminal gets the live
display and colours); the nearest configuration is a ``runce.toml`` holding at most
``store`` (a ``sqlite:///`` URL) and ``tasks_dir``; the store's schema is at the version
this runce knows; no attempt is open; every task file is applied (``success``) with the
checksum it has now; for ``run``, more of them than it lists one by one; for ``status``,
every applied record has its file and nobody holds the lock.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from runce.defaults import CONFIG_FILES, DEFAULT_STORE_URL, DEFAULT_TASKS_DIR
from runce.stores.sqlite.glance import applied_at_rest
from runce.tasks.taskfiles import checksum_of, task_paths

MAX_SKIP_LINES = 10  # as runce.cli.tasks: more applied tasks than this print as one line
_SQLITE_PREFIX = "sqlite:///"
_KEYS = frozenset({"store", "tasks_dir"})
# Paths that need no quoting in a file: URI (anything else goes the full way).
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+,=@~")


class _NotCertain(Exception):
    """Something this path does not handle: the full command decides."""


def answer(argv: list[str] | None) -> bool:
    """Print what ``runce run`` or ``runce status`` prints when every task is applied, and
    return True; or return False having printed nothing."""
    args = sys.argv[1:] if argv is None else argv
    try:
        _require(args in (["run"], ["status"]))
        lines = _idle_run() if args == ["run"] else _all_applied_status()
    except (_NotCertain, OSError, ValueError, UnicodeError):
        return False
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    return True


def _idle_run() -> list[str]:
    database, tasks_dir = _locations()
    begun = time.perf_counter()  # the full command times its run from here
    files = _task_checksums(tasks_dir)
    applied = {task_id: row[0] for task_id, row in _applied(database).items()}
    _require(len(files) > MAX_SKIP_LINES)
    _require(all(applied.get(task_id) == checksum for task_id, checksum in files.items()))
    ids = sorted(files)
    took = (time.perf_counter() - begun) * 1000
    return [
        f"store: sqlite:///{database}",
        f"{'SKIP':<8} {len(ids)} tasks already applied ({ids[0]} … {ids[-1]})",
        f"done: {len(ids)} already applied in {_seconds(round(took))}",
    ]


def _all_applied_status() -> list[str]:
    """The status table when every task file is applied unchanged, every applied task has
    its file, and nobody holds the lock (runce.cli.tasks's _print_status)."""
    database, tasks_dir = _locations()
    files = _task_checksums(tasks_dir)
    applied = _applied(database, lock_free=True)
    _require(bool(files) and set(applied) == set(files))
    rows = []
    for task_id in sorted(files):
        checksum, applied_at, duration_ms, name = applied[task_id]
        _require(checksum == files[task_id])
        rows.append(["APPLIED", task_id, f"{_when(applied_at)} {_seconds(duration_ms)}", name])
    headers = ["STATE", "ID", "DETAIL", "TITLE"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    table = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    return [f"store: sqlite:///{database}", *table, "lock: free"]


def _locations() -> tuple[str, str]:
    """The store's file and the tasks folder, when this path can answer at all."""
    _require(not any(name.startswith("RUNCE_") for name in os.environ))
    stdout = sys.stdout
    _require(stdout is not None and not stdout.isatty())
    _require((getattr(stdout, "encoding", "") or "").lower().replace("-", "") == "utf8")
    base_dir, settings = _config()
    database = os.path.realpath(os.path.join(base_dir, _store_path(settings)))
    tasks = settings.get("tasks_dir", DEFAULT_TASKS_DIR)
    return database, os.path.realpath(os.path.join(base_dir, tasks))


def _require(condition: bool) -> None:
    if not condition:
        raise _NotCertain


def _config() -> tuple[str, dict[str, Any]]:
    """The directory of the nearest ``runce.toml`` and its settings."""
    directory = os.path.realpath(os.getcwd())
    while True:
        for name in CONFIG_FILES[1:]:  # candidates this path does not read
            _require(not os.path.isfile(os.path.join(directory, name)))
        path = os.path.join(directory, CONFIG_FILES[0])
        if os.path.isfile(path):
            break
        parent = os.path.dirname(directory)
        _require(parent != directory)  # no configuration at all: the defaults
        directory = parent
    import tomllib

    with open(path, "rb") as handle:
        settings = tomllib.load(handle)
    _require(set(settings) <= _KEYS)
    for value in settings.values():
        _require(isinstance(value, str) and value == value.strip() and "$" not in value)
    return directory, settings


def _store_path(settings: dict[str, Any]) -> str:
    url = str(settings.get("store", DEFAULT_STORE_URL))
    _require(url.startswith(_SQLITE_PREFIX))
    path = url[len(_SQLITE_PREFIX) :]
    _require(bool(path) and not path.endswith("/") and set(path) <= _PLAIN)
    return path


def _task_checksums(tasks_dir: str) -> dict[str, str]:
    """Task id -> checksum, as runce.tasks.discovery finds them."""
    found: dict[str, str] = {}
    _require(os.path.isdir(tasks_dir))
    for task_id, path in task_paths(tasks_dir):
        _require(task_id not in found)
        with open(path, "rb") as handle:
            found[task_id] = checksum_of(handle.read())
    return found


def _applied(database: str, lock_free: bool = False) -> dict[str, tuple[Any, ...]]:
    """Task id -> (checksum, applied_at, duration_ms, name) of every applied record, when
    the store is at rest (the schema is the one this runce knows, no attempt is open and,
    with ``lock_free``, nobody holds the lock) and every record is a success."""
    records = applied_at_rest(database, lock_free=lock_free)
    if records is None or any(row["status"] != "success" for row in records.values()):
        raise _NotCertain
    return {
        task_id: (row["checksum"], row["applied_at"], row["duration_ms"], row["name"])
        for task_id, row in records.items()
    }


def _when(text: str) -> str:
    """``%Y-%m-%d %H:%M:%S`` of a time the store wrote (``2026-01-02T03:04:05.678Z``)."""
    _require(len(text) == 24 and text[10] == "T" and text[19] == "." and text[23] == "Z")
    return f"{text[:10]} {text[11:19]}"


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.2f}s" if ms < 60_000 else f"{ms / 60_000:.1f}m"
