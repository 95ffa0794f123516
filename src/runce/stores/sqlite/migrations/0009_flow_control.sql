-- Flow control: a run's concurrency key (NULL: none), and the index a limited claim counts
-- the running runs of a kind per key with and reads its due runs by.
ALTER TABLE runce_runs ADD COLUMN concurrency_key TEXT;
CREATE INDEX runce_runs_flow ON runce_runs (kind, state, concurrency_key);
