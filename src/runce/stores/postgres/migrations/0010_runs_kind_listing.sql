-- Runs of a kind, newest first, for listings, keyed on the expression kind || '' so that
-- only a statement written for it (a page filtered by kind: "kind || '' = ...") can use it.
-- A claim names its kinds as "kind = ANY(...)", and with a plain index on kind the planner
-- would read every run of those kinds through it, finished history included, and sort
-- them, rather than walk runs_claim's due runs in claim order and stop: on 5,000,000
-- finished runs a claim took 132 ms where runs_claim answers in well under one (see
-- docs/scaling.md). The upgrade rebuilds the index: writes to runs wait while it does.
DROP INDEX {schema}.runs_kind;
CREATE INDEX runs_kind ON {schema}.runs ((kind || ''), created_at DESC);
