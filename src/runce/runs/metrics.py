"""A worker's own Prometheus metrics (docs/observability.md), served by ``runce worker
--metrics-port``.

``runce_runs_processed_total{kind,outcome}``, ``runce_run_duration_seconds{kind,outcome}``,
``runce_run_wait_seconds{kind}`` and ``runce_worker_slots{state}``. The worker tells
:class:`WorkerMetrics` of each attempt whose outcome landed, from its one announcer thread;
the counts are kept in plain lists per (kind, outcome), without the lock per increment
that ``prometheus_client``'s own metrics take, and turned into metric families when
scraped. A scrape reads them while they grow: a histogram's sum may lack the attempt
counted last, never its count (the ``+Inf`` bucket is the sum of the others). The slots
are read from the worker when scraped, never updated. Needs ``prometheus_client`` (the
extra ``nurv-runce[metrics]``), imported only here.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from runce.domain.runs import OutcomeKind, Run
from runce.errors import UsageError
from runce.runs.worker import OUTCOME_NAMES, Worker

# Seconds: from a millisecond job to an hour-long one.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
# Seconds a due run waited for a worker: from at once to a day-long backlog.
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)


class _Histogram:
    """Observations in buckets (the last one past every bound) and their sum."""

    __slots__ = ("bounds", "counts", "les", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        # The ``le`` labels as prometheus_client writes them ("1.0", "0.005", "+Inf").
        self.les = (*(repr(float(bound)) for bound in bounds), "+Inf")
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # a bucket holds values <= its bound
        self.total += value

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        counts, total = list(self.counts), self.total
        cumulative: list[tuple[str, float]] = []
        seen = 0
        for le, count in zip(self.les, counts, strict=True):
            seen += count
            cumulative.append((le, seen))
        family.add_metric(labels, cumulative, total)


class _Attempts:
    """The attempts of one kind that ended one way."""

    __slots__ = ("count", "duration", "wait")

    def __init__(self, wait: _Histogram) -> None:
        self.count = 0
        self.duration = _Histogram(DURATION_BUCKETS)
        self.wait = wait  # shared by every outcome of the kind


class WorkerMetrics(Collector):
    """The metrics of one worker, in ``registry`` (a new one by default)."""

    def __init__(self, worker: Worker, registry: CollectorRegistry | None = None) -> None:
        self._worker = worker
        self._attempts: dict[tuple[str, OutcomeKind], _Attempts] = {}
        self._waits: dict[str, _Histogram] = {}
        self.registry = registry or CollectorRegistry()
        self.registry.register(self)
        worker.observer = self

    def attempt_done(self, run: Run, outcome: OutcomeKind, seconds: float) -> None:
        attempts = self._attempts.get((run.kind, outcome))
        if attempts is None:
            attempts = self._attempts[run.kind, outcome] = self._new(run.kind)
        attempts.count += 1
        attempts.duration.observe(seconds)
        # A run handed back may never have started; it waits again for its next claim.
        if outcome != "released" and run.started_at is not None:
            attempts.wait.observe(max(0.0, (run.started_at - run.run_at).total_seconds()))

    def _new(self, kind: str) -> _Attempts:
        wait = self._waits.get(kind)
        if wait is None:
            wait = self._waits[kind] = _Histogram(WAIT_BUCKETS)
        return _Attempts(wait)

    def collect(self) -> Iterator[Metric]:
        """The metric families as they stand (a scrape, or the registry's first look)."""
        processed = CounterMetricFamily(
            "runce_runs_processed",
            "Attempts this worker finished, by kind and outcome.",
            labels=["kind", "outcome"],
        )
        duration = HistogramMetricFamily(
            "runce_run_duration_seconds",
            "How long attempts ran on this worker, by kind and outcome.",
            labels=["kind", "outcome"],
        )
        for (kind, outcome), attempts in list(self._attempts.items()):
            labels = [kind, OUTCOME_NAMES[outcome]]
            processed.add_metric(labels, attempts.count)
            attempts.duration.add_to(duration, labels)
        wait = HistogramMetricFamily(
            "runce_run_wait_seconds",
            "From when a run was due (run_at) to when this worker started it, by kind.",
            labels=["kind"],
        )
        for kind, waits in list(self._waits.items()):
            waits.add_to(wait, [kind])
        slots = GaugeMetricFamily(
            "runce_worker_slots",
            "This worker's handler slots, busy running a job or free.",
            labels=["state"],
        )
        busy = self._worker.busy
        slots.add_metric(["busy"], busy)
        slots.add_metric(["free"], self._worker.options.concurrency - busy)
        return iter((processed, duration, wait, slots))


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
