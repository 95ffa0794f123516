"""What one OpenTelemetry span costs a process, beside what a whole no-op run costs a worker.

    .venv/bin/python bench/span_cost.py [RESULTS.jsonl]

Times, in CPU microseconds, the span a worker records per run attempt when a recording
tracer provider is installed, made by runce's own code (``runce.tracing``: the span with
the run's attributes, made current, the outcome set, ended) under OpenTelemetry's SDK with a
``BatchSpanProcessor`` into an exporter that drops every span, the set-up of
``bench/harness/jobs/runce_observed.py``; its batch thread's work is counted too (CPU of
the whole process). Then, from a bench results file (the newest in ``bench/results/`` by
default), the worker's CPU per run with observing off, and what the span alone would leave
of the throughput where the worker's CPU is what limits it (``c / (c + s)`` for ``c`` µs
a run and ``s`` µs a span): the case of SQLite, whose database works in the worker's
process. On PostgreSQL the server's work is in the loop too, so the span weighs less
there, while a processor thread that holds the interpreter can delay the worker's loop.

Also timed: the same attempt span when the SDK's ``ParentBased(TraceIdRatioBased(0.01))``
sampler drops it (the run's enqueue was not sampled: runce makes that span itself, as the
SDK would), and what a span per run leaves of the throughput at that ratio (one span in a
hundred recorded).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

from opentelemetry import trace  # noqa: F401  (imported first: runce traces once it is)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased

from runce import tracing

SPANS = 50_000
ROUNDS = 5
RATIO = 0.01
RESULTS = Path(__file__).resolve().parent / "results"


class _Dropped(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def span_cpu_us(sampler: Sampler | None = None, sampled_parent: bool = True) -> float:
    """CPU microseconds per attempt span, the best of ``ROUNDS`` rounds of ``SPANS``, made by
    runce's own ``tracing.start_attempt`` and ``end_attempt`` as a worker makes them: a child
    of the run's stored trace context (``sampled_parent``: whether its enqueue was sampled),
    made current, its outcome set when it records, ended."""
    provider = TracerProvider() if sampler is None else TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(_Dropped()))
    assert tracing.enabled()
    tracer = tracing.AttemptTracer(provider.get_tracer("runce"))
    flags = "01" if sampled_parent else "00"
    run = SimpleNamespace(
        id="0193b2c4-5d6e-7f80-9a1b-2c3d4e5f6a7b",
        kind="bench.noop",
        attempt=1,
        trace_context={"traceparent": f"00-{0x5CE0:032x}-{0x5CE1:016x}-{flags}"},
    )
    best = float("inf")
    for _ in range(ROUNDS):
        began = time.process_time()
        for _ in range(SPANS):
            span, token = tracing.start_attempt(tracer, run)
            tracing.end_attempt(span, token, "succeeded", None, str)
        provider.force_flush()
        best = min(best, (time.process_time() - began) / SPANS * 1e6)
    provider.shutdown()
    return best


def worker_cpu_us(path: Path) -> dict[str, float]:
    """The runce workers' CPU per run (observing off) by backend, from a results file."""
    found: dict[str, list[float]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        result = record.get("result") or {}
        if record.get("adapter") in ("runce_postgres", "runce_sqlite") and (
            record.get("measurement") == "process" and "cpu_us_per_run" in result
        ):
            found.setdefault(record["adapter"], []).append(float(result["cpu_us_per_run"]))
    return {name: sorted(values)[len(values) // 2] for name, values in found.items()}


def main(argv: list[str]) -> int:
    span = span_cpu_us()
    dropped = span_cpu_us(ParentBased(TraceIdRatioBased(RATIO)), sampled_parent=False)
    sampled = RATIO * span + (1 - RATIO) * dropped
    print(f"one recorded span (SDK, batch processor, dropping exporter): {span:.1f} µs of CPU")
    print(f"one span the sampler drops (ParentBased(TraceIdRatioBased({RATIO}))): {dropped:.1f} µs")
    files = [Path(argv[0])] if argv else sorted(RESULTS.glob("run-*.jsonl"))
    workers = {}
    for path in reversed(files):
        workers = worker_cpu_us(path)
        if workers:
            print(f"worker CPU per run, observing off, from {path.name}:")
            break
    for name, cpu in sorted(workers.items()):
        print(
            f"  {name}: {cpu:.1f} µs; where the worker's CPU is the limit, a span per run "
            f"leaves {cpu / (cpu + span):.0%} of the throughput, {cpu / (cpu + sampled):.0%} "
            f"when one in {1 / RATIO:.0f} is sampled"
        )
    if not workers:
        print("no process measurement of runce found: run bench/run --measurements process")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
