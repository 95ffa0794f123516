-- The traceback of an attempt whose job raised (redacted and capped by the worker); NULL
-- for an attempt that ended without one (a lease that expired, a cancel, a hand-back).
ALTER TABLE runce_run_attempts ADD COLUMN traceback TEXT;
