"""runce on SQLite at default settings, observed: the worker serves
``--metrics-port`` and OpenTelemetry's SDK records every span (the producer's too), or
samples them (``BENCH_RUNCE_TRACE_RATIO``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from harness.adapters import runce_queue, runce_sqlite
from harness.workload import Workload

NAME = "runce (observed)"
BACKEND = runce_sqlite.BACKEND
PACKAGE = runce_sqlite.PACKAGE
SETTINGS = {
    **runce_sqlite.SETTINGS,
    "worker": runce_queue.observed_worker(),
}
BACKEND_HOOKS = replace(runce_sqlite.BACKEND_HOOKS, variant="observed")


def process(w: Workload) -> dict[str, Any]:
    runce_queue.open_project(BACKEND_HOOKS)
    return runce_queue.process(BACKEND_HOOKS, w)
