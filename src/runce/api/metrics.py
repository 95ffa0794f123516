"""``GET /metrics``: what the store holds, as Prometheus metrics (docs/observability.md).

``runce_runs{kind,state}``, ``runce_queue_oldest_age_seconds{kind}``,
``runce_workers{state}``, ``runce_tasks{state}``, ``runce_task_duration_seconds`` and each
unfinished backfill's ``runce_backfill_*{task}``, read from the store when scraped: the runs
by bounded index reads (:meth:`~runce.stores.queue.RunQueue.run_counts`: queued runs up to
a cap per kind, running ones and those finished in the last hour up to the cap), the workers'
heartbeats and the once tasks' records, requests and checkpoints. A reading is kept for
:data:`CACHE_SECONDS`, so any number of scrapers cost the database one reading per few
seconds. Workers serve their own metrics
(:mod:`runce.runs.metrics`). Needs ``prometheus_client`` (in ``nurv-runce[api]``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials

from runce.api.appstate import AppState, app_state
from runce.api.auth import bearer, require
from runce.api.problems import ProblemError, answers
from runce.config import Config
from runce.domain.runs import COUNT_WINDOW, RUN_STATES, STATS_CAP, RunCounts, WorkerInfo
from runce.errors import RunceError
from runce.runs.library import queue_of
from runce.stores.base import Store
from runce.tasks.discovery import discover
from runce.tasks.library import status_of
from runce.tasks.states import TaskState, TaskStatus

log = logging.getLogger("runce.api")

CACHE_SECONDS = 5.0
# Seconds a once task took: from a quick data fix to a day-long backfill.
TASK_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
METRICS_EXTRA = "GET /metrics needs prometheus_client: pip install 'nurv-runce[metrics]'"

router = APIRouter(tags=["metrics"])


@dataclass(frozen=True)
class Reading:
    """One reading of the store, at the store's clock."""

    runs: RunCounts
    workers: list[WorkerInfo]
    tasks: list[TaskStatus] | None  # None: the tasks folder could not be read


class StoreCollector:
    """A ``prometheus_client`` collector of the store's metrics, read at most once per
    :data:`CACHE_SECONDS` whoever scrapes."""

    def __init__(
        self,
        config: Config,
        store: Store,
        cache_seconds: float = CACHE_SECONDS,
        cap: int = STATS_CAP,
    ):
        self.config = config
        self.store = store
        self.cache_seconds = cache_seconds
        self.cap = cap  # runs counted at most per kind (queued) or in all (the other states)
        self._mutex = threading.Lock()
        self._reading: Reading | None = None
        self._read_at = 0.0
        self._told = False  # that the tasks folder cannot be read

    def reading(self) -> Reading:
        with self._mutex:  # one reading at a time: scrapers arriving together share it
            now = time.monotonic()
            if self._reading is None or now - self._read_at >= self.cache_seconds:
                self._reading = self._read()
                self._read_at = time.monotonic()
            return self._reading

    def _read(self) -> Reading:
        queue = queue_of(self.store)
        return Reading(queue.run_counts(cap=self.cap), queue.workers(), self._tasks())

    def _tasks(self) -> list[TaskStatus] | None:
        try:
            files = discover(self.config.tasks_dir)
        except RunceError as exc:
            if not self._told:  # once, not at every scrape
                log.warning("GET /metrics leaves runce_tasks out: %s", exc)
                self._told = True
            return None
        return status_of(self.store, files).tasks

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

        reading = self.reading()
        yield from _run_families(reading.runs, GaugeMetricFamily)
        yield _workers_family(reading, self.config.worker.lease, GaugeMetricFamily)
        if reading.tasks is not None:
            yield _tasks_family(reading.tasks, GaugeMetricFamily)
            yield _task_durations(reading.tasks, HistogramMetricFamily)
            yield from _backfill_families(reading.tasks, GaugeMetricFamily)


def _run_families(counts: RunCounts, gauge: Any) -> Iterator[Any]:
    runs = gauge(
        "runce_runs",
        f"Runs in the store, by kind and state: queued (counted up to {STATS_CAP:,} per kind) "
        f"and running ones, and those that finished in the last {COUNT_WINDOW / 60:.0f} "
        f"minutes (up to {STATS_CAP:,} in all).",
        labels=["kind", "state"],
    )
    age = gauge(
        "runce_queue_oldest_age_seconds",
        "Seconds the oldest due queued run of each kind has been due (0: none due).",
        labels=["kind"],
    )
    for kind in sorted({kind for kind, _ in counts.counts}):
        for state in RUN_STATES:
            runs.add_metric([kind, state], counts.counts.get((kind, state), 0))
        due = counts.oldest_due.get(kind)
        waited = 0.0 if due is None else (counts.now - due).total_seconds()
        age.add_metric([kind], max(0.0, waited))
    yield runs
    yield age


