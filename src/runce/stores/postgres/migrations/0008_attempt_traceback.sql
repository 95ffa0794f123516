-- The traceback of an attempt whose job raised (redacted and capped by the worker); NULL
-- for an attempt that ended without one (a lease that expired, a cancel, a hand-back).
-- Adding a nullable column without a default rewrites nothing, whatever the table's size.
ALTER TABLE {schema}.run_attempts ADD COLUMN traceback text;
