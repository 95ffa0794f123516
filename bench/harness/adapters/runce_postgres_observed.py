"""runce on PostgreSQL at default settings, observed: the worker serves
``--metrics-port`` and OpenTelemetry's SDK records every span (the producer's too), or
samples them (``BENCH_RUNCE_TRACE_RATIO``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from harness.adapters import runce_postgres, runce_queue
from harness.workload import Workload

NAME = "runce (observed)"
BACKEND = runce_postgres.BACKEND
PACKAGE = runce_postgres.PACKAGE
SETTINGS = {
    **runce_postgres.SETTINGS,
    "worker": runce_queue.observed_worker(),
}
BACKEND_HOOKS = replace(runce_postgres.BACKEND_HOOKS, variant="observed")


def process(w: Workload) -> dict[str, Any]:
    runce_queue.open_project(BACKEND_HOOKS)
    return runce_queue.process(BACKEND_HOOKS, w)
