-- Flow control: a run's concurrency key (NULL: none), and the index a limited claim counts
-- the running runs of a kind per key with and reads each key's first due runs by.
ALTER TABLE runce_runs ADD COLUMN concurrency_key TEXT;
CREATE INDEX runce_runs_flow
ON runce_runs (kind, state, concurrency_key, priority DESC, run_at, id);
-- Rate limits: per (kind, key) the starts left at a time (a token bucket); '' is no key.
CREATE TABLE runce_flow_buckets (
    kind TEXT NOT NULL,
    concurrency_key TEXT NOT NULL,
    tokens REAL NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (kind, concurrency_key)
);
