-- The queued runs of each kind, by run_at: what the metrics and the dashboard count (up to
-- a cap per kind) and where they find each kind's oldest due run, without reading finished
-- history. Only statements written for it can use it: its predicate and keys are on
-- expressions (state || '', kind || '') that no other statement names. A claim
-- ("state = 'queued' ... kind = ANY(...)") therefore keeps walking runs_claim's due runs in
-- claim order and stops, even when stale statistics make this smaller index look cheaper
-- to read whole and sort (see 0010); and the counts cannot be sent to runs_state's queued
-- range, which has no kind. kind rides along (INCLUDE) so that the counts are index-only
-- scans. Only queued runs enter it: an enqueue writes one entry more, a claim or an
-- outcome none. The upgrade builds it over the queued runs: writes to runs wait meanwhile.
CREATE INDEX runs_queued ON {schema}.runs ((kind || ''), run_at) INCLUDE (kind)
WHERE (state || '') = 'queued';
