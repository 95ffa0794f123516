-- The queued runs of each kind, by run_at: what the metrics and the dashboard count (up to
-- a cap per kind) and where they find each kind's oldest due run, without reading finished
-- history. Keyed on kind || '' for the reason runs_kind is (0010): a claim names its kinds
-- as "kind = ANY(...)" and must keep walking runs_claim; only statements written for this
-- index use it. kind rides along (INCLUDE) so those reads are index-only scans. Only
-- queued runs enter it: an enqueue writes one entry more, a claim or an outcome none. The
-- upgrade builds it over the queued runs: writes to runs wait while it does.
CREATE INDEX runs_queued ON {schema}.runs ((kind || ''), run_at) INCLUDE (kind)
WHERE state = 'queued';
