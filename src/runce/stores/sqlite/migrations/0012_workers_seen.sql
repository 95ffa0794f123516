-- Workers by state and last heartbeat: a listing reads the ones not stopped and the last
-- few stopped ones from it, and a prune finds those not heard from for a day, so neither
-- reads every worker that ever ran (each `runce worker --drain` adds one).
CREATE INDEX runce_workers_seen ON runce_workers (state, last_seen);
