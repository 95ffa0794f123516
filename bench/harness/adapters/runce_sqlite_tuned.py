"""runce on SQLite, its worker tuned: ``--log-level warning`` (no line per run)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from harness.adapters import runce_queue, runce_sqlite
from harness.workload import Workload

NAME = "runce (tuned)"
BACKEND = runce_sqlite.BACKEND
PACKAGE = runce_sqlite.PACKAGE
SETTINGS = {**runce_sqlite.SETTINGS, "worker": "runce worker --concurrency C --log-level warning"}
BACKEND_HOOKS = replace(runce_sqlite.BACKEND_HOOKS, variant="tuned")


def process(w: Workload) -> dict[str, Any]:
    runce_queue.open_project(BACKEND_HOOKS)
    return runce_queue.process(BACKEND_HOOKS, w)
