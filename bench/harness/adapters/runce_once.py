"""runce's once tasks with nothing to do: ``runce run`` and ``runce status`` over N applied
no-op tasks on SQLite, timed as whole processes (start-up included, as a deploy sees them).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from harness import timing
from harness.workload import Workload, work_dir

NAME = "runce"
BACKEND = "sqlite"
PACKAGE = "nurv-runce"
SETTINGS = {"store": "sqlite:///runce.db", "tasks": "N files, @runce.task, body `pass`"}

TASK = """import runce


@runce.task(title="No-op {n}")
def run(ctx: runce.TaskContext) -> None:
    pass
"""


def runce_path() -> str:
    return str(Path(sys.executable).parent / "runce")


def project(count: int) -> Path:
    """N task files, all applied; made once and kept (a marker names the count)."""
    root = work_dir(f"once-runce-{count}")
    marker = root / ".applied"
    if marker.exists():
        return root
    (root / "runce.toml").write_text('tasks_dir = "tasks"\nstore = "sqlite:///runce.db"\n')
    tasks = root / "tasks"
    tasks.mkdir(exist_ok=True)
    for n in range(1, count + 1):
        stamp = f"2026-01-{1 + n // 1440:02d}T{n // 60 % 24:02d}{n % 60:02d}00"
        (tasks / f"{stamp}.noop-{n:04d}.py").write_text(TASK.format(n=n))
    subprocess.run([runce_path(), "run"], cwd=root, check=True, capture_output=True)
    marker.write_text(str(count))
    return root


def once_run(w: Workload) -> dict[str, Any]:
    return timing.time_command([runce_path(), "run"], cwd=project(w.tasks))


def once_status(w: Workload) -> dict[str, Any]:
    return timing.time_command([runce_path(), "status"], cwd=project(w.tasks))


def startup(w: Workload) -> dict[str, Any]:
    """``runce --help``, ``import runce`` and a bare interpreter, whole-process, plus the
    heaviest imports of ``import runce`` by ``-X importtime`` (cumulative microseconds)."""
    here = work_dir("startup")
    python = sys.executable
    result = {
        "help_s": timing.time_command([runce_path(), "--help"], cwd=here)["median_s"],
        "import_s": timing.time_command([python, "-c", "import runce"], cwd=here)["median_s"],
        "python_s": timing.time_command([python, "-c", "pass"], cwd=here)["median_s"],
    }
    result["heaviest_imports_us"] = _heaviest_imports(python, here)
    return result


def _heaviest_imports(python: str, cwd: Path, top: int = 12) -> dict[str, int]:
    done = subprocess.run(
        [python, "-X", "importtime", "-c", "import runce"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    rows: list[tuple[int, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        rows.append((int(cumulative), name.strip()))
    rows.sort(reverse=True)
    return {name: us for us, name in rows[:top]}
