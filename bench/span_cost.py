"""What one OpenTelemetry span costs a process, beside what a whole no-op run costs a worker.

    .venv/bin/python bench/span_cost.py [RESULTS.jsonl]

Times, in CPU microseconds, the span a worker records per run attempt when a recording
tracer provider is installed, made the way runce makes it (``start_span`` with the run's
attributes, the outcome set, ``end``) under OpenTelemetry's SDK with a
``BatchSpanProcessor`` into an exporter that drops every span, the set-up of
``bench/harness/jobs/runce_observed.py``; its batch thread's work is counted too (CPU of
the whole process). Then, from a bench results file (the newest in ``bench/results/`` by
default), the worker's CPU per run with observing off, and what the span alone would leave
of the throughput where the worker's CPU is what limits it (``c / (c + s)`` for ``c`` µs
a run and ``s`` µs a span): the case of SQLite, whose database works in the worker's
process. On PostgreSQL the server's work is in the loop too, so the span weighs less
there, while a processor thread that holds the interpreter can delay the worker's loop.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

SPANS = 50_000
ROUNDS = 5
RESULTS = Path(__file__).resolve().parent / "results"


class _Dropped(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def span_cpu_us() -> float:
    """CPU microseconds per span, the best of ``ROUNDS`` rounds of ``SPANS``."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Dropped()))
    tracer = provider.get_tracer("runce")
    attributes = {
        "runce.run.id": "0193b2c4-5d6e-7f80-9a1b-2c3d4e5f6a7b",
        "runce.run.kind": "bench.noop",
        "runce.run.attempt": 1,
    }
    best = float("inf")
    for _ in range(ROUNDS):
        began = time.process_time()
        for _ in range(SPANS):
            span = tracer.start_span(
                "runce run bench.noop", kind=trace.SpanKind.CONSUMER, attributes=attributes
            )
            span.set_attribute("runce.run.outcome", "succeeded")
            span.end()
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
    print(f"one recorded span (SDK, batch processor, dropping exporter): {span:.1f} µs of CPU")
    files = [Path(argv[0])] if argv else sorted(RESULTS.glob("run-*.jsonl"))
    workers = {}
    for path in reversed(files):
        workers = worker_cpu_us(path)
        if workers:
            print(f"worker CPU per run, observing off, from {path.name}:")
            break
    for name, cpu in sorted(workers.items()):
        bound = cpu / (cpu + span)
        print(
            f"  {name}: {cpu:.1f} µs; a span per run leaves {bound:.0%} of the throughput "
            "where the worker's CPU is the limit"
        )
    if not workers:
        print("no process measurement of runce found: run bench/run --measurements process")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
