"""``GET /metrics``: who may read it, what it holds, and the trace context of enqueues."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from runce import tracing
from runce.api.metrics import StoreCollector, registry_of
from runce.config import Config, resolve_config
from runce.domain.runs import RUN_STATES, Outcome, RunFilter
from runce.runs import library as runs_library
from runce.runtime import shared_store
from runce.stores.base import Store
from runce.stores.registry import open_store
from runce.tasks import control
from runce.tasks.library import run_tasks
from runce.tasks.states import TaskState
from tests.server.conftest import Api, make_api

PARENT = "00-" + "4bf92f3577b34da6a3ce929d0e0e4736" + "-" + "00f067aa0ba902b7" + "-01"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.parametrize(
    ("role", "status"),
    [("reader", 200), ("all", 200), (None, 401), ("writer", 403), ("shop", 403)],
)
def test_metrics_need_a_reading_token_bound_to_no_project(
    api: Api, role: str | None, status: int
) -> None:
    answer = api.call("GET", "/metrics", role)
    assert answer.status_code == status, answer.text
    if status != 200:
        assert answer.headers["content-type"] == "application/problem+json"


def test_public_metrics_need_no_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    api = make_api(tmp_path, {"api": {"public_metrics": True}})
    api.enqueue(kind="email.send")
    answer = api.call("GET", "/metrics", None)
    assert answer.status_code == 200
    samples = _samples(answer.text)
    assert samples["runce_runs", (("kind", "email.send"), ("state", "queued"))] == 1
    assert samples["runce_runs", (("kind", "email.send"), ("state", "failed"))] == 0
    assert samples["runce_workers", (("state", "live"),)] == 0
    assert not (tmp_path / "tasks").exists()
    assert not [name for name, _ in samples if name.startswith("runce_task")]
    api.client.close()


def test_a_reading_is_shared_by_scrapes_within_the_cache(api: Api) -> None:
    store = shared_store(api.config.store)
    collector = StoreCollector(api.config, store, cache_seconds=3600)
    first = collector.reading()
    runs_library.service(api.config).enqueue("email.send", {})
    assert collector.reading() is first
    assert dict(StoreCollector(api.config, store).reading().runs.counts) == {
        ("email.send", "queued"): 1
    }


def test_a_callers_traceparent_is_kept_with_the_run(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing, "_api", False)  # as on a server without OpenTelemetry
    headers = {"traceparent": PARENT, "tracestate": "vendor=1"}
    answer = api.call("POST", "/v1/runs", json={"kind": "email.send"}, headers=headers)
    assert answer.status_code == 201
    assert answer.json()["trace_context"] == {"traceparent": PARENT, "tracestate": "vendor=1"}
    broken = api.call(
        "POST", "/v1/runs", json={"kind": "email.send"}, headers={"traceparent": "nonsense"}
    )
    assert broken.status_code == 201
    assert broken.json()["trace_context"] is None
    plain = api.enqueue(kind="email.send")
    assert plain["trace_context"] is None


BACKFILL = """
import os, time
import runce

def fetch(ctx, cursor, size):
    start = cursor or 0
    batch = list(range(start, min(start + size, 60)))
    return batch, (start + len(batch) if start + len(batch) < 60 else None)

def process(ctx, batch):
    time.sleep(0.01)
    if batch[0] == 20:
        open({waiting!r}, "w").close()
        deadline = time.monotonic() + 120
        while not os.path.exists({gate!r}) and time.monotonic() < deadline:
            time.sleep(0.01)

task = runce.Backfill(title="fill", fetch=fetch, process=process, batch_size=10,
                      total=lambda ctx: 60)
"""


@pytest.fixture(params=["sqlite", "postgres", "mongo"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The settings of a fresh store of each kind that holds once tasks and runs."""
    if request.param == "sqlite":
        yield {"store": f"sqlite:///{tmp_path / 'runce.db'}"}
    elif request.param == "postgres":
        from tests import services

        url = request.getfixturevalue("postgres_server")
        schema = f"runce_t_{uuid.uuid4().hex[:12]}"
        yield {"store": url, "schema": schema}
        services.drop_schema(url, schema)
    else:
        import pymongo

        server = request.getfixturevalue("mongo_server")
        database = f"runce_t_{uuid.uuid4().hex[:12]}"
        yield {"store": f"{server.rstrip('/')}/{database}"}
        with pymongo.MongoClient(server) as client:
            client.drop_database(database)


