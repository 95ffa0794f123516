"""OpenTelemetry spans for enqueues, run attempts and once tasks, and the W3C trace context
that carries a trace from the code that enqueues a run to the worker that runs it
(docs/observability.md).

Only ``opentelemetry-api`` is used (the extra ``nurv-runce[otel]``); the SDK, its exporters
and sampling stay the application's choice. runce traces in a process where the application
imported OpenTelemetry; elsewhere, and wherever it is not installed, every helper is a no-op:
no span, no trace context stored with a run (except one a caller hands over explicitly, as
the HTTP API does with a request's ``traceparent`` header).
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

from runce._version import __version__
from runce.errortext import clean, message_of

# Span attributes: a public contract, listed in docs/observability.md.
RUN_ID = "runce.run.id"
RUN_KIND = "runce.run.kind"
RUN_ATTEMPT = "runce.run.attempt"
RUN_OUTCOME = "runce.run.outcome"
RUN_COUNT = "runce.run.count"
TASK_ID = "runce.task.id"
TASK_OUTCOME = "runce.task.outcome"

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
_TRACESTATE = re.compile(r"^[\x20-\x7e]{0,512}$")

_api: Any = None  # None: not looked for yet; False: not installed; else the loaded pieces
_SAMPLED = 0x01  # the W3C trace flag


class _Api:
    """The parts of opentelemetry-api runce uses, imported once."""

    def __init__(self) -> None:
        from opentelemetry import context, propagate, trace

        self.context = context
        self.propagate = propagate
        self.trace = trace
        self.tracer = trace.get_tracer("runce", __version__)
        # The W3C flag for a random trace id, which an SDK of this API's version carries
        # from a parent to its child (0 where the API does not know it, as older SDKs).
        self.random_flag = int(getattr(trace.TraceFlags, "RANDOM_TRACE_ID", 0))
        self.dropped_attempt = _dropped_attempt_class(trace, self.random_flag)
        # What an attempt's context holds its span under (the API's own key, as
        # set_span_in_context writes it), and how a context is made current and undone.
        self.Context = context.Context
        self.span_key = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, context.Context())))
        self.attach, self.detach = _attach_detach(context)


def _attach_detach(context: Any) -> tuple[Callable[[Any], Any], Callable[[Any], None]]:
    """How an attempt's context is made current and undone: the API's ``attach`` and
    ``detach``, or, under the API's default runtime context (a ``ContextVar``, unless
    ``OTEL_PYTHON_CONTEXT`` names another), that variable's own ``set`` and ``reset``,
    which those two call through two layers each."""
    runtime = getattr(context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(runtime).__name__ == "ContextVarsRuntimeContext" and isinstance(variable, ContextVar):
        return variable.set, variable.reset
    return context.attach, context.detach


def enabled() -> bool:
    """Whether this process traces: OpenTelemetry is installed and the application imported
    it (to set up an SDK, or under ``opentelemetry-instrument``). A process that never
    imported it can record no span, so runce does not pay for importing it there (its
    propagators load through entry points, tens of milliseconds) and asks again next time."""
    global _api
    if _api is None:
        if "opentelemetry.trace" not in sys.modules:
            return False
        try:
            _api = _Api()
        except ImportError:
            _api = False
    return _api is not False


def checked(carrier: Mapping[str, str] | None) -> dict[str, str] | None:
    """A W3C trace context worth storing (``traceparent`` and maybe ``tracestate``), or None
    for anything else: a malformed header must not break an enqueue."""
    if not carrier:
        return None
    parent = str(carrier.get("traceparent", "")).strip().lower()
    if not _TRACEPARENT.match(parent):
        return None
    found = {"traceparent": parent}
    state = str(carrier.get("tracestate", "")).strip()
    if state and _TRACESTATE.match(state):
        found["tracestate"] = state
    return found


def current_context() -> dict[str, str] | None:
    """The active span's trace context, ready to store or send; None without a valid span."""
    if not enabled():
        return None
    carrier: dict[str, str] = {}
    _api.propagate.inject(carrier)
    return checked(carrier)


@contextmanager
def enqueue_span(
    kind: str, count: int, parent: Mapping[str, str] | None = None
) -> Iterator[dict[str, str] | None]:
    """A ``runce enqueue`` span (a child of ``parent``, a caller's trace context, else of the
    active span) around an enqueue; yields the trace context to store with its runs."""
    if not enabled():
        yield checked(parent)
        return
    context = _api.propagate.extract(parent) if checked(parent) else None
    attributes = {RUN_KIND: kind, RUN_COUNT: count}
    with _api.tracer.start_as_current_span(
        f"runce enqueue {kind}",
        context=context,
        kind=_api.trace.SpanKind.PRODUCER,
        attributes=attributes,
    ):
        yield current_context() or checked(parent)


