-- Backfills' checkpoints and the pause and cancel requests (see 0006_backfill.sql).

-- name: checkpoints
SELECT * FROM {schema}.checkpoints
WHERE task_id = %(task_id)s
ORDER BY part;

-- name: all_checkpoints
SELECT * FROM {schema}.checkpoints
ORDER BY task_id, part;

-- name: save_checkpoint
INSERT INTO {schema}.checkpoints (
    task_id, part, parts, cursor, done, batches, attempt_id, updated_at, finished, total, rate
) VALUES (
    %(task_id)s, %(part)s, %(parts)s, %(cursor)s, %(done)s, %(batches)s, %(attempt_id)s,
    %(updated_at)s, %(finished)s, %(total)s, %(rate)s
)
ON CONFLICT (task_id, part) DO UPDATE SET
    parts = excluded.parts,
    cursor = excluded.cursor,
    done = excluded.done,
    batches = excluded.batches,
    attempt_id = excluded.attempt_id,
    updated_at = excluded.updated_at,
    finished = excluded.finished,
    total = excluded.total,
    rate = excluded.rate;

-- name: controls
SELECT task_id, command, requested_at, requested_by FROM {schema}.controls
ORDER BY task_id;

-- name: set_control
INSERT INTO {schema}.controls (task_id, command, requested_at, requested_by)
VALUES (%(task_id)s, %(command)s, now(), %(requested_by)s)
ON CONFLICT (task_id) DO UPDATE SET
    command = excluded.command,
    requested_at = excluded.requested_at,
    requested_by = excluded.requested_by;

-- name: clear_control
DELETE FROM {schema}.controls WHERE task_id = %(task_id)s;

-- Parallel backfills' range claims (see 0012_backfill_claims.sql). A range is claimable when
-- not finished and unclaimed, expired by the server's clock, or (for the lock's holder,
-- takeover) claimed for another attempt; unclaimed ranges first, then by part. The row is
-- locked while it is chosen, and checked again by the update.

-- name: claim_range
UPDATE {schema}.checkpoints AS c
SET claim_token = %(token)s,
    claim_owner = %(owner)s,
    claim_until = clock_timestamp() + make_interval(secs => %(ttl)s),
    attempt_id = %(attempt_id)s
WHERE c.task_id = %(task_id)s AND c.part = (
    SELECT part FROM {schema}.checkpoints
    WHERE task_id = %(task_id)s AND NOT finished AND (
        claim_token IS NULL
        OR claim_until < clock_timestamp()
        OR (%(takeover)s AND attempt_id <> %(attempt_id)s)
    )
    ORDER BY claim_token IS NOT NULL, part
    LIMIT 1
    FOR UPDATE SKIP LOCKED
) AND NOT c.finished AND (
    c.claim_token IS NULL
    OR c.claim_until < clock_timestamp()
    OR (%(takeover)s AND c.attempt_id <> %(attempt_id)s)
)
RETURNING c.*;

-- name: renew_claim
UPDATE {schema}.checkpoints
SET claim_until = clock_timestamp() + make_interval(secs => %(ttl)s)
WHERE task_id = %(task_id)s AND part = %(part)s AND claim_token = %(token)s;

-- name: release_claim
UPDATE {schema}.checkpoints
SET claim_token = NULL, claim_owner = NULL, claim_until = NULL
WHERE task_id = %(task_id)s AND part = %(part)s AND claim_token = %(token)s;

-- name: save_claimed_checkpoint
UPDATE {schema}.checkpoints
SET parts = %(parts)s,
    cursor = %(cursor)s,
    done = %(done)s,
    batches = %(batches)s,
    attempt_id = %(attempt_id)s,
    updated_at = %(updated_at)s,
    finished = %(finished)s,
    total = %(total)s,
    rate = %(rate)s,
    claim_until = clock_timestamp() + make_interval(secs => %(ttl)s)
WHERE task_id = %(task_id)s AND part = %(part)s AND claim_token = %(token)s;
