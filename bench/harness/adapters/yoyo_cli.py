"""yoyo-migrations with nothing to do: ``yoyo apply`` and ``yoyo list`` over N applied no-op
Python migrations on SQLite, timed as whole processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from harness import timing
from harness.workload import Workload, work_dir

NAME = "yoyo"
BACKEND = "sqlite"
PACKAGE = "yoyo-migrations"
DATABASE = "sqlite:///yoyo.db"
SETTINGS = {"database": DATABASE, "migrations": "N .py files, one step doing nothing"}

MIGRATION = '''"""No-op {n}."""

from yoyo import step


def apply(conn):
    pass


steps = [step(apply)]
'''


def _yoyo(*args: str) -> list[str]:
    yoyo = str(Path(sys.executable).parent / "yoyo")
    return [yoyo, *args, "--no-config-file", "--database", DATABASE, "migrations"]


def _project(count: int) -> Path:
    root = work_dir(f"once-yoyo-{count}")
    marker = root / ".applied"
    if marker.exists():
        return root
    migrations = root / "migrations"
    migrations.mkdir(exist_ok=True)
    for n in range(1, count + 1):
        (migrations / f"{n:04d}_noop.py").write_text(MIGRATION.format(n=n))
    subprocess.run(_yoyo("apply", "--batch"), cwd=root, check=True, capture_output=True)
    marker.write_text(str(count))
    return root


def once_run(w: Workload) -> dict[str, Any]:
    return timing.time_command(_yoyo("apply", "--batch"), cwd=_project(w.tasks))


def once_status(w: Workload) -> dict[str, Any]:
    return timing.time_command(_yoyo("list"), cwd=_project(w.tasks))
