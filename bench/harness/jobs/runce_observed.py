"""runce's no-op job with metrics and tracing on (``BENCH_RUNCE_OBSERVE=1``): the worker
also serves ``--metrics-port``, and OpenTelemetry's SDK records every span (a batch
processor into an exporter that drops them), so the bench measures what observing costs.
``BENCH_RUNCE_TRACE_RATIO=0.01`` samples instead, as the SDK's
``ParentBased(TraceIdRatioBased(0.01))`` does: the producer's enqueue spans decide, and
the worker's attempt spans follow them."""

import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from harness.jobs.runce_noop import noop  # noqa: F401  (registers bench.noop)


class _Dropped(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def install_tracing() -> None:
    """A recording tracer provider for this process (the worker, and the producer), unless
    ``BENCH_RUNCE_OBSERVE_ONLY=metrics``."""
    if os.environ.get("BENCH_RUNCE_OBSERVE_ONLY") == "metrics":
        return
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    ratio = os.environ.get("BENCH_RUNCE_TRACE_RATIO")
    if ratio:
        provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(float(ratio))))
    else:
        provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Dropped()))
    trace.set_tracer_provider(provider)


install_tracing()