def _workers_family(reading: Reading, lease: float, gauge: Any) -> Any:
    """Workers not stopped: live when heard from within one lease (they report every
    lease/3), stale otherwise (killed, paused, or cut off from the store)."""
    family = gauge("runce_workers", "Workers that did not stop, live or stale.", labels=["state"])
    now = reading.runs.now
    running = [w for w in reading.workers if w.state != "stopped"]
    live = sum((now - w.last_seen).total_seconds() <= lease for w in running)
    family.add_metric(["live"], live)
    family.add_metric(["stale"], len(running) - live)
    return family


def _tasks_family(tasks: list[TaskStatus], gauge: Any) -> Any:
    family = gauge("runce_tasks", "Once tasks, by state.", labels=["state"])
    for state in TaskState:
        family.add_metric([state.value.lower()], sum(t.state is state for t in tasks))
    return family


def _task_durations(tasks: list[TaskStatus], histogram: Any) -> Any:
    """The durations of each task's last recorded outcome."""
    seconds = [t.applied.duration_ms / 1000 for t in tasks if t.applied is not None]
    buckets = [(_le(bound), sum(s <= bound for s in seconds)) for bound in TASK_BUCKETS]
    buckets.append(("+Inf", len(seconds)))
    return histogram(
        "runce_task_duration_seconds",
        "How long each once task's last recorded run took.",
        buckets=buckets,
        sum_value=sum(seconds),
    )


def _backfill_families(tasks: list[TaskStatus], gauge: Any) -> Iterator[Any]:
    """Each backfill with a checkpoint that is not applied yet (as ``runce status`` shows
    them): done, total, rate, time left and state. An applied backfill leaves the metrics,
    so a store's long history of backfills adds no series."""
    label = ["task"]
    done = gauge("runce_backfill_rows_done", "Items a backfill has processed.", labels=label)
    total = gauge(
        "runce_backfill_rows_total", "Items a backfill has in all, when it tells.", labels=label
    )
    rate = gauge(
        "runce_backfill_rows_per_second",
        "Items a second a running backfill processes, as last measured.",
        labels=label,
    )
    eta = gauge(
        "runce_backfill_eta_seconds",
        "Seconds a running backfill with a total still needs at its rate.",
        labels=label,
    )
    ranges = gauge("runce_backfill_ranges", "A backfill's key ranges.", labels=label)
    finished = gauge(
        "runce_backfill_ranges_finished", "A backfill's key ranges that are done.", labels=label
    )
    state = gauge(
        "runce_backfill_state",
        "1 for a backfill's state (as runce status shows it), 0 for the others.",
        labels=[*label, "state"],
    )
    for task in tasks:
        progress = task.backfill
        if progress is None or task.state in (TaskState.APPLIED, TaskState.SKIPPED):
            continue
        done.add_metric([task.id], progress.done)
        if progress.total is not None:
            total.add_metric([task.id], progress.total)
        if progress.moving and progress.rate is not None:
            rate.add_metric([task.id], progress.rate)
        if progress.eta_seconds is not None:
            eta.add_metric([task.id], progress.eta_seconds)
        ranges.add_metric([task.id], progress.ranges)
        finished.add_metric([task.id], progress.finished_ranges)
        for each in TaskState:
            state.add_metric([task.id, each.value.lower()], int(task.state is each))
    yield from (done, total, rate, eta, ranges, finished, state)


def _le(bound: float) -> str:
    return repr(float(bound))


def registry_of(collector: StoreCollector) -> Any:
    """A registry holding only ``collector``; None without ``prometheus_client``."""
    try:
        from prometheus_client import CollectorRegistry
    except ImportError:
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
_reader = require("runs:read", all_projects=True)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {TEXT_FORMAT: {}}, "description": "Prometheus' text format"},
        **answers(401, 403, 404, 503),
    },
)
def metrics(ctx: Annotated[AppState, Depends(app_state)], credentials: Credentials) -> Response:
    """Prometheus metrics of the store (docs/observability.md): a token with ``runs:read``
    bound to no project, or none when ``api.public_metrics`` is true."""
    if not ctx.config.api.public_metrics:
        _reader(ctx, credentials)
    registry = ctx.metrics
    if registry is None:
        raise ProblemError("not-found", METRICS_EXTRA)
    from prometheus_client import generate_latest

    return Response(generate_latest(registry), media_type=TEXT_FORMAT)
