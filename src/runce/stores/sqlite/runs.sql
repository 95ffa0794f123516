-- Queries of the SQLite run queue, loaded by name (see queries.py). Every write runs in one
-- BEGIN IMMEDIATE transaction that first reads SQLite's clock once (`now`) and passes it
-- as :now, so every time written by one transaction is the same instant of one clock.
-- Lease lengths arrive as a date modifier such as '+30.000 seconds'. Batches arrive as one
-- JSON array parameter, read with json_each: one statement per batch, whatever its size.

-- name: now
SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now');

-- :runs is [[id, kind, input, max_attempts, priority, run_at, project_id,
-- idempotency_key, correlation_id, trace_context, concurrency_key], ...]; rows go in in order, so of two runs of one batch
-- with the same key the first is inserted. Only the ids of inserted rows are returned: the
-- caller has the rest.
-- name: enqueue_runs
INSERT INTO runce_runs (
    id, kind, input, state, attempt, max_attempts, priority, run_at, created_at, updated_at,
    project_id, idempotency_key, correlation_id, trace_context, concurrency_key
)
SELECT json_extract(value, '$[0]'),
       json_extract(value, '$[1]'),
       json_extract(value, '$[2]'),
       'queued',
       0,
       json_extract(value, '$[3]'),
       json_extract(value, '$[4]'),
       coalesce(json_extract(value, '$[5]'), :now),
       :now,
       :now,
       json_extract(value, '$[6]'),
       json_extract(value, '$[7]'),
       json_extract(value, '$[8]'),
       json_extract(value, '$[9]'),
       json_extract(value, '$[10]')
FROM json_each(:runs)
WHERE true
ORDER BY key
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id;

-- A debounced enqueue: the key's queued run not yet started takes the new input and start.
-- name: debounce_run
UPDATE runce_runs SET input = :input, run_at = :run_at, updated_at = :now
WHERE id = (
    SELECT id FROM runce_runs
    WHERE kind = :kind AND state = 'queued' AND concurrency_key = :key AND attempt = 0
      AND idempotency_key IS NULL
    ORDER BY run_at, id LIMIT 1
)
RETURNING *;

-- name: runs_by_keys
SELECT * FROM runce_runs
WHERE idempotency_key IN (SELECT value FROM json_each(:keys));

-- The first due queued runs, all taken by one statement under the write lock: no run can
-- be handed to two claims. INDEXED BY: without statistics the planner would rather read
-- every queued run through runce_runs_state and sort them; the partial index is already
-- in claim order, so the claim reads the first rows that are due and stops.
-- name: claim_runs
UPDATE runce_runs
SET state = 'running',
    attempt = attempt + 1,
    claimed_by = :worker_id,
    claimed_at = :now,
    started_at = :now,
    lease_expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', :now, :lease),
    updated_at = :now,
    progress = NULL,  -- a new attempt starts over
    progress_message = NULL
WHERE id IN (
    SELECT id FROM runce_runs INDEXED BY runce_runs_claim
    WHERE state = 'queued'
      AND run_at <= :now
      AND (:kinds IS NULL OR kind IN (SELECT value FROM json_each(:kinds)))
    ORDER BY priority DESC, run_at, id
    LIMIT :limit
)
RETURNING *;

-- Flow control (a claim of kinds with limits, :kinds, under the write lock): the runs of each
-- (kind, key) running under a live lease (an expired lease frees its slot at once) ...
-- name: flow_running
SELECT kind, concurrency_key, count(*) FROM runce_runs INDEXED BY runce_runs_flow
WHERE kind IN (SELECT value FROM json_each(:kinds))
  AND state = 'running'
  AND lease_expires_at > :now
GROUP BY kind, concurrency_key;

-- Rate limits: the buckets of the limited kinds, and one stored after a claim.
-- name: flow_buckets
SELECT kind, concurrency_key, tokens, at FROM runce_flow_buckets
WHERE kind IN (SELECT value FROM json_each(:kinds));

-- name: flow_bucket_put
INSERT INTO runce_flow_buckets (kind, concurrency_key, tokens, at)
VALUES (:kind, :key, :tokens, :at)
ON CONFLICT (kind, concurrency_key) DO UPDATE SET tokens = excluded.tokens, at = excluded.at;

