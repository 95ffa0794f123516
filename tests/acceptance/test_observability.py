"""Metrics, traces and logs as operators meet them: real `runce serve` and `runce worker`
processes, scraped over HTTP and read with prometheus_client's own parser, and traces
written by the OpenTelemetry SDK in each process to a file."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from runce.domain.runs import RUN_STATES, RunFilter, WorkerInfo
from runce.runs import library as runs_library
from tests.acceptance.conftest import RUNCE, Workspace, clean_env, output_of
from tests.acceptance.test_serve import Server, _bearer, _free_port

pytestmark = pytest.mark.slow

JOBS = """
import time

import runce


@runce.job("obs.work", max_attempts=2)
def work(params, ctx):
    if params["do"] == "fail":
        raise RuntimeError("it broke, api_key=hunter2")
    if params["do"] == "cancel":
        deadline = time.monotonic() + 120
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
    return {"done": params["do"]}


@runce.job("obs.other")
def other(params, ctx):
    return None
"""

SETTINGS = (
    '[worker]\nhandlers = ["jobs"]\nlease = 3\npoll = 0.2\nbackoff_base = 0.05\n'
    "shutdown_timeout = 5\nconcurrency = 8\n"
)


def _space(space: Workspace) -> Workspace:
    space.settings += SETTINGS
    space.write_config()
    (space.root / "jobs.py").write_text(JOBS)
    return space


@pytest.fixture(params=["sqlite", "postgres"])
def mspace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    if request.param == "sqlite":
        space = Workspace(tmp_path, "sqlite:///.runce/runce.db")
        yield _space(space)
        space.reap()
        return
    from tests import services

    url = request.getfixturevalue("postgres_server")
    schema = f"runce_t_{uuid.uuid4().hex[:12]}"
    space = Workspace(tmp_path, url, f'schema = "{schema}"\n')
    yield _space(space)
    space.reap()
    services.drop_schema(url, schema)


def _scrape(url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics answer, by name and labels, through prometheus_client."""
    answer = httpx.get(url, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


def _wait_until(check: Any, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _states(service: Any) -> dict[str, int]:
    counts = dict.fromkeys(RUN_STATES, 0)
    cursor = None
    while True:
        page = service.page(RunFilter(kind="obs.work"), cursor=cursor, limit=100)
        for run in page.runs:
            counts[run.state] += 1
        if page.next_cursor is None:
            return counts
        cursor = page.next_cursor


def _workload(space: Workspace, service: Any) -> None:
    """30 runs of one kind: 20 succeed, 5 fail (after a retry each), 5 are canceled while
    running."""
    inputs = [{"do": "ok"}] * 20 + [{"do": "fail"}] * 5 + [{"do": "cancel"}] * 5
    runs = service.enqueue_many("obs.work", inputs)
    cancels = [run.id for run in runs[25:]]
    _wait_until(lambda: all(service.get(i).state == "running" for i in cancels), "the cancel jobs")
    for run_id in cancels:
        service.cancel(run_id)
    _wait_until(lambda: _states(service)["succeeded"] + _states(service)["failed"] == 25, "work")
    _wait_until(lambda: _states(service)["canceled"] == 5, "the cancels")


def test_every_metric_equals_the_store_after_a_known_workload(mspace: Workspace) -> None:
    config = runs_library._config(mspace.root / "runce.toml")
    service = runs_library.service(config)
    port = _free_port()
    worker = mspace.start(
        "worker", "--metrics-port", str(port), "--kinds", "obs.work", RUNCE_LOG_FORMAT="json"
    )
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    _wait_until(lambda: _reachable(metrics_url) or worker.poll() is not None, "worker metrics")
    assert worker.poll() is None, worker.communicate()
    _workload(mspace, service)

    # The worker's own metrics against the store's records of the same attempts.
    truth = _states(service)
    retried = sum(
        a.outcome == "retry"
        for run in service.page(RunFilter(state="failed"), limit=100).runs
        for a in service.attempts(run.id)
    )
    assert (truth["succeeded"], truth["failed"], truth["canceled"], retried) == (20, 5, 5, 5)
    own = _scrape(metrics_url)
    outcomes = {"succeeded": 20, "failed": 5, "retried": retried, "canceled": 5}
    for outcome, count in outcomes.items():
        labels = {"kind": "obs.work", "outcome": outcome}
        assert _value(own, "runce_runs_processed_total", **labels) == count, outcome
        assert _value(own, "runce_run_duration_seconds_count", **labels) == count, outcome
    assert _value(own, "runce_run_wait_seconds_count", kind="obs.work") == 35
    assert _value(own, "runce_worker_slots", state="busy") == 0
    assert _value(own, "runce_worker_slots", state="free") == 8
    worker.terminate()
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    _check_json_logs(err)

    # Seven more queued, due a minute ago; a live worker of another kind, and a stale one.
    due = service.queue.now() - timedelta(seconds=60)
    service.enqueue_many("obs.work", [{"do": "ok"}] * 7, run_at=due)
    other = mspace.start("worker", "--kinds", "obs.other")
    _wait_until(lambda: any(w.state == "running" for w in service.queue.workers()), "a worker")
    now = service.queue.now()
    service.queue.worker_seen(
        WorkerInfo("gone", "elsewhere", 1, now - timedelta(hours=2), now - timedelta(hours=1), 4)
    )
    mspace.task("2026-01-01.first", "@runce.task()\ndef run(ctx):\n    pass\n")
    applied = mspace.runce("run")
    assert applied.returncode == 0, output_of(applied)
    mspace.task("2026-01-02.second", "@runce.task()\ndef run(ctx):\n    pass\n")

    server = Server(mspace)
    token = server.token("runs:read")
    started = time.monotonic()
    samples = _scrape(f"{server.url}/metrics", **_bearer(token))
    waited = time.monotonic() - started
    truth = _states(service)
    assert truth["queued"] == 7
    for state in RUN_STATES:
        assert _value(samples, "runce_runs", kind="obs.work", state=state) == truth[state], state
    age = _value(samples, "runce_queue_oldest_age_seconds", kind="obs.work")
    assert 59 <= age <= 60 + waited + 30, age
    assert _value(samples, "runce_workers", state="live") == 1
    assert _value(samples, "runce_workers", state="stale") == 1
    assert _value(samples, "runce_tasks", state="applied") == 1
    assert _value(samples, "runce_tasks", state="pending") == 1
    assert _value(samples, "runce_task_duration_seconds_count") == 1
    assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 401
    server.stop()
    other.terminate()
    other.wait(timeout=60)


def _check_json_logs(err: str) -> None:
    """Every log line is a JSON object; a final failure is an error with its exception,
    masked as the text lines are."""
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    failed = [line for line in lines if line["message"].startswith("run.failed")]
    retried = [line for line in lines if line["message"].startswith("run.retrying")]
    assert len(failed) == len(retried) == 5
    assert {line["level"] for line in failed} == {"ERROR"}
    assert {line["level"] for line in retried} == {"WARNING"}
    assert all("RuntimeError: it broke" in line["exception"] for line in failed)
    assert {line["kind"] for line in failed} == {"obs.work"}
    assert all(line["attempt"] == 2 and line["duration_ms"] >= 0 for line in failed)
    assert "hunter2" not in err
    assert "api_key=***" in err


def _reachable(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


# -- traces -------------------------------------------------------------------------------------

# Each process sets up the OpenTelemetry SDK as an application would, writing its finished
# spans as JSON lines to $SPANS.
TRACING = """
import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

if os.environ.get("SPANS"):  # `runce serve` imports the jobs too, and has no SDK set up
    provider = TracerProvider()
    out = open(os.environ["SPANS"], "a", buffering=1)
    exporter = ConsoleSpanExporter(out=out, formatter=lambda s: s.to_json(indent=None) + "\\n")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
"""

TRACED_JOBS = """
import tracing_setup  # noqa: F401

import runce
from opentelemetry import trace


@runce.job("trace.local")
def local(params, ctx):
    with trace.get_tracer("jobs").start_as_current_span("inside the job"):
        return None


@runce.job("trace.remote")
def remote(params, ctx):
    return None
"""

ENQUEUER = """
import sys

import tracing_setup  # noqa: F401

import runce
from opentelemetry import trace

url, token = sys.argv[1], sys.argv[2]
with trace.get_tracer("web").start_as_current_span("POST /signup") as parent:
    runce.enqueue("trace.local", {"n": 1})
    with runce.Client(url, token) as client:
        client.enqueue("trace.remote", {"n": 2})
print(format(parent.get_span_context().trace_id, "032x"))
"""


def _spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_trace_begun_where_a_run_is_enqueued_goes_on_in_the_workers(tmp_path: Path) -> None:
    space = Workspace(tmp_path, "sqlite:///.runce/runce.db")
    space.settings += '[worker]\nhandlers = ["jobs"]\nlease = 5\npoll = 0.2\n'
    space.write_config()
    (space.root / "tracing_setup.py").write_text(TRACING)
    (space.root / "jobs.py").write_text(TRACED_JOBS)
    spans_file = tmp_path / "spans.jsonl"
    env = {"SPANS": str(spans_file), "PYTHONPATH": str(space.root)}
    server = Server(space)
    token = server.token("runs:write", "runs:work")
    python = str(Path(RUNCE).with_name("python"))
    enqueued = subprocess.run(
        [python, "-c", ENQUEUER, server.url, token],
        cwd=space.root,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert enqueued.returncode == 0, output_of(enqueued)
    trace_id = enqueued.stdout.strip()

    local = space.runce("worker", "--drain", "--kinds", "trace.local", **env)
    assert local.returncode == 0, output_of(local)
    remote = space.runce(
        "worker",
        "--remote",
        server.url,
        "--token",
        token,
        "--drain",
        "--kinds",
        "trace.remote",
        **env,
    )
    assert remote.returncode == 0, output_of(remote)
    server.stop()

    spans = {span["name"]: span for span in _spans(spans_file)}
    enqueue = spans["runce enqueue trace.local"]
    for name in ("runce enqueue trace.local", "runce run trace.local", "runce run trace.remote"):
        assert spans[name]["context"]["trace_id"] == f"0x{trace_id}", name
    ran = spans["runce run trace.local"]
    assert ran["parent_id"] == enqueue["context"]["span_id"]
    assert ran["kind"] == "SpanKind.CONSUMER"
    assert ran["attributes"]["runce.run.kind"] == "trace.local"
    assert ran["attributes"]["runce.run.attempt"] == 1
    assert ran["attributes"]["runce.run.outcome"] == "succeeded"
    assert spans["inside the job"]["parent_id"] == ran["context"]["span_id"]
    remote_ran = spans["runce run trace.remote"]
    assert remote_ran["parent_id"] == spans["POST /signup"]["context"]["span_id"]


def test_a_metrics_port_in_use_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    space = _space(Workspace(tmp_path, "sqlite:///.runce/runce.db"))
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = space.runce("worker", "--drain", "--metrics-port", port)
    assert result.returncode == 2, output_of(result)
    assert f"runce: runce worker cannot serve metrics on port {port}" in result.stderr
    assert "Traceback" not in result.stderr
