-- The W3C trace context (a JSON object of traceparent and tracestate) of the code that
-- enqueued a run, when OpenTelemetry was on there; NULL otherwise.
ALTER TABLE runce_runs ADD COLUMN trace_context TEXT;