def name_runs(run_ids: list[str]) -> None:
    """Put the id of the run just enqueued on the enqueue span (when it made one run)."""
    if enabled() and len(run_ids) == 1:
        _api.trace.get_current_span().set_attribute(RUN_ID, run_ids[0])


class AttemptTracer:
    """A worker's tracer for its attempt spans, and whether its sampler is known to drop
    the attempt of a run enqueued in a trace that was not sampled."""

    __slots__ = ("drop_ids", "tracer")

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer
        self.drop_ids = _known_drop_ids(tracer)


def attempt_tracer() -> AttemptTracer | None:
    """The tracer for a worker's attempt spans, or None when no span would be recorded:
    OpenTelemetry is absent or not imported, or no SDK's tracer provider is set (the API's
    default provider makes spans that record nothing). Asked once, when a worker starts,
    so that a worker nobody traces pays nothing per run."""
    if not enabled():
        return None
    trace = _api.trace
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return AttemptTracer(provider.get_tracer("runce", __version__))


def _known_drop_ids(tracer: Any) -> Any:
    """The SDK's span id generator when the tracer's sampler is the SDK's ``ParentBased``
    with its default for a remote parent that was not sampled (``ALWAYS_OFF``), and the
    SDK does not count the spans it drops (``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``);
    else None. The sampler's answer for such an attempt is then known: drop it, keeping the
    parent's trace id and trace state. The worker makes that non-recording span itself, as
    the SDK would, and spares the SDK's sampling machinery (``bench/span_cost.py`` times
    both); a sampler of any other kind or setting decides every attempt."""
    sampling = sys.modules.get("opentelemetry.sdk.trace.sampling")
    sampler = getattr(tracer, "sampler", None)
    if (
        sampling is None
        or type(tracer).__module__ != "opentelemetry.sdk.trace"
        or type(sampler) is not getattr(sampling, "ParentBased", None)
        or getattr(sampler, "_remote_parent_not_sampled", None) is not sampling.ALWAYS_OFF
    ):
        return None
    counted = os.environ.get("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "")
    return None if counted.strip().lower() == "true" else getattr(tracer, "id_generator", None)


class _Parent(NamedTuple):
    """A stored W3C trace context, read: what an attempt's span continues."""

    trace_id: int
    span_id: int
    flags: int
    state: Any  # the API's TraceState, or None


# The trace context last read, and what it gave: the runs of one batch enqueue share it.
_last_parent: tuple[tuple[str | None, str | None], _Parent | None] = ((None, None), None)


def _parent_of(trace_context: Mapping[str, str] | None) -> _Parent | None:
    global _last_parent
    if not trace_context:
        return None
    key = (trace_context.get("traceparent"), trace_context.get("tracestate"))
    last_key, last = _last_parent
    if key == last_key:
        return last
    parent = _read(*key)
    _last_parent = (key, parent)
    return parent


def _read(traceparent: str | None, tracestate: str | None) -> _Parent | None:
    """What the API's W3C propagator would read from a stored trace context (the same
    checks), without the propagators and getters around it. None for a value that is not
    one (written around runce): the attempt's span begins a trace."""
    if traceparent is None or not _TRACEPARENT.match(traceparent) or traceparent[:2] == "ff":
        return None
    state = None
    if tracestate is not None and _TRACESTATE.match(tracestate):
        state = _api.trace.TraceState.from_header([tracestate])
    return _Parent(
        int(traceparent[3:35], 16), int(traceparent[36:52], 16), int(traceparent[53:55], 16), state
    )


def _context_of(traceparent: str | None, tracestate: str | None) -> Any:
    """The context a stored W3C trace context continues (as the API's W3C propagator
    would extract it), or None."""
    parent = _read(traceparent, tracestate)
    return None if parent is None else _context_from(parent)


# The context last made for a parent read: the runs of one sampled batch share it.
_last_context: tuple[_Parent | None, Any] = (None, None)


def _context_from(parent: _Parent) -> Any:
    global _last_context
    last, made = _last_context
    if last is parent:
        return made
    trace = _api.trace
    span_context = trace.SpanContext(
        trace_id=parent.trace_id,
        span_id=parent.span_id,
        is_remote=True,
        trace_flags=trace.TraceFlags(parent.flags),
        trace_state=parent.state,
    )
    made = trace.set_span_in_context(trace.NonRecordingSpan(span_context), _api.context.Context())
    _last_context = (parent, made)
    return made


def _dropped_attempt_class(trace: Any, random_flag: int) -> type:
    """The span of an attempt whose sampler is known to drop it: the non-recording span the
    SDK would make (the parent's trace id, trace state and random-trace-id flag, a span id
    of the SDK's generator), its span context made when first asked for. Most jobs
    never ask (a span of their own or a propagated header does), so most attempts pay for
    neither the id nor the context: 1.2 µs a dropped span against 2.1 made at once
    (``bench/span_cost.py``)."""

    class DroppedAttempt(trace.NonRecordingSpan):  # type: ignore[misc]
        def __init__(self, parent: _Parent, ids: Any) -> None:  # no context yet
            self._parent = parent
            self._ids = ids

        def get_span_context(self) -> Any:
            made = self.__dict__.get("_context")
            if made is None:
                parent = self._parent
                context = trace.SpanContext(
                    trace_id=parent.trace_id,
                    span_id=self._ids.generate_span_id(),
                    is_remote=False,
                    trace_flags=trace.TraceFlags(parent.flags & random_flag),
                    trace_state=parent.state,
                )
                # The first context made is the span's, whichever thread asks first.
                made = self.__dict__.setdefault("_context", context)
            return made

        def __repr__(self) -> str:
            return f"NonRecordingSpan({self.get_span_context()!r})"

    return DroppedAttempt


def start_attempt(tracer: AttemptTracer, run: Any) -> tuple[Any, object]:
    """Start a ``runce run`` span for one attempt at ``run``, continuing the trace it was
    enqueued in, and make it current (the job's own spans are its children). Returns the
    span and the token :func:`end_attempt` needs. The attempt's context holds its span
    alone: the worker's handler threads have no context of their own to carry over."""
    trace = _api.trace
    parent = _parent_of(run.trace_context)
    if parent is not None and tracer.drop_ids is not None and not parent.flags & _SAMPLED:
        span = _api.dropped_attempt(parent, tracer.drop_ids)  # as the SDK's sampler would
    else:
        span = tracer.tracer.start_span(
            f"runce run {run.kind}",
            context=None if parent is None else _context_from(parent),
            kind=trace.SpanKind.CONSUMER,
            attributes={RUN_ID: run.id, RUN_KIND: run.kind, RUN_ATTEMPT: run.attempt},
            record_exception=False,
            set_status_on_exception=False,
        )
    return span, _api.attach(_api.Context({_api.span_key: span}))


def end_attempt(
    span: Any,
    token: object,
    outcome: str | None,
    error: BaseException | None,
    scrub: Callable[[str], str],
) -> None:
    """End an attempt's span: its outcome (None: the run was not started after all) and the
    error recorded, when the span records anything."""
    try:
        if outcome is not None and span.is_recording():
            attempt_ended(span, outcome, error, scrub)
    finally:
        try:
            _api.detach(token)
        finally:  # ended even where undoing the context fails (its token used already)
            span.end()


def attempt_ended(
    span: Any, outcome: str, error: BaseException | None, scrub: Callable[[str], str]
) -> None:
    """Say how an attempt ended on its span: the outcome, and the error recorded, its text
    through ``scrub`` (the worker's redaction: an exported span is a log too)."""
    span.set_attribute(RUN_OUTCOME, outcome)
    _record_error(span, error, scrub)


@contextmanager
def task_span(task_id: str) -> Iterator[Any]:
    """A ``runce task`` span around one once task's run; yields the span or None."""
    if not enabled():
        yield None
        return
    with _api.tracer.start_as_current_span(
        f"runce task {task_id}",
        attributes={TASK_ID: task_id},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def task_ended(span: Any, outcome: str, error: str | None) -> None:
    """Say how a once task ended on its span (when there is one)."""
    if span is None:
        return
    span.set_attribute(TASK_OUTCOME, outcome)
    if error is not None:
        span.set_status(_api.trace.Status(_api.trace.StatusCode.ERROR, error))


def _record_error(span: Any, error: BaseException | None, scrub: Callable[[str], str]) -> None:
    if error is None:
        return
    # The exception event written here, not by span.record_exception(), which calls
    # str(error): the job's exception may have a __str__ that raises or text no exporter takes.
    name = clean(type(error).__name__)
    message = scrub(clean(message_of(error)))
    stack = scrub(clean("".join(traceback.format_exception(error))))
    span.add_event(
        "exception",
        {
            "exception.type": name,
            "exception.message": message,
            "exception.stacktrace": stack,
        },
    )
    span.set_status(_api.trace.Status(_api.trace.StatusCode.ERROR, f"{name}: {message}"))