-- A run's key and the runs of its (kind, key) running under a live lease.
-- name: flow_of
SELECT r.concurrency_key, (
    SELECT count(*) FROM runce_runs AS o INDEXED BY runce_runs_flow
    WHERE o.kind = r.kind
      AND o.state = 'running'
      AND o.concurrency_key IS r.concurrency_key
      AND o.lease_expires_at > :now
),
    (SELECT tokens FROM runce_flow_buckets AS b
     WHERE b.kind = r.kind AND b.concurrency_key = coalesce(r.concurrency_key, '')),
    (SELECT at FROM runce_flow_buckets AS b
     WHERE b.kind = r.kind AND b.concurrency_key = coalesce(r.concurrency_key, ''))
FROM runce_runs AS r
WHERE r.id = :run_id;

-- ... the first :most due queued runs of each (kind, key) with queued runs, each key read
-- in claim order from its own range of the index (no sort of the whole backlog) ...
-- name: flow_candidates
SELECT r.id, r.kind, r.concurrency_key
FROM (
    SELECT DISTINCT kind, concurrency_key FROM runce_runs INDEXED BY runce_runs_flow
    WHERE kind IN (SELECT value FROM json_each(:kinds)) AND state = 'queued'
) AS g
JOIN runce_runs AS r ON r.id IN (
    SELECT id FROM runce_runs INDEXED BY runce_runs_flow
    WHERE kind = g.kind
      AND state = 'queued'
      AND concurrency_key IS g.concurrency_key
      AND run_at <= :now
    ORDER BY priority DESC, run_at, id
    LIMIT :most
)
ORDER BY r.priority DESC, r.run_at, r.id;

-- ... and the ones picked (:ids), claimed.
-- name: flow_claim
UPDATE runce_runs
SET state = 'running',
    attempt = attempt + 1,
    claimed_by = :worker_id,
    claimed_at = :now,
    started_at = :now,
    lease_expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', :now, :lease),
    updated_at = :now,
    progress = NULL,
    progress_message = NULL
WHERE id IN (SELECT value FROM json_each(:ids))
  AND state = 'queued'
RETURNING *;

-- :outcomes is [[run_id, attempt, worker_id, kind, result, output_ref, error, run_at], ...]
-- with each run id at most once. Runs are found by id from each outcome ("+r.state" keeps
-- the planner from reading every running run through runce_runs_state instead). Every
-- write is fenced: the run must still be running
-- under this attempt and worker. The attempts that did not succeed are recorded first,
-- while the row still names the attempt's worker and start.
-- name: record_outcome_attempts
WITH o (pos, run_id, attempt, worker_id, kind, error, traceback) AS (
    SELECT key,
           json_extract(value, '$[0]'),
           json_extract(value, '$[1]'),
           json_extract(value, '$[2]'),
           json_extract(value, '$[3]'),
           json_extract(value, '$[6]'),
           json_extract(value, '$[8]')
    FROM json_each(:outcomes)
)
INSERT INTO runce_run_attempts
    (run_id, attempt, worker_id, started_at, finished_at, outcome, error, traceback)
SELECT r.id, r.attempt, r.claimed_by, r.started_at, :now, o.kind, o.error, o.traceback
FROM o JOIN runce_runs AS r
    ON r.id = o.run_id
   AND r.attempt = o.attempt
   AND r.claimed_by = o.worker_id
   AND +r.state = 'running'
WHERE o.kind <> 'succeeded'
ORDER BY o.pos;

