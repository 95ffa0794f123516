-- Flow control: a run's concurrency key (NULL: none; a nullable column without a default
-- rewrites nothing). Two partial indexes, so that neither a claim of kinds (which walks
-- runs_claim's due runs in claim order) nor finished history ever goes through them: the
-- running runs of a kind per key, which a limited claim counts; and the queued runs that
-- have a key, which a debounced enqueue looks up.
ALTER TABLE {schema}.runs ADD COLUMN concurrency_key text;
CREATE INDEX runs_flow ON {schema}.runs (kind, concurrency_key)
WHERE state = 'running';
CREATE INDEX runs_flow_queued ON {schema}.runs (kind, concurrency_key, run_at, id)
WHERE state = 'queued' AND concurrency_key IS NOT NULL;
-- Rate limits: per (kind, key) the starts left at a time (a token bucket); '' is no key.
CREATE TABLE {schema}.flow_buckets (
    kind text NOT NULL,
    concurrency_key text NOT NULL,
    tokens double precision NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (kind, concurrency_key)
);
