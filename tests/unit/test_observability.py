"""Spans, logs and a worker's metrics in-process (the memory store, OpenTelemetry's SDK with
an in-memory exporter); and that none of it is imported before it is used."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from runce import tracing
from runce.cli.logs import JsonFormatter, TextFormatter
from runce.config import DEFAULT_REDACT
from runce.runs import redact
from runce.runs.events import EventBus
from runce.runs.jobs import Job, JobRegistry
from runce.runs.metrics import DURATION_BUCKETS, WorkerMetrics, _Histogram
from runce.runs.service import RunService
from runce.runs.worker import Worker, WorkerOptions
from runce.stores import memory

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _provider() -> None:
    """One SDK provider for the process (OpenTelemetry allows setting it once)."""
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        current = provider
    current.add_span_processor(SimpleSpanProcessor(_EXPORTER))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


@pytest.fixture
def store() -> Iterator[memory.MemoryStore]:
    yield memory.MemoryStore(uuid.uuid4().hex)
    memory.reset()


def _jobs() -> JobRegistry:
    jobs = JobRegistry()

    def fine(params: Any) -> Any:
        with trace.get_tracer("test").start_as_current_span("inside"):
            return {"ok": True}

    def broken(params: Any) -> Any:
        raise RuntimeError("no luck with api_key=hunter2")

    jobs.register(Job("obs.fine", fine))
    jobs.register(Job("obs.broken", broken, max_attempts=2))
    return jobs


def _drain(store: memory.MemoryStore, jobs: JobRegistry, **options: Any) -> Worker:
    settings = {"concurrency": 2, "lease": 5.0, "poll": 0.05, "backoff_base": 0.0, **options}
    worker = Worker(store.runs, WorkerOptions(drain=True, **settings), jobs=jobs, bus=EventBus())
    return worker


def test_a_run_span_continues_the_trace_of_its_enqueue(
    store: memory.MemoryStore, spans: InMemorySpanExporter
) -> None:
    jobs = _jobs()
    service = RunService(store.runs, jobs=jobs, bus=EventBus())
    with trace.get_tracer("test").start_as_current_span("request") as parent:
        run = service.enqueue("obs.fine", {})
    assert run.trace_context is not None
    assert store.runs.get(run.id).trace_context == run.trace_context  # type: ignore[union-attr]
    _drain(store, jobs).run()
    found = {span.name: span for span in spans.get_finished_spans()}
    enqueue, ran, inside = (
        found["runce enqueue obs.fine"],
        found["runce run obs.fine"],
        found["inside"],
    )
    trace_id = parent.get_span_context().trace_id
    assert {enqueue.context.trace_id, ran.context.trace_id, inside.context.trace_id} == {trace_id}
    assert enqueue.kind is trace.SpanKind.PRODUCER
    assert dict(enqueue.attributes or {}) == {
        "runce.run.kind": "obs.fine",
        "runce.run.count": 1,
        "runce.run.id": run.id,
    }
    assert ran.parent is not None
    assert ran.parent.span_id == enqueue.context.span_id
    assert inside.parent is not None
    assert inside.parent.span_id == ran.context.span_id
    assert ran.kind is trace.SpanKind.CONSUMER
    assert dict(ran.attributes or {}) == {
        "runce.run.id": run.id,
        "runce.run.kind": "obs.fine",
        "runce.run.attempt": 1,
        "runce.run.outcome": "succeeded",
    }


def test_a_failed_attempt_records_its_error_masked(
    store: memory.MemoryStore, spans: InMemorySpanExporter
) -> None:
    jobs = _jobs()
    RunService(store.runs, jobs=jobs, bus=EventBus()).enqueue("obs.broken", {})
    _drain(store, jobs).run()
    attempts = [s for s in spans.get_finished_spans() if s.name == "runce run obs.broken"]
    outcomes = [(s.attributes or {})["runce.run.outcome"] for s in attempts]
    assert outcomes == ["retried", "failed"]
    for span in attempts:
        assert span.status.status_code is trace.StatusCode.ERROR
        [event] = span.events
        recorded = dict(event.attributes or {})
        assert recorded["exception.type"] == "RuntimeError"
        assert "api_key=***" in str(recorded["exception.message"])
        assert "hunter2" not in json.dumps(recorded) + str(span.status.description)


def test_an_enqueue_outside_any_span_begins_a_trace(
    store: memory.MemoryStore, spans: InMemorySpanExporter
) -> None:
    run = RunService(store.runs, jobs=_jobs(), bus=EventBus()).enqueue("obs.fine", {})
    [enqueue] = spans.get_finished_spans()
    assert enqueue.parent is None
    assert run.trace_context is not None
    assert f"{enqueue.context.trace_id:032x}" in run.trace_context["traceparent"]


def test_without_opentelemetry_nothing_is_stored(
    store: memory.MemoryStore, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = RunService(store.runs, jobs=_jobs(), bus=EventBus())
    monkeypatch.setattr(tracing, "_api", False)  # as if opentelemetry-api were not installed
    spans.clear()
    with trace.get_tracer("test").start_as_current_span("request"):
        run = service.enqueue("obs.fine", {})
    assert run.trace_context is None
    assert store.runs.get(run.id).trace_context is None  # type: ignore[union-attr]
    _drain(store, _jobs()).run()
    assert not [s.name for s in spans.get_finished_spans() if s.name.startswith("runce")]


def test_runs_of_different_traces_each_continue_their_own(
    store: memory.MemoryStore, spans: InMemorySpanExporter
) -> None:
    # The worker reuses the parent it extracted last for runs that carry the same context
    # (a batch enqueue): runs from two traces, in turn, must not share it.
    jobs = _jobs()
    service = RunService(store.runs, jobs=jobs, bus=EventBus())
    traces = []
    for _ in range(2):
        with trace.get_tracer("test").start_as_current_span("request") as parent:
            service.enqueue_many("obs.fine", [{}, {}])
            traces.append(parent.get_span_context().trace_id)
    with trace.get_tracer("test").start_as_current_span("request") as parent:
        service.enqueue("obs.fine", {})
        traces.append(parent.get_span_context().trace_id)
    _drain(store, jobs, concurrency=1).run()
    ran = [s for s in spans.get_finished_spans() if s.name == "runce run obs.fine"]
    enqueued = {
        s.context.span_id: s.context.trace_id
        for s in spans.get_finished_spans()
        if s.name == "runce enqueue obs.fine"
    }
    assert sorted(s.context.trace_id for s in ran) == sorted(
        [traces[0]] * 2 + [traces[1]] * 2 + [traces[2]]
    )
    for span in ran:
        assert span.parent is not None
        assert enqueued[span.parent.span_id] == span.context.trace_id


def test_a_worker_makes_no_span_without_a_tracer_provider() -> None:
    # OpenTelemetry imported, but no SDK set up: its default provider records nothing, so
    # the worker does not make a span per run at all.
    code = (
        "import opentelemetry.trace\n"
        "from runce import tracing\n"
        "assert tracing.enabled()\n"
        "assert tracing.attempt_tracer() is None\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "opentelemetry.trace.set_tracer_provider(TracerProvider())\n"
        "assert tracing.attempt_tracer() is not None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("run.succeeded id=01 kind=k attempt=1", "run.succeeded id=01 kind=k attempt=1"),
        ("login PASSWORD=hunter22 ok", "login PASSWORD=*** ok"),
        ("café password=hunter22", "café password=***"),
        ('{"Api_Key": "abc"}', '{"Api_Key": "***"}'),
        ("pa\u017fsword=hunter22", "pa\u017fsword=***"),  # long s: a case-insensitive s
    ],
)
def test_redaction_masks_keys_in_any_case_with_its_quick_test(text: str, masked: str) -> None:
    assert redact.Redactor().scrub(text) == masked


@pytest.mark.parametrize(
    ("carrier", "kept"),
    [
        ({"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}, True),
        ({"traceparent": "00-" + "0" * 32 + "-" + "b" * 16 + "-01"}, False),
        ({"traceparent": "00-xyz"}, False),
        ({"tracestate": "k=v"}, False),
        ({}, False),
    ],
)
def test_only_a_well_formed_traceparent_is_kept(carrier: dict[str, str], kept: bool) -> None:
    assert (tracing.checked(carrier) is not None) is kept


_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
_SPAN_ID = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("traceparent", "tracestate"),
    [
        (f"00-{_TRACE_ID}-{_SPAN_ID}-01", None),
        (f"00-{_TRACE_ID}-{_SPAN_ID}-00", None),
        (f"00-{_TRACE_ID}-{_SPAN_ID}-01", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        (f"00-{_TRACE_ID}-{_SPAN_ID}-01", "not a list member"),
        (f"00-{_TRACE_ID}-{_SPAN_ID}-01", ""),
        (f"01-{_TRACE_ID}-{_SPAN_ID}-03", None),
        (f"ff-{_TRACE_ID}-{_SPAN_ID}-01", None),
        (f"00-{'0' * 32}-{_SPAN_ID}-01", None),
        (f"00-{_TRACE_ID}-{'0' * 16}-01", None),
        (f"00-{_TRACE_ID.upper()}-{_SPAN_ID}-01", None),
        ("00-xyz", "k=v"),
        (None, "k=v"),
    ],
)
def test_a_stored_trace_context_is_continued_as_the_w3c_propagator_reads_it(
    traceparent: str | None, tracestate: str | None
) -> None:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    assert tracing.enabled()
    carrier = {
        name: value
        for name, value in (("traceparent", traceparent), ("tracestate", tracestate))
        if value is not None
    }
    expected = trace.get_current_span(TraceContextTextMapPropagator().extract(carrier))
    context = tracing._context_of(traceparent, tracestate)
    found = trace.get_current_span(context)
    assert found.get_span_context() == expected.get_span_context()
    if context is not None:
        assert dict(found.get_span_context().trace_state) == dict(
            expected.get_span_context().trace_state
        )


def _traced_run(flags: str, tracestate: str | None = None) -> Any:
    context = {"traceparent": f"00-{_TRACE_ID}-{_SPAN_ID}-{flags}"}
    if tracestate is not None:
        context["tracestate"] = tracestate
    return SimpleNamespace(id="r1", kind="obs.k", attempt=1, trace_context=context)


def _sdk(sampler: Any) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.mark.parametrize("flags", ["00", "02"])  # 02: the W3C flag for a random trace id
@pytest.mark.parametrize("tracestate", [None, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"])
def test_an_attempt_the_sdk_would_drop_is_made_as_the_sdk_makes_it(
    flags: str, tracestate: str | None
) -> None:
    """The SDK's parent-based sampler drops the attempt of a run enqueued in a trace that
    was not sampled: the worker makes that span itself, the one the SDK would make."""
    provider, exporter = _sdk(ParentBased(TraceIdRatioBased(0.5)))
    tracer = tracing.AttemptTracer(provider.get_tracer("runce"))
    # Known from the sampler's default delegate, an attribute of the SDK's ParentBased; an
    # SDK without it gets every attempt decided by its sampler, the same span either way.
    if hasattr(ParentBased(ALWAYS_ON), "_remote_parent_not_sampled"):
        assert tracer.drop_ids is provider.id_generator
    run = _traced_run(flags, tracestate)
    span, token = tracing.start_attempt(tracer, run)
    try:
        assert trace.get_current_span() is span
        inside = provider.get_tracer("job").start_span("inside")  # the job's own span
        header: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(header)  # what the job would send on
    finally:
        tracing.end_attempt(span, token, "succeeded", None, str)
    assert trace.get_current_span() is not span
    parent = tracing._context_of(run.trace_context["traceparent"], tracestate)
    by_sdk = provider.get_tracer("runce").start_span("runce run obs.k", context=parent)
    made, expected = span.get_span_context(), by_sdk.get_span_context()
    # One span context, however often and from whichever thread it is asked for.
    with ThreadPoolExecutor(4) as pool:
        asked = list(pool.map(lambda _: span.get_span_context(), range(8)))
    assert all(context is made for context in asked)
    assert inside.get_span_context().trace_id == made.trace_id
    assert header["traceparent"] == (
        f"00-{made.trace_id:032x}-{made.span_id:016x}-{int(made.trace_flags):02x}"
    )
    assert f"{made.span_id:016x}" in repr(span)
    assert not span.is_recording()
    assert not by_sdk.is_recording()
    assert not inside.is_recording()
    assert (made.trace_id, made.trace_flags, made.is_remote) == (
        expected.trace_id,
        expected.trace_flags,
        expected.is_remote,
    )
    assert dict(made.trace_state) == dict(expected.trace_state)
    assert made.is_valid
    assert made.span_id != int(_SPAN_ID, 16)
    assert exporter.get_finished_spans() == ()


def test_an_attempt_is_made_current_through_the_runtime_context_in_use() -> None:
    """Under the API's default runtime context the attempt's context is set on its
    variable directly; under another one (``OTEL_PYTHON_CONTEXT``), through the API."""
    from opentelemetry import context

    assert tracing._attach_detach(context) == (
        context._RUNTIME_CONTEXT._current_context.set,  # type: ignore[attr-defined]
        context._RUNTIME_CONTEXT._current_context.reset,  # type: ignore[attr-defined]
    )
    other = SimpleNamespace(_RUNTIME_CONTEXT=object(), attach=object(), detach=object())
    assert tracing._attach_detach(other) == (other.attach, other.detach)
    # The attempt's context holds its span under the API's own key.
    provider, _ = _sdk(ALWAYS_ON)
    tracer = tracing.AttemptTracer(provider.get_tracer("runce"))
    before = context.get_current()
    span, token = tracing.start_attempt(tracer, _traced_run("01"))
    try:
        assert trace.get_current_span() is span
        assert trace.get_current_span(context.get_current()) is span
    finally:
        tracing.end_attempt(span, token, "succeeded", None, str)
    assert context.get_current() is before


def test_an_attempt_whose_context_cannot_be_undone_still_ends_its_span() -> None:
    """The attempt's context undone already (its token used): the worker is told (it
    logs it) and the span still ends, so it is exported."""
    from opentelemetry import context

    provider, exporter = _sdk(ALWAYS_ON)
    tracer = tracing.AttemptTracer(provider.get_tracer("runce"))
    span, token = tracing.start_attempt(tracer, _traced_run("01"))
    context.detach(token)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        tracing.end_attempt(span, token, "succeeded", None, str)
    [ended] = exporter.get_finished_spans()
    assert dict(ended.attributes or {})["runce.run.outcome"] == "succeeded"


_KEEP = StaticSampler(Decision.RECORD_AND_SAMPLE)


@pytest.mark.parametrize(
    "sampler",
    [
        ParentBased(ALWAYS_OFF, remote_parent_not_sampled=ALWAYS_ON),
        ParentBased(
            ALWAYS_OFF, remote_parent_not_sampled=StaticSampler(Decision.RECORD_AND_SAMPLE)
        ),
        TraceIdRatioBased(1.0),
        ALWAYS_ON,
    ],
)
def test_a_sampler_that_may_keep_such_an_attempt_decides_it(sampler: Any) -> None:
    provider, exporter = _sdk(sampler)
    tracer = tracing.AttemptTracer(provider.get_tracer("runce"))
    assert tracer.drop_ids is None
    span, token = tracing.start_attempt(tracer, _traced_run("00"))
    tracing.end_attempt(span, token, "succeeded", None, str)
    [kept] = exporter.get_finished_spans()
    assert kept.context is not None
    assert kept.context.trace_id == int(_TRACE_ID, 16)
    assert dict(kept.attributes or {})["runce.run.outcome"] == "succeeded"


def test_an_sdk_that_counts_the_spans_it_drops_makes_each_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    provider, _ = _sdk(ParentBased(ALWAYS_ON))
    assert tracing.AttemptTracer(provider.get_tracer("runce")).drop_ids is None
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "false")
    if hasattr(ParentBased(ALWAYS_ON), "_remote_parent_not_sampled"):
        assert tracing.AttemptTracer(provider.get_tracer("runce")).drop_ids is not None


def test_the_worker_counts_each_landed_attempt_by_kind_and_outcome(
    store: memory.MemoryStore,
) -> None:
    jobs = _jobs()
    service = RunService(store.runs, jobs=jobs, bus=EventBus())
    service.enqueue_many("obs.fine", [{}] * 3)
    service.enqueue("obs.broken", {})
    worker = _drain(store, jobs)
    metrics = WorkerMetrics(worker)
    worker.run()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[name, tuple(sorted(labels.items()))]

    assert value("runce_runs_processed_total", kind="obs.fine", outcome="succeeded") == 3
    assert value("runce_runs_processed_total", kind="obs.broken", outcome="retried") == 1
    assert value("runce_runs_processed_total", kind="obs.broken", outcome="failed") == 1
    assert value("runce_run_duration_seconds_count", kind="obs.fine", outcome="succeeded") == 3
    assert value("runce_run_wait_seconds_count", kind="obs.broken") == 2
    assert value("runce_worker_slots", state="free") == 2
    # One set of counts per kind and outcome; the wait is per kind.
    assert (len(metrics._attempts), len(metrics._waits)) == (3, 2)


def test_a_worker_histogram_reads_as_prometheus_clients_own_would() -> None:
    # Values on, between, below and past the bounds: the same buckets, count and sum.
    values = [0.0, 0.005, 0.0051, 1, 1.5, 3600, 3600.5, 1e9, -1.0]
    registry = CollectorRegistry()
    reference = Histogram("h", "h", buckets=DURATION_BUCKETS, registry=registry)
    ours = _Histogram(DURATION_BUCKETS)
    for value in values:
        reference.observe(value)
        ours.observe(value)

    def samples(text: str) -> dict[tuple[str, str], float]:
        return {
            (s.name.rsplit("_", 1)[-1], s.labels.get("le", "")): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if not s.name.endswith("_created")
        }

    class Ours(Collector):
        def collect(self) -> Iterator[Any]:
            family = HistogramMetricFamily("h", "h", labels=[])
            ours.add_to(family, [])
            yield family

    mine = CollectorRegistry()
    mine.register(Ours())
    assert samples(generate_latest(mine).decode()) == samples(generate_latest(registry).decode())


def test_run_failed_is_an_error_with_its_exception_and_a_retry_a_warning(
    store: memory.MemoryStore,
) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("runce.worker")
    logger.addHandler(handler)
    redactor = redact.install(["api_key"])
    try:
        jobs = _jobs()
        RunService(store.runs, jobs=jobs, bus=EventBus()).enqueue("obs.broken", {})
        _drain(store, jobs).run()
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(redactor)
        redact.install(DEFAULT_REDACT)  # the process's default again, for the tests after
    [retried] = [r for r in records if r.getMessage().startswith("run.retrying")]
    [failed] = [r for r in records if r.getMessage().startswith("run.failed")]
    assert (retried.levelname, failed.levelname) == ("WARNING", "ERROR")
    assert failed.exc_info is not None
    assert isinstance(failed.exc_info[1], RuntimeError)
    line = json.loads(JsonFormatter().format(failed))
    assert set(line) == {
        "time",
        "level",
        "logger",
        "message",
        "run_id",
        "kind",
        "attempt",
        "duration_ms",
        "exception",
    }
    assert (line["level"], line["logger"], line["kind"], line["attempt"]) == (
        "ERROR",
        "runce.worker",
        "obs.broken",
        2,
    )
    assert line["time"].endswith("Z")
    assert "RuntimeError" in line["exception"]
    text = TextFormatter().format(failed)
    assert text.startswith(line["time"] + " ERROR runce.worker: run.failed id=")
    for shown in (json.dumps(line), text):
        assert "hunter2" not in shown
        assert "api_key=***" in shown


def test_a_task_log_names_its_task_in_both_formats() -> None:
    record = logging.LogRecord("runce.task", logging.INFO, __file__, 1, "hello", None, None)
    record.task_id = "2026-01-01.first"
    assert json.loads(JsonFormatter().format(record))["task_id"] == "2026-01-01.first"
    assert TextFormatter().format(record).endswith(" INFO 2026-01-01.first: hello")


def test_importing_runce_imports_neither_prometheus_nor_opentelemetry() -> None:
    script = (
        "import sys, runce, runce.cli, runce.runs.worker, runce.runs.library\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in "
        "('prometheus_client', 'opentelemetry')]\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_runs_enqueue_and_work_where_opentelemetry_is_absent() -> None:
    script = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # an import of it fails, as when not installed\n"
        "import runce\n"
        "from runce.runs import library\n"
        "@runce.job('absent.job')\n"
        "def job(params):\n"
        "    return params\n"
        "cfg = {'store': 'memory://absent'}\n"
        "run = runce.enqueue('absent.job', {'n': 1}, config=cfg)\n"
        "library.worker(cfg, drain=True).run()\n"
        "done = runce.get_run(run.id, config=cfg)\n"
        "print(done.state, done.trace_context)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["succeeded", "None"]


def test_the_metrics_keys_are_checked_and_read_from_the_environment() -> None:
    from runce.config import load_config
    from runce.errors import ConfigError

    with pytest.raises(ConfigError, match=r"worker\.metrics_port must be a TCP port"):
        load_config(values={"worker": {"metrics_port": 70000}})
    env = {"RUNCE_WORKER_METRICS_PORT": "9464", "RUNCE_API_PUBLIC_METRICS": "true"}
    config = load_config(values={}, env=env)
    assert (config.worker.metrics_port, config.api.public_metrics) == (9464, True)
    assert load_config(values={}, env={}).api.public_metrics is False