-- succeeded / failed / canceled finish the run; retry queues it again at run_at (the
-- attempt is spent); released queues it at once and gives the attempt back. Only what the
-- worker cannot know itself comes back (the Landed of queue.py; updated_at is :now).
-- name: complete_runs
WITH o (run_id, attempt, worker_id, kind, result, output_ref, error, run_at) AS (
    SELECT json_extract(value, '$[0]'),
           json_extract(value, '$[1]'),
           json_extract(value, '$[2]'),
           json_extract(value, '$[3]'),
           json_extract(value, '$[4]'),
           json_extract(value, '$[5]'),
           json_extract(value, '$[6]'),
           json_extract(value, '$[7]')
    FROM json_each(:outcomes)
)
UPDATE runce_runs AS r
SET state = CASE WHEN o.kind IN ('succeeded', 'failed', 'canceled') THEN o.kind
                 ELSE 'queued' END,
    attempt = CASE o.kind WHEN 'released' THEN r.attempt - 1 ELSE r.attempt END,
    result = CASE o.kind WHEN 'succeeded' THEN o.result ELSE r.result END,
    output_ref = CASE o.kind WHEN 'succeeded' THEN o.output_ref ELSE r.output_ref END,
    error = CASE WHEN o.kind IN ('failed', 'canceled', 'retry') THEN o.error ELSE r.error END,
    run_at = CASE o.kind WHEN 'retry' THEN coalesce(o.run_at, :now) ELSE r.run_at END,
    finished_at = CASE WHEN o.kind IN ('succeeded', 'failed', 'canceled') THEN :now
                       ELSE r.finished_at END,
    claimed_by = CASE WHEN o.kind IN ('retry', 'released') THEN NULL ELSE r.claimed_by END,
    claimed_at = CASE WHEN o.kind IN ('retry', 'released') THEN NULL ELSE r.claimed_at END,
    started_at = CASE WHEN o.kind IN ('retry', 'released') THEN NULL ELSE r.started_at END,
    lease_expires_at = NULL,
    updated_at = :now
FROM o
WHERE r.id = o.run_id
  AND r.attempt = o.attempt
  AND r.claimed_by = o.worker_id
  AND +r.state = 'running'
RETURNING id, run_at, cancel_requested, progress, progress_message;

-- :fences is [[run_id, attempt, worker_id], ...]; the rows returned are the current claims.
-- name: heartbeat_runs
WITH f (run_id, attempt, worker_id) AS (
    SELECT json_extract(value, '$[0]'),
           json_extract(value, '$[1]'),
           json_extract(value, '$[2]')
    FROM json_each(:fences)
)
UPDATE runce_runs AS r
SET lease_expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', :now, :lease)
FROM f
WHERE r.id = f.run_id
  AND r.attempt = f.attempt
  AND r.claimed_by = f.worker_id
  AND +r.state = 'running'
RETURNING id, attempt, claimed_by, cancel_requested;

-- name: progress_run
UPDATE runce_runs
SET progress = :percent, progress_message = :message, updated_at = :now
WHERE id = :run_id AND attempt = :attempt AND claimed_by = :worker_id AND state = 'running';

-- Queued: canceled at once. Running: asked to stop. Any other state: no row changes.
-- name: cancel_run
UPDATE runce_runs
SET state = CASE state WHEN 'queued' THEN 'canceled' ELSE state END,
    cancel_requested = 1,
    finished_at = CASE state WHEN 'queued' THEN :now ELSE finished_at END,
    updated_at = :now
WHERE id = :run_id AND state IN ('queued', 'running')
RETURNING *;

-- One more attempt than those spent so far.
-- name: retry_run
UPDATE runce_runs
SET state = 'queued',
    run_at = coalesce(:run_at, :now),
    max_attempts = attempt + 1,
    cancel_requested = 0,
    finished_at = NULL,
    started_at = NULL,
    updated_at = :now
WHERE id = :run_id AND state IN ('failed', 'canceled')
RETURNING *;

-- name: record_expired_attempts
INSERT INTO runce_run_attempts (run_id, attempt, worker_id, started_at, finished_at, outcome, error)
SELECT id, attempt, coalesce(claimed_by, ''), started_at, :now, 'lease-expired',
       'the lease of attempt ' || attempt || ' expired (worker ' || coalesce(claimed_by, 'None')
       || ' stopped heartbeating)'
FROM runce_runs
WHERE state = 'running' AND lease_expires_at < :now
ORDER BY lease_expires_at, id;