def test_runs_metrics_equal_the_stores_runs_counted_up_to_the_cap(
    tmp_path: Path, store_settings: dict[str, Any]
) -> None:
    config = resolve_config(store_settings)
    service = runs_library.service(config)
    queue = service.queue
    later = queue.now() + timedelta(hours=1)
    service.enqueue_many("m.big", [{}] * 4)  # over the cap of 3: counted as 3
    service.enqueue_many("m.small", [{}] * 2, run_at=later)  # queued, none due
    ran = [service.enqueue("m.done", {}) for _ in range(3)] + [service.enqueue("m.run", {})]
    claimed = {run.id: run for run in queue.claim("w1", ["m.done", "m.run"], 4, 60)}
    assert set(claimed) == {run.id for run in ran}
    fences = [claimed[run.id].fence for run in ran]
    queue.complete([Outcome(fences[0], "succeeded"), Outcome(fences[1], "failed", error="x")])
    service.cancel(ran[2].id)
    service.enqueue("m.gone", {})
    service.cancel(service.page(RunFilter(kind="m.gone"), limit=1).runs[0].id)

    store = open_store(config.store)
    try:
        collector = StoreCollector(config, store, cache_seconds=0, cap=3)
        text = generate_latest(registry_of(collector)).decode()
    finally:
        store.close()
    runs = {
        (dict(labels)["kind"], dict(labels)["state"]): value
        for (name, labels), value in _samples(text).items()
        if name == "runce_runs"
    }
    truth: dict[tuple[str, str], int] = {}
    for run in service.page(RunFilter(), limit=100).runs:
        truth[run.kind, run.state] = truth.get((run.kind, run.state), 0) + 1
    assert truth[("m.big", "queued")] == 4
    truth["m.big", "queued"] = 3  # the cap, per kind
    kinds = {kind for kind, _ in truth}
    expected = {
        (kind, state): truth.get((kind, state), 0) for kind in kinds for state in RUN_STATES
    }
    assert runs == expected
    ages = {
        dict(labels)["kind"]: value
        for (name, labels), value in _samples(text).items()
        if name == "runce_queue_oldest_age_seconds"
    }
    assert ages["m.small"] == 0  # none due
    assert 0 <= ages["m.big"] < 60


def _backfill_samples(config: Config, store: Store) -> dict[tuple[str, tuple[str, ...]], float]:
    """The backfill and task samples of one scrape, parsed by prometheus_client, by name
    and label values (in the labels' alphabetical order: state before task)."""
    text = generate_latest(registry_of(StoreCollector(config, store, cache_seconds=0))).decode()
    return {
        (name, tuple(v for _, v in labels)): value
        for (name, labels), value in _samples(text).items()
        if name.startswith(("runce_backfill", "runce_tasks"))
    }


def test_a_backfills_progress_and_state_are_served_as_it_runs_pauses_and_ends(
    tmp_path: Path, store_settings: dict[str, Any]
) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    waiting, gate = tmp_path / "waiting", tmp_path / "gate"
    (tasks / "0001_fill.py").write_text(BACKFILL.format(waiting=str(waiting), gate=str(gate)))
    config = resolve_config({**store_settings, "tasks_dir": str(tasks)})
    store = open_store(config.store)
    runner = threading.Thread(target=run_tasks, args=(config,), daemon=True)
    try:
        runner.start()
        deadline = time.monotonic() + 120
        while not waiting.exists():
            assert time.monotonic() < deadline
            assert runner.is_alive()
            time.sleep(0.01)
        running = _backfill_samples(config, store)
        assert running["runce_backfill_rows_done", ("0001_fill",)] == 20
        assert running["runce_backfill_rows_total", ("0001_fill",)] == 60
        assert running["runce_backfill_rows_per_second", ("0001_fill",)] > 0
        assert running["runce_backfill_eta_seconds", ("0001_fill",)] > 0
        assert running["runce_backfill_ranges", ("0001_fill",)] == 1
        assert running["runce_backfill_ranges_finished", ("0001_fill",)] == 0
        states = {k[1][0]: v for k, v in running.items() if k[0] == "runce_backfill_state"}
        assert states == {s.value.lower(): float(s is TaskState.RUNNING) for s in TaskState}
        assert running["runce_tasks", ("running",)] == 1

        control.pause_task("0001_fill", config)
        gate.write_text("open")
        runner.join(timeout=120)
        paused = _backfill_samples(config, store)
        assert paused["runce_backfill_rows_done", ("0001_fill",)] == 30  # stopped at the boundary
        assert paused["runce_backfill_state", ("paused", "0001_fill")] == 1
        assert paused["runce_backfill_state", ("running", "0001_fill")] == 0
        assert ("runce_backfill_rows_per_second", ("0001_fill",)) not in paused
        assert ("runce_backfill_eta_seconds", ("0001_fill",)) not in paused
        assert paused["runce_tasks", ("paused",)] == 1

        control.resume_task("0001_fill", config)
        assert run_tasks(config).ok
        done = _backfill_samples(config, store)
        assert not [name for name, _ in done if name.startswith("runce_backfill")]
        assert done["runce_tasks", ("applied",)] == 1
    finally:
        gate.write_text("open")
        runner.join(timeout=120)
        store.close()
