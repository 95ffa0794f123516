"""The Grafana dashboard, the alert rules and docs/observability.md name only metrics, labels
and values that runce serves: each is checked against real scrapes of a worker and a server."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from runce.api.metrics import StoreCollector, registry_of
from runce.config import Config, resolve_config
from runce.domain.runs import RUN_STATES
from runce.runs.events import EventBus
from runce.runs.jobs import Job, JobRegistry
from runce.runs.metrics import WorkerMetrics
from runce.runs.service import RunService
from runce.runs.worker import OUTCOME_NAMES, Worker, WorkerOptions
from runce.stores import memory
from runce.tasks.library import run_tasks
from runce.tasks.states import TaskState

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
METRIC = re.compile(r"\brunce_[a-z_]+\b")
LABEL_VALUE = re.compile(r"\b(outcome|state)\s*=~?\s*\"([^\"]*)\"")
KNOWN_VALUES = {
    "outcome": set(OUTCOME_NAMES.values()),
    "state": {*RUN_STATES, "live", "stale", "busy", "free"} | {s.value.lower() for s in TaskState},
}


def _names(text: str) -> set[str]:
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every sample name a worker and a server serve, once each has something to say."""
    root = tmp_path_factory.mktemp("served")
    (root / "tasks").mkdir()
    config = resolve_config(
        {"store": f"memory://{uuid.uuid4().hex}", "tasks_dir": str(root / "tasks")}
    )
    store = memory.open_store(config.store)
    jobs = JobRegistry()
    jobs.register(Job("docs.job", lambda params: None))
    RunService(store.runs, jobs=jobs, bus=EventBus()).enqueue("docs.job", {})
    worker = Worker(store.runs, WorkerOptions(drain=True, poll=0.05), jobs=jobs, bus=EventBus())
    metrics = WorkerMetrics(worker)
    worker.run()
    server = registry_of(StoreCollector(config, store, cache_seconds=0))
    names = _names(generate_latest(metrics.registry).decode())
    names |= _backfill_names(root, config, server)
    memory.reset()
    return names


def _backfill_names(root: Path, config: Config, server: Any) -> set[str]:
    """What the server serves while a backfill runs (its rate and time left among it)."""
    waiting, gate = root / "waiting", root / "gate"
    (root / "tasks" / "0001_fill.py").write_text(
        BACKFILL.format(waiting=str(waiting), gate=str(gate))
    )
    runner = threading.Thread(target=run_tasks, args=(config,), daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while not waiting.exists():
            assert runner.is_alive()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return _names(generate_latest(server).decode())
    finally:
        gate.write_text("open")
        runner.join(timeout=60)


BACKFILL = """
import os, time
import runce

def fetch(ctx, cursor, size):
    start = cursor or 0
    return list(range(start, start + size)), (None if start >= 20 else start + size)

def process(ctx, batch):
    if batch[0] == 10:
        open({waiting!r}, "w").close()
        while not os.path.exists({gate!r}):
            time.sleep(0.01)

task = runce.Backfill(fetch=fetch, process=process, batch_size=10, total=lambda ctx: 30)
"""


def _alert_expressions() -> list[str]:
    rules = yaml.safe_load((DOCS / "observability" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def _dashboard_expressions() -> list[str]:
    dashboard: dict[str, Any] = json.loads(
        (DOCS / "observability" / "grafana-dashboard.json").read_text()
    )
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_expression_names_metrics_and_values_that_exist(
    served: set[str], source: str
) -> None:
    expressions = _alert_expressions() if source == "alerts" else _dashboard_expressions()
    assert expressions
    for expr in expressions:
        named = set(METRIC.findall(expr))
        assert named, expr
        assert named <= served, (expr, named - served)
        for label, value in LABEL_VALUE.findall(expr):
            assert set(value.split("|")) <= KNOWN_VALUES[label], (expr, value)


def test_the_alerts_cover_backlog_failures_and_missing_workers() -> None:
    joined = "\n".join(_alert_expressions())
    for metric in ("runce_queue_oldest_age_seconds", "runce_runs_processed_total", "runce_workers"):
        assert metric in joined


def test_the_doc_describes_every_metric_served(served: set[str]) -> None:
    text = (DOCS / "observability.md").read_text()
    families = {re.sub(r"_(bucket|count|sum|total|created)$", "", name) for name in served}
    for family in families:
        assert f"`{family}" in text, family


def test_every_metric_the_doc_names_is_served(served: set[str]) -> None:
    text = (DOCS / "observability.md").read_text()
    families = {re.sub(r"_(bucket|count|sum|created)$", "", name) for name in served}
    named = set(re.findall(r"`(runce_[a-z_]+)[`{ ]", text))  # not `runce_backfill_*`
    assert named, "the doc names metrics"
    assert named <= families | served, named - families - served
