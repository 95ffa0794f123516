"""A worker's own Prometheus metrics (docs/observability.md), served by ``runce worker
--metrics-port``.

``runce_runs_processed_total{kind,outcome}``, ``runce_run_duration_seconds{kind,outcome}``,
``runce_run_wait_seconds{kind}`` and ``runce_worker_slots{state}``. The worker tells
:class:`WorkerMetrics` of each attempt whose outcome landed; the labelled children are
bound once per (kind, outcome) and kept, so an attempt costs two dictionary reads and
three increments. The slots are read from the worker when scraped, never updated.
Needs ``prometheus_client`` (the extra ``nurv-runce[metrics]``), imported only here.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from runce.domain.runs import OutcomeKind, Run
from runce.errors import UsageError
from runce.runs.worker import OUTCOME_NAMES, Worker

# Seconds: from a millisecond job to an hour-long one.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
# Seconds a due run waited for a worker: from at once to a day-long backlog.
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)


class WorkerMetrics:
    """The metrics of one worker, in ``registry`` (a new one by default)."""

    def __init__(self, worker: Worker, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._processed = Counter(
            "runce_runs_processed",
            "Attempts this worker finished, by kind and outcome.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "runce_run_duration_seconds",
            "How long attempts ran on this worker, by kind and outcome.",
            ["kind", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._wait = Histogram(
            "runce_run_wait_seconds",
            "From when a run was due (run_at) to when this worker started it, by kind.",
            ["kind"],
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        slots = Gauge(
            "runce_worker_slots",
            "This worker's handler slots, busy running a job or free.",
            ["state"],
            registry=self.registry,
        )
        slots.labels("busy").set_function(lambda: worker.busy)
        slots.labels("free").set_function(lambda: worker.options.concurrency - worker.busy)
        self._bound: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        worker.observer = self

    def attempt_done(self, run: Run, outcome: OutcomeKind, seconds: float) -> None:
        children = self._bound.get((run.kind, outcome))
        if children is None:
            children = self._bind(run.kind, outcome)
        processed, duration, wait = children
        processed.inc()
        duration.observe(seconds)
        # A run handed back may never have started; it waits again for its next claim.
        if outcome != "released" and run.started_at is not None:
            wait.observe(max(0.0, (run.started_at - run.run_at).total_seconds()))

    def _bind(self, kind: str, outcome: str) -> tuple[Any, Any, Any]:
        name = OUTCOME_NAMES[outcome]
        children = (
            self._processed.labels(kind, name),
            self._duration.labels(kind, name),
            self._wait.labels(kind),
        )
        self._bound[kind, outcome] = children
        return children


def serve_metrics(metrics: WorkerMetrics, port: int, host: str = "") -> Any:
    """Serve ``metrics`` at ``http://host:port/metrics`` on a daemon thread; returns the
    server (``shutdown()`` stops it)."""
    try:
        server, _ = start_http_server(port, addr=host or "0.0.0.0", registry=metrics.registry)
    except OSError as exc:
        raise UsageError(
            f"runce worker cannot serve metrics on port {port}: {exc.strerror or exc}"
        ) from None
    return server
