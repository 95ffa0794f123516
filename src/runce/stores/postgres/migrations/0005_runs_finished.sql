-- Runs by the time they finished: the dashboard's throughput over the last hour reads the
-- newest of them (a bounded range of this index), and pruning finds the old ones.
CREATE INDEX runs_finished ON {schema}.runs (finished_at)
WHERE finished_at IS NOT NULL;
