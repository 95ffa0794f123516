-- The W3C trace context (an object of traceparent and tracestate) of the code that enqueued
-- a run, when OpenTelemetry was on there; NULL otherwise. Adding a nullable column without
-- a default rewrites nothing, whatever the table's size.
ALTER TABLE {schema}.runs ADD COLUMN trace_context jsonb;