-- Expired leases: back to queued (the attempt is spent), or failed when none are left.
-- name: reclaim_expired
UPDATE runce_runs
SET state = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
    error = 'the lease of attempt ' || attempt || ' expired (worker '
            || coalesce(claimed_by, 'None') || ' stopped heartbeating)',
    finished_at = CASE WHEN attempt >= max_attempts THEN :now END,
    started_at = CASE WHEN attempt >= max_attempts THEN started_at END,
    claimed_by = NULL,
    claimed_at = NULL,
    lease_expires_at = NULL,
    updated_at = :now
WHERE state = 'running' AND lease_expires_at < :now
RETURNING *;

-- name: get_run
SELECT * FROM runce_runs WHERE id = :run_id;

-- {filters} is replaced by fixed conditions joined with AND (see queue.py); all values
-- are parameters.
-- name: page_runs
SELECT * FROM runce_runs
WHERE {filters}
ORDER BY created_at {direction}, id {direction}
LIMIT :limit;

-- What the store holds (RunCounts: the metrics and the dashboard's overview), by bounded
-- index reads only, never a count over the table. The kinds that have queued runs are found
-- by skipping through runce_runs_queued (one descent per kind); per kind, its queued runs
-- are counted up to :limit there and its oldest due one is the first of its due range.
-- The running runs (runce_runs_lease) and the runs finished since :since (a range of
-- runce_runs_finished) are read up to :limit in all. :limit is the cap plus one: a count
-- that reaches it was cut off.
-- name: run_counts
WITH RECURSIVE queued_kinds (kind) AS (
    SELECT (SELECT kind FROM runce_runs
            WHERE state = 'queued' ORDER BY kind LIMIT 1)
    UNION ALL
    SELECT (SELECT r.kind FROM runce_runs AS r
            WHERE r.state = 'queued' AND r.kind > q.kind ORDER BY r.kind LIMIT 1)
    FROM queued_kinds AS q
    WHERE q.kind IS NOT NULL
)
SELECT q.kind, 'queued',
       (SELECT count(*) FROM (
            SELECT 1 FROM runce_runs AS r
            WHERE r.state = 'queued' AND r.kind = q.kind
            LIMIT :limit)),
       (SELECT r.run_at FROM runce_runs AS r
        WHERE r.state = 'queued' AND r.kind = q.kind AND r.run_at <= :now
        ORDER BY r.run_at LIMIT 1)
FROM queued_kinds AS q
WHERE q.kind IS NOT NULL
UNION ALL
SELECT kind, 'running', count(*), NULL
FROM (SELECT kind FROM runce_runs WHERE state = 'running' LIMIT :limit)
GROUP BY kind
UNION ALL
SELECT kind, state, count(*), NULL
FROM (SELECT kind, state FROM runce_runs
      WHERE finished_at >= :since AND finished_at IS NOT NULL
      LIMIT :limit)
GROUP BY kind, state;

-- A page filtered by nothing the indexes lead with (or only by time): the newest of each
-- state, each read from runce_runs_state, merged; no index orders the whole table by
-- created_at alone.
-- name: page_runs_by_state
SELECT * FROM (
    SELECT * FROM (
        SELECT * FROM runce_runs WHERE state = 'queued' AND {filters}
        ORDER BY created_at {direction}, id {direction} LIMIT :limit
    )
    UNION ALL
    SELECT * FROM (
        SELECT * FROM runce_runs WHERE state = 'running' AND {filters}
        ORDER BY created_at {direction}, id {direction} LIMIT :limit
    )
    UNION ALL
    SELECT * FROM (
        SELECT * FROM runce_runs WHERE state = 'succeeded' AND {filters}
        ORDER BY created_at {direction}, id {direction} LIMIT :limit
    )
    UNION ALL
    SELECT * FROM (
        SELECT * FROM runce_runs WHERE state = 'failed' AND {filters}
        ORDER BY created_at {direction}, id {direction} LIMIT :limit
    )
    UNION ALL
    SELECT * FROM (
        SELECT * FROM runce_runs WHERE state = 'canceled' AND {filters}
        ORDER BY created_at {direction}, id {direction} LIMIT :limit
    )
)
ORDER BY created_at {direction}, id {direction}
LIMIT :limit;

-- A page of runs of several projects (a token bound to them) filtered by nothing that picks
-- a few runs by itself: per project, the ids of its newest from runce_runs_project (a
-- subquery correlated to the project, as a lateral join would be), merged.
-- name: page_runs_by_project
SELECT r.* FROM json_each(:project_ids) AS wanted, runce_runs AS r
WHERE r.id IN (
    SELECT id FROM runce_runs
    WHERE project_id = wanted.value AND {filters}
    ORDER BY created_at {direction}, id {direction} LIMIT :limit
)
ORDER BY r.created_at {direction}, r.id {direction}
LIMIT :limit;

-- Every column: a file not yet upgraded to schema 8 has no traceback, and reads it as NULL.
-- name: run_attempts
SELECT *
FROM runce_run_attempts
WHERE run_id = :run_id
ORDER BY id;

-- name: prune_attempts
DELETE FROM runce_run_attempts
WHERE run_id IN (
    SELECT id FROM runce_runs
    WHERE (state = 'succeeded' AND finished_at < :succeeded_before)
       OR (state IN ('failed', 'canceled') AND finished_at < :failed_before)
);

-- name: prune_runs
DELETE FROM runce_runs
WHERE (state = 'succeeded' AND finished_at < :succeeded_before)
   OR (state IN ('failed', 'canceled') AND finished_at < :failed_before);

-- One batch of a prune: at most :limit runs, the longest finished first (by
-- runce_runs_finished), their attempts with them, in one short write transaction.
-- name: prune_attempts_batch
DELETE FROM runce_run_attempts
WHERE run_id IN (
    SELECT id FROM runce_runs
    WHERE finished_at < :latest
      AND ((state = 'succeeded' AND finished_at < :succeeded_before)
        OR (state IN ('failed', 'canceled') AND finished_at < :failed_before))
    ORDER BY finished_at, id
    LIMIT :limit
);

-- name: prune_runs_batch
DELETE FROM runce_runs
WHERE id IN (
    SELECT id FROM runce_runs
    WHERE finished_at < :latest
      AND ((state = 'succeeded' AND finished_at < :succeeded_before)
        OR (state IN ('failed', 'canceled') AND finished_at < :failed_before))
    ORDER BY finished_at, id
    LIMIT :limit
);

-- name: worker_seen
INSERT INTO runce_workers (id, host, pid, started_at, last_seen, concurrency, kinds, state)
VALUES (:id, :host, :pid, :started_at, :last_seen, :concurrency, :kinds, :state)
ON CONFLICT (id) DO UPDATE SET
    host = excluded.host,
    pid = excluded.pid,
    started_at = excluded.started_at,
    last_seen = excluded.last_seen,
    concurrency = excluded.concurrency,
    kinds = excluded.kinds,
    state = excluded.state;

-- Every worker not stopped (live, or stale when killed without a word) and the :stopped
-- stopped ones seen last, both read from runce_workers_seen: never every worker that ever
-- ran.
-- name: workers
SELECT * FROM (
    SELECT id, host, pid, started_at, last_seen, concurrency, kinds, state
    FROM runce_workers
    WHERE state IN ('running', 'stopping')
    UNION ALL
    SELECT * FROM (
        SELECT id, host, pid, started_at, last_seen, concurrency, kinds, state
        FROM runce_workers
        WHERE state = 'stopped'
        ORDER BY last_seen DESC
        LIMIT :stopped
    )
)
ORDER BY started_at, id;

-- The workers not heard from since :seen_before, whatever their state (runce_workers_seen).
-- name: prune_workers
DELETE FROM runce_workers
WHERE state IN ('running', 'stopping', 'stopped') AND last_seen < :seen_before;

-- A run inserted by enqueue_runs in the same transaction, started at once (`.now()`): it
-- is never seen queued by anyone else.
-- name: start_run
UPDATE runce_runs
SET state = 'running',
    attempt = 1,
    claimed_by = :worker_id,
    claimed_at = :now,
    started_at = :now,
    lease_expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', :now, :lease),
    updated_at = :now
WHERE id = :run_id AND state = 'queued'
RETURNING *;
