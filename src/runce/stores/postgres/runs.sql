-- Queries of the PostgreSQL run queue, loaded by name (see queries.py). {schema} is runce's
-- schema, quoted by psycopg.sql.Identifier; %(name)s are parameters bound by the driver.
--
-- Every statement stands alone (autocommit) unless queue.py says otherwise, and reads the
-- clock once: now() is the start of the statement's transaction, so every time one
-- statement writes is the same instant of the server's clock. Batches arrive as parallel
-- arrays read with unnest: one statement per batch, whatever its size. The arrays travel
-- in binary (%(name)b): quoting a thousand strings for the text form took longer than the
-- server's insert of them.
--
-- A name starting with "part_" is a piece of other statements, put in where they say
-- {part_...}; it is never run alone.
--
-- Statements about given runs find them by primary key and test their state as
-- "state || '' = ...": the planner's statistics of a queue's states are always stale (an
-- ANALYZE while nothing ran says no run is running), and with a plain "state = 'running'"
-- it would rather read every running run through runs_lease and join them with the batch.
-- The expression has no statistics and no index, so the plan is one primary-key lookup per
-- run, whatever the statistics say.

-- The outcomes of claimed attempts, acknowledged by one statement. o: one row per outcome,
-- each run id at most once. prior: the attempts that did not succeed, as they are before
-- this statement changes them (every CTE sees the same snapshot), to be recorded. done:
-- the fenced update: the run must still be running under this attempt and worker.
-- succeeded / failed / canceled finish the run; retry queues it again at run_at (the
-- attempt is spent); released queues it at once and gives the attempt back. done returns
-- only what the worker cannot know itself (the Landed of queue.py, plus kind and state to
-- announce runs queued again): building whole runs per acknowledgement cost a fifth of a
-- busy worker's time.
-- name: part_outcomes
o AS (
    SELECT *
    FROM unnest(
        %(ids)b::text[], %(attempts)b::integer[], %(workers)b::text[], %(kinds)b::text[],
        %(results)b::text[], %(output_refs)b::text[], %(errors)b::text[],
        %(run_ats)b::timestamptz[], %(tracebacks)b::text[]
    ) WITH ORDINALITY
        AS o (run_id, attempt, worker_id, kind, result, output_ref, error, run_at, traceback,
              pos)
),
prior AS (
    SELECT r.id, r.attempt, r.claimed_by, r.started_at, o.kind, o.error, o.traceback, o.pos
    FROM o
    JOIN {schema}.runs AS r
      ON r.id = o.run_id AND r.attempt = o.attempt AND r.claimed_by = o.worker_id
     AND r.state || '' = 'running'
    WHERE o.kind <> 'succeeded'
),
done AS (
    UPDATE {schema}.runs AS r
    SET state = CASE WHEN o.kind IN ('succeeded', 'failed', 'canceled') THEN o.kind
                     ELSE 'queued' END,
        attempt = CASE o.kind WHEN 'released' THEN r.attempt - 1 ELSE r.attempt END,
        result = CASE o.kind WHEN 'succeeded' THEN o.result::jsonb ELSE r.result END,
        output_ref = CASE o.kind WHEN 'succeeded' THEN o.output_ref ELSE r.output_ref END,
        error = CASE WHEN o.kind IN ('failed', 'canceled', 'retry') THEN o.error
                     ELSE r.error END,
        run_at = CASE o.kind WHEN 'retry' THEN coalesce(o.run_at, now()) ELSE r.run_at END,
        finished_at = CASE WHEN o.kind IN ('succeeded', 'failed', 'canceled') THEN now()
                           ELSE r.finished_at END,
        claimed_by = CASE WHEN o.kind IN ('retry', 'released') THEN NULL
                          ELSE r.claimed_by END,
        claimed_at = CASE WHEN o.kind IN ('retry', 'released') THEN NULL
                          ELSE r.claimed_at END,
        started_at = CASE WHEN o.kind IN ('retry', 'released') THEN NULL
                          ELSE r.started_at END,
        lease_expires_at = NULL,
        updated_at = now()
    FROM o
    WHERE r.id = o.run_id
      AND r.attempt = o.attempt
      AND r.claimed_by = o.worker_id
      AND r.state || '' = 'running'
    RETURNING r.id, r.kind, r.state, r.run_at, r.updated_at, r.cancel_requested, r.progress,
              r.progress_message
),
recorded AS (
    INSERT INTO {schema}.run_attempts
        (run_id, attempt, worker_id, started_at, finished_at, outcome, error, traceback)
    SELECT p.id, p.attempt, p.claimed_by, p.started_at, now(), p.kind, p.error, p.traceback
    FROM prior AS p
    WHERE p.id IN (SELECT id FROM done)
    ORDER BY p.pos
)

