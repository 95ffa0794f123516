-- The queued runs of each kind, by run_at: what the metrics and the dashboard count (up to
-- a cap per kind) and where they find each kind's oldest due run, without reading finished
-- history. Only queued runs enter it: an enqueue writes one entry more, a claim or an
-- outcome none. The claim names runce_runs_claim (INDEXED BY) and never goes through it.
CREATE INDEX runce_runs_queued ON runce_runs (kind, state, run_at)
WHERE state = 'queued';
