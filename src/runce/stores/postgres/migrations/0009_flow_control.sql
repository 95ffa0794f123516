-- Flow control: a run's concurrency key (NULL: none; a nullable column without a default
-- rewrites nothing), and the index a limited claim counts the running runs of a kind per
-- key with and reads its due runs by.
ALTER TABLE {schema}.runs ADD COLUMN concurrency_key text;
CREATE INDEX runs_flow ON {schema}.runs (kind, state, concurrency_key);
-- Rate limits: per (kind, key) the starts left at a time (a token bucket); '' is no key.
CREATE TABLE {schema}.flow_buckets (
    kind text NOT NULL,
    concurrency_key text NOT NULL,
    tokens double precision NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (kind, concurrency_key)
);