-- The first due queued runs, locked as they are read: a run locked by another claim is
-- skipped, never waited for, and never handed to two claims (locked, they stay queued
-- until this statement updates them). The ids are collected into an array first:
-- "UPDATE ... FROM (subselect)" is planned as a scan of the whole table and a hash join,
-- while "id = ANY(ARRAY(...))" reads the claim index in claim order, stops after :limit
-- due runs, and updates them by primary key.
-- name: part_claim
claimed AS (
    UPDATE {schema}.runs
    SET state = 'running',
        attempt = attempt + 1,
        claimed_by = %(worker_id)s,
        claimed_at = now(),
        started_at = now(),
        lease_expires_at = now() + make_interval(secs => %(lease)s),
        updated_at = now(),
        progress = NULL,  -- a new attempt starts over
        progress_message = NULL
    WHERE id = ANY(ARRAY(
        SELECT id
        FROM {schema}.runs
        WHERE state = 'queued'
          AND run_at <= now()
          AND (%(claim_kinds)s::text[] IS NULL OR kind = ANY(%(claim_kinds)s::text[]))
        ORDER BY priority DESC, run_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING *
)

-- name: complete_runs
WITH {part_outcomes}
SELECT * FROM done;

-- name: claim_runs
WITH {part_claim}
SELECT * FROM claimed;

-- A busy worker's whole round trip: acknowledge, then claim, in one statement (one
-- transaction). The claim sees the runs as they were before the acknowledgements, so a
-- run handed back here is not taken again by the same call. Both parts come back as rows
-- of the runs' columns, in the table's order; an acknowledged run fills only those done
-- returns (the others are NULL). The trace context comes back as its two texts rather
-- than as JSONB, which the driver would decode in Python for every run claimed.
-- name: exchange_runs
WITH {part_outcomes},
{part_claim}
SELECT 'claimed' AS part, id, kind, input, state, attempt, max_attempts, priority, run_at,
       created_at, updated_at, project_id, idempotency_key, correlation_id, result,
       output_ref, error, claimed_by, claimed_at, lease_expires_at, started_at, finished_at,
       progress, progress_message, cancel_requested,
       trace_context ->> 'traceparent', trace_context ->> 'tracestate'
FROM claimed
UNION ALL
SELECT 'done', id, kind, NULL, state, NULL, NULL, NULL, run_at,
       NULL, updated_at, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       progress, progress_message, cancel_requested, NULL, NULL
FROM done;

-- Rows go in in order, so of two runs of one batch with the same key the first is
-- inserted; only inserted rows come back, with what the store decided (the caller has
-- the rest). The kinds inserted are announced on the schema's channel, once each (sent at
-- commit: a caller's transaction that rolls back announces nothing).
-- name: enqueue_runs
WITH inserted AS (
    INSERT INTO {schema}.runs (
        id, kind, input, state, attempt, max_attempts, priority, run_at, created_at,
        updated_at, project_id, idempotency_key, correlation_id, trace_context,
        concurrency_key
    )
    SELECT n.id, n.kind, n.input::jsonb, 'queued', 0, n.max_attempts, n.priority,
           coalesce(n.run_at, now()), now(), now(), n.project_id, n.idempotency_key,
           n.correlation_id, n.trace_context::jsonb, n.concurrency_key
    FROM unnest(
        %(ids)b::text[], %(kinds)b::text[], %(inputs)b::text[], %(max_attempts)b::integer[],
        %(priorities)b::integer[], %(run_ats)b::timestamptz[], %(project_ids)b::text[],
        %(keys)b::text[], %(correlation_ids)b::text[], %(trace_contexts)b::text[],
        %(concurrency_keys)b::text[]
    ) WITH ORDINALITY AS n (
        id, kind, input, max_attempts, priority, run_at, project_id, idempotency_key,
        correlation_id, trace_context, concurrency_key, pos
    )
    ORDER BY n.pos
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, kind, run_at, created_at
),
announced AS (
    SELECT count(pg_notify(%(channel)s, kind)) AS kinds
    FROM (SELECT DISTINCT kind FROM inserted) AS k
)
SELECT inserted.id, inserted.run_at, inserted.created_at
FROM inserted, announced;

-- One run: the same as enqueue_runs with plain parameters (no arrays to build and unpack,
-- which cost a third of a one-by-one enqueue).
-- name: enqueue_run
WITH inserted AS (
    INSERT INTO {schema}.runs (
        id, kind, input, state, attempt, max_attempts, priority, run_at, created_at,
        updated_at, project_id, idempotency_key, correlation_id, trace_context,
        concurrency_key
    )
    VALUES (
        %(id)s, %(kind)s, %(input)s::jsonb, 'queued', 0, %(max_attempts)s, %(priority)s,
        coalesce(%(run_at)s::timestamptz, now()), now(), now(), %(project_id)s,
        %(idempotency_key)s, %(correlation_id)s, %(trace_context)s::jsonb,
        %(concurrency_key)s
    )
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, kind, run_at, created_at
)
SELECT id, run_at, created_at, pg_notify(%(channel)s, kind)
FROM inserted;

-- A batch with no idempotency key goes in by COPY (enqueue_copy_runs), in a transaction
-- that starts here: now() is the transaction's start, the time of every row it writes. The
-- kinds are announced at commit, as by enqueue_runs.
-- name: enqueue_copy_begin
SELECT now(), (SELECT count(pg_notify(%(channel)s, kind)) FROM unnest(%(kinds)s::text[]) AS k (kind));

-- name: enqueue_copy_runs
COPY {schema}.runs (
    id, kind, input, state, max_attempts, priority, run_at, created_at, updated_at,
    project_id, correlation_id, trace_context, concurrency_key
) FROM STDIN;

-- A debounced enqueue takes a lock per (kind, key) until its transaction ends, in order, so
-- two enqueuers of one key never both find no queued run and both insert one; the clock.
-- name: debounce_lock
SELECT now(), (
    SELECT count(pg_advisory_xact_lock(hashtextextended(k, 7130)))
    FROM unnest(%(locks)s::text[]) AS l (k)
);

-- The key's queued run not yet started takes the new input and start.
-- name: debounce_run
UPDATE {schema}.runs SET input = %(input)s::jsonb, run_at = %(run_at)s, updated_at = now()
WHERE id = (
    SELECT id FROM {schema}.runs
    WHERE kind = %(kind)s AND state = 'queued' AND concurrency_key = %(key)s AND attempt = 0
      AND idempotency_key IS NULL
    ORDER BY run_at, id LIMIT 1
    FOR UPDATE
)
RETURNING *;

-- name: runs_by_keys
SELECT * FROM {schema}.runs
WHERE idempotency_key = ANY(%(keys)s::text[]);

-- New work may be due (a run handed back, retried or reclaimed).
-- name: announce
SELECT pg_notify(%(channel)s, %(payload)s);

-- :ids, :attempts, :workers are the fences; the rows returned are the current claims.
-- name: heartbeat_runs
UPDATE {schema}.runs AS r
SET lease_expires_at = now() + make_interval(secs => %(lease)s)
FROM unnest(%(ids)b::text[], %(attempts)b::integer[], %(workers)b::text[])
    AS f (run_id, attempt, worker_id)
WHERE r.id = f.run_id
  AND r.attempt = f.attempt
  AND r.claimed_by = f.worker_id
  AND r.state || '' = 'running'
RETURNING r.id, r.attempt, r.claimed_by, r.cancel_requested;

-- name: progress_run
UPDATE {schema}.runs
SET progress = %(percent)s, progress_message = %(message)s, updated_at = now()
WHERE id = %(run_id)s
  AND attempt = %(attempt)s
  AND claimed_by = %(worker_id)s
  AND state || '' = 'running';

-- Queued: canceled at once. Running: asked to stop. Any other state: no row changes.
-- name: cancel_run
UPDATE {schema}.runs
SET state = CASE state WHEN 'queued' THEN 'canceled' ELSE state END,
    cancel_requested = true,
    finished_at = CASE state WHEN 'queued' THEN now() ELSE finished_at END,
    updated_at = now()
WHERE id = %(run_id)s AND state || '' IN ('queued', 'running')
RETURNING *;

-- One more attempt than those spent so far; announced like an enqueue.
-- name: retry_run
WITH retried AS (
    UPDATE {schema}.runs
    SET state = 'queued',
        run_at = coalesce(%(run_at)s, now()),
        max_attempts = attempt + 1,
        cancel_requested = false,
        finished_at = NULL,
        started_at = NULL,
        updated_at = now()
    WHERE id = %(run_id)s AND state || '' IN ('failed', 'canceled')
    RETURNING *
)
SELECT retried.*, pg_notify(%(channel)s, retried.kind) AS announced
FROM retried;

-- Expired leases: back to queued (the attempt is spent), or failed when none are left,
-- each with a 'lease-expired' attempt row. A run locked by someone else right now (its
-- worker acknowledging it, say) is left for the next reclaim.
-- name: reclaim_expired
WITH expired AS (
    SELECT id, attempt, claimed_by, started_at,
           'the lease of attempt ' || attempt || ' expired (worker '
           || coalesce(claimed_by, 'None') || ' stopped heartbeating)' AS message
    FROM {schema}.runs
    WHERE state = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at, id
    FOR UPDATE SKIP LOCKED
),
changed AS (
    UPDATE {schema}.runs AS r
    SET state = CASE WHEN r.attempt >= r.max_attempts THEN 'failed' ELSE 'queued' END,
        error = e.message,
        finished_at = CASE WHEN r.attempt >= r.max_attempts THEN now() END,
        started_at = CASE WHEN r.attempt >= r.max_attempts THEN r.started_at END,
        claimed_by = NULL,
        claimed_at = NULL,
        lease_expires_at = NULL,
        updated_at = now()
    FROM expired AS e
    WHERE r.id = e.id
    RETURNING r.*
),
recorded AS (
    INSERT INTO {schema}.run_attempts
        (run_id, attempt, worker_id, started_at, finished_at, outcome, error)
    SELECT e.id, e.attempt, coalesce(e.claimed_by, ''), e.started_at, now(), 'lease-expired',
           e.message
    FROM expired AS e
    WHERE e.id IN (SELECT id FROM changed)
)
SELECT * FROM changed
ORDER BY created_at, id;

-- Runs per kind and state, and the run_at of each kind's oldest due queued run: the
-- metrics of `runce serve`, in one pass over the table (no run is loaded, no row locked).
-- The last row carries only the clock, so an empty table still answers it.
-- name: get_run
SELECT * FROM {schema}.runs WHERE id = %(run_id)s;

-- {filters} is replaced by fixed conditions joined with AND (see queue.py); all values
-- are parameters.
-- name: page_runs
SELECT * FROM {schema}.runs
WHERE {filters}
ORDER BY created_at {direction}, id {direction}
LIMIT %(limit)s;

-- A page filtered by nothing the indexes lead with (or only by time): the newest of each
-- state, each read from runs_state, merged. No index orders the whole table by created_at
-- alone, and a scan of it to sort a million runs for 50 is what this avoids.
-- name: page_runs_by_state
SELECT * FROM (
    (SELECT * FROM {schema}.runs WHERE state = 'queued' AND {filters}
     ORDER BY created_at {direction}, id {direction} LIMIT %(limit)s)
    UNION ALL
    (SELECT * FROM {schema}.runs WHERE state = 'running' AND {filters}
     ORDER BY created_at {direction}, id {direction} LIMIT %(limit)s)
    UNION ALL
    (SELECT * FROM {schema}.runs WHERE state = 'succeeded' AND {filters}
     ORDER BY created_at {direction}, id {direction} LIMIT %(limit)s)
    UNION ALL
    (SELECT * FROM {schema}.runs WHERE state = 'failed' AND {filters}
     ORDER BY created_at {direction}, id {direction} LIMIT %(limit)s)
    UNION ALL
    (SELECT * FROM {schema}.runs WHERE state = 'canceled' AND {filters}
     ORDER BY created_at {direction}, id {direction} LIMIT %(limit)s)
) AS newest
ORDER BY created_at {direction}, id {direction}
LIMIT %(limit)s;

-- A page of runs of several projects (a token bound to them) filtered by nothing that picks
-- a few runs by itself: the newest of each project, each read from runs_project, merged,
-- so that two projects cost what one does.
-- name: page_runs_by_project
SELECT runs.* FROM unnest(%(project_ids)s::text[]) AS wanted (project)
CROSS JOIN LATERAL (
    SELECT * FROM {schema}.runs
    WHERE project_id = wanted.project AND {filters}
    ORDER BY created_at {direction}, id {direction} LIMIT %(limit)s
) AS runs
ORDER BY created_at {direction}, id {direction}
LIMIT %(limit)s;

-- Every column: a schema not yet upgraded to version 8 has no traceback, read as NULL.
-- name: run_attempts
SELECT *
FROM {schema}.run_attempts
WHERE run_id = %(run_id)s
ORDER BY id;

-- Their attempts go with them (ON DELETE CASCADE).
-- name: prune_runs
WITH pruned AS (
    DELETE FROM {schema}.runs
    WHERE (state = 'succeeded' AND finished_at < %(succeeded_before)s)
       OR (state IN ('failed', 'canceled') AND finished_at < %(failed_before)s)
    RETURNING 1
)
SELECT count(*) FROM pruned;

-- One batch of a prune, its own short transaction: at most %(limit)s runs, the longest
-- finished first, found by runs_finished. Rows another transaction holds (a retry under
-- way) are skipped, and a row that changed meanwhile is checked again before it goes.
-- name: prune_runs_batch
WITH doomed AS (
    SELECT id FROM {schema}.runs
    WHERE finished_at < %(latest)s
      AND ((state = 'succeeded' AND finished_at < %(succeeded_before)s)
        OR (state IN ('failed', 'canceled') AND finished_at < %(failed_before)s))
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), pruned AS (
    DELETE FROM {schema}.runs AS r USING doomed WHERE r.id = doomed.id
    RETURNING 1
)
SELECT count(*) FROM pruned;

-- name: worker_seen
INSERT INTO {schema}.workers
    (id, host, pid, started_at, last_seen, concurrency, kinds, state)
VALUES (
    %(id)s, %(host)s, %(pid)s, %(started_at)s, %(last_seen)s, %(concurrency)s,
    %(kinds)s::text[], %(state)s
)
ON CONFLICT (id) DO UPDATE SET
    host = excluded.host,
    pid = excluded.pid,
    started_at = excluded.started_at,
    last_seen = excluded.last_seen,
    concurrency = excluded.concurrency,
    kinds = excluded.kinds,
    state = excluded.state;

-- Every worker not stopped (live, or stale when killed without a word) and the
-- %(stopped)s stopped ones seen last, both read from workers_seen: never every worker that
-- ever ran.
-- name: workers
(SELECT id, host, pid, started_at, last_seen, concurrency, kinds, state
FROM {schema}.workers
WHERE state IN ('running', 'stopping'))
UNION ALL
(SELECT id, host, pid, started_at, last_seen, concurrency, kinds, state
FROM {schema}.workers
WHERE state = 'stopped'
ORDER BY last_seen DESC
LIMIT %(stopped)s)
ORDER BY started_at, id;

-- The workers not heard from since %(seen_before)s, whatever their state (workers_seen).
-- name: prune_workers
WITH pruned AS (
    DELETE FROM {schema}.workers
    WHERE state IN ('running', 'stopping', 'stopped') AND last_seen < %(seen_before)s
    RETURNING 1
)
SELECT count(*) FROM pruned;

-- What the store holds (RunCounts: the metrics and the dashboard's overview), by bounded
-- index reads only, never a count over the table. The kinds that have queued runs are found
-- by skipping through runs_queued (one descent per kind); per kind, its queued runs are
-- counted up to {limit} there and its oldest due one is the first of its due range. The
-- conditions on queued runs are written as runs_queued's expressions (state || '',
-- kind || ''): only that index answers them. The running runs (runs_lease or runs_flow)
-- and the runs finished since {since} (a range of runs_finished) are read up to {limit} in
-- all. {limit} is the cap plus one: a count that reaches it was cut off. Values are
-- literals, not parameters: after a few executions psycopg prepares a statement and the
-- server may then plan for any cap and moment. The last row carries the clock.
-- name: run_counts
WITH RECURSIVE queued_kinds (kind) AS (
    (SELECT kind || '' FROM {schema}.runs WHERE state || '' = 'queued'
     ORDER BY kind || '' LIMIT 1)
    UNION ALL
    SELECT (SELECT r.kind || '' FROM {schema}.runs AS r
            WHERE r.state || '' = 'queued' AND r.kind || '' > q.kind
            ORDER BY r.kind || '' LIMIT 1)
    FROM queued_kinds AS q
    WHERE q.kind IS NOT NULL
)
SELECT q.kind, 'queued' AS state,
       (SELECT count(*) FROM (
            SELECT 1 FROM {schema}.runs AS r
            WHERE r.state || '' = 'queued' AND r.kind || '' = q.kind
            LIMIT {limit}) AS capped) AS runs,
       (SELECT min(r.run_at) FROM {schema}.runs AS r
        WHERE r.state || '' = 'queued' AND r.kind || '' = q.kind AND r.run_at <= now()) AS oldest_due,
       NULL::timestamptz AS now
FROM queued_kinds AS q
WHERE q.kind IS NOT NULL
UNION ALL
SELECT kind, 'running', count(*), NULL, NULL
FROM (SELECT kind FROM {schema}.runs WHERE state = 'running' LIMIT {limit}) AS running
GROUP BY kind
UNION ALL
SELECT kind, state, count(*), NULL, NULL
FROM (SELECT kind, state FROM {schema}.runs
      WHERE finished_at >= {since} AND finished_at IS NOT NULL
      LIMIT {limit}) AS finished
GROUP BY kind, state
UNION ALL
SELECT NULL, NULL, 0, NULL, now();

-- name: clock
SELECT now();

-- Once per connection of the worker's hot path, which runs only the statements above:
-- * plan every execution for its own parameters: psycopg prepares a statement after a few
--   executions, and the server then switches to a generic plan that cannot see a batch's
--   size or a claim's kinds (it halved throughput);
-- * go by index, never by a scan of the table or a bitmap: each of these statements has an
--   index made for it (runs_claim, the primary key), but a queue's statistics are always
--   stale (a fresh table has none until autovacuum's first ANALYZE) and with them the
--   planner would rather read every queued run through a bitmap and sort them, or scan
--   the table to acknowledge a batch. (A bitmap scan also never marks the index entries
--   of claimed runs dead, so each claim would wade through all of them again.);
-- * times in UTC, as the runs carry them.
-- Flow control, in one transaction: claimers of a limited kind take a lock per kind (named
-- "schema.kind", in the order of %(keys)s, which the caller sorts, so two never wait on each
-- other) until they commit, so no two count at once; the two-number form keeps them apart
-- from the store's lock (one number). The statements after this one in the transaction
-- read a snapshot taken once the locks are held: every claim made before is seen.
-- name: flow_locks
SELECT count(pg_advisory_xact_lock(1381322307, hashtext(key)))
FROM (
    SELECT key FROM unnest(%(keys)s::text[]) WITH ORDINALITY AS k (key, place)
    ORDER BY place
) AS sorted;

-- The runs of each (kind, key) running under a live lease: an expired lease frees its slot.
-- name: flow_running
SELECT kind, concurrency_key, count(*) FROM {schema}.runs
WHERE kind = ANY(%(kinds)s::text[])
  AND state = 'running'
  AND lease_expires_at > now()
GROUP BY kind, concurrency_key;

-- Rate limits: the clock once the kinds' locks are held (now() is the transaction's
-- start, before their wait), the buckets of the limited kinds, and one stored after a claim.
-- name: flow_now
SELECT clock_timestamp();

-- name: flow_buckets
SELECT kind, concurrency_key, tokens, at FROM {schema}.flow_buckets
WHERE kind = ANY(%(kinds)s::text[]);

-- name: flow_bucket_put
INSERT INTO {schema}.flow_buckets (kind, concurrency_key, tokens, at)
VALUES (%(kind)s, %(key)s, %(tokens)s, %(at)s)
ON CONFLICT (kind, concurrency_key) DO UPDATE SET tokens = excluded.tokens, at = excluded.at;

-- A run's key and the runs of its (kind, key) running under a live lease.
-- name: flow_of
SELECT r.concurrency_key, (
    SELECT count(*) FROM {schema}.runs AS o
    WHERE o.kind = r.kind
      AND o.state = 'running'
      AND o.concurrency_key IS NOT DISTINCT FROM r.concurrency_key
      AND o.lease_expires_at > now()
), b.tokens, b.at
FROM {schema}.runs AS r
LEFT JOIN {schema}.flow_buckets AS b
    ON b.kind = r.kind AND b.concurrency_key = coalesce(r.concurrency_key, '')
WHERE r.id = %(run_id)s;

-- The first %(most)s due queued runs of each (kind, key), in claim order. A kind with a
-- queued run that has a key (runs_flow_queued answers at once) is read whole and numbered
-- per key: every key's first runs, however far back. A kind without one is one group, whose
-- first %(most)s due runs runs_claim gives in claim order: no read of the whole backlog (a
-- limit per kind on 20,000 queued runs took 50 ms to number them all, now well under 1).
-- name: flow_candidates
WITH keyed AS (
    SELECT l.kind FROM unnest(%(kinds)s::text[]) AS l (kind)
    WHERE EXISTS (
        SELECT FROM {schema}.runs
        WHERE kind = l.kind AND state = 'queued' AND concurrency_key IS NOT NULL
    )
),
due AS (
    SELECT id, kind, concurrency_key, priority, run_at FROM (
        SELECT id, kind, concurrency_key, priority, run_at,
               row_number() OVER (
                   PARTITION BY kind, concurrency_key ORDER BY priority DESC, run_at, id
               ) AS place
        FROM {schema}.runs
        WHERE kind = ANY(ARRAY(SELECT kind FROM keyed))
          AND EXISTS (SELECT FROM keyed)  -- none: not even a look
          AND state = 'queued'
          AND run_at <= now()
    ) AS placed
    WHERE place <= %(most)s
    UNION ALL
    SELECT head.* FROM unnest(%(kinds)s::text[]) AS l (kind),
    LATERAL (
        SELECT id, kind, concurrency_key, priority, run_at FROM {schema}.runs
        WHERE kind = l.kind AND state = 'queued' AND run_at <= now()
        ORDER BY priority DESC, run_at, id
        LIMIT %(most)s
    ) AS head
    WHERE l.kind NOT IN (SELECT kind FROM keyed)
)
SELECT id, kind, concurrency_key FROM due
ORDER BY priority DESC, run_at, id;

-- A claim of kinds with flow-control limits, after flow_locks in the same transaction,
-- when none of the limits can bind: a limited kind whose runs running under a live lease
-- (every key together) plus every run this claim may take exceed its concurrency is
-- "bound", and then nothing is claimed (the caller claims the careful way: flow_running,
-- flow_candidates, flow_claim). Otherwise it is part_claim's claim, stamped with the clock
-- once the locks are held (as flow_claim is). One row more, whatever was claimed, says
-- how many kinds were bound (its run columns are NULL).
-- name: flow_claim_unbound
WITH counted AS (
    SELECT kind, count(*) AS running
    FROM {schema}.runs
    WHERE kind = ANY(%(limited)s::text[])
      AND state = 'running'
      AND lease_expires_at > now()
    GROUP BY kind
),
bound AS (
    SELECT l.kind
    FROM unnest(%(limited)s::text[], %(caps)s::bigint[]) AS l (kind, cap)
    LEFT JOIN counted AS c ON c.kind = l.kind
    WHERE coalesce(c.running, 0) + %(limit)s > l.cap
),
clock AS (
    SELECT clock_timestamp() AS at
),
claimed AS (
    UPDATE {schema}.runs
    SET state = 'running',
        attempt = attempt + 1,
        claimed_by = %(worker_id)s,
        claimed_at = (SELECT at FROM clock),
        started_at = (SELECT at FROM clock),
        lease_expires_at = (SELECT at FROM clock) + make_interval(secs => %(lease)s),
        updated_at = (SELECT at FROM clock),
        progress = NULL,
        progress_message = NULL
    WHERE id = ANY(ARRAY(
        SELECT id
        FROM {schema}.runs
        WHERE state = 'queued'
          AND run_at <= now()
          AND kind = ANY(%(claim_kinds)s::text[])
          AND NOT EXISTS (SELECT FROM bound)
        ORDER BY priority DESC, run_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING *
)
SELECT claimed.*, NULL::bigint AS bound FROM claimed
UNION ALL
SELECT (NULL::{schema}.runs).*, count(*) FROM bound;

-- Stamped with the clock once the locks are held (as the rate buckets are), not with the
-- transaction's start: a start is recorded when it was allowed.
-- name: flow_claim
UPDATE {schema}.runs
SET state = 'running',
    attempt = attempt + 1,
    claimed_by = %(worker_id)s,
    claimed_at = clock_timestamp(),
    started_at = clock_timestamp(),
    lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s),
    updated_at = clock_timestamp(),
    progress = NULL,
    progress_message = NULL
WHERE id = ANY(%(ids)s::text[])
  AND state = 'queued'
RETURNING *;

-- The worker's connection. No JIT: on a table of millions of runs the claim's estimated
-- cost passes jit_above_cost, and compiling it took 30 of a round's 37 ms.
-- name: worker_session
SET plan_cache_mode = force_custom_plan;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SET jit = off;
SET TIME ZONE 'UTC';

-- A run inserted by enqueue_runs in the same transaction, started at once (`.now()`): it
-- is never seen queued by anyone else.
-- name: start_run
UPDATE {schema}.runs
SET state = 'running',
    attempt = 1,
    claimed_by = %(worker_id)s,
    claimed_at = now(),
    started_at = now(),
    lease_expires_at = now() + make_interval(secs => %(lease)s),
    updated_at = now()
WHERE id = %(run_id)s AND state = 'queued'
RETURNING *;
