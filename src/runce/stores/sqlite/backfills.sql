-- Backfills' checkpoints and the pause and cancel requests (see 0006_backfill.sql).

-- name: checkpoints
SELECT * FROM runce_checkpoints
WHERE task_id = :task_id
ORDER BY part;

-- name: all_checkpoints
SELECT * FROM runce_checkpoints
ORDER BY task_id, part;

-- name: save_checkpoint
INSERT INTO runce_checkpoints (
    task_id, part, parts, cursor, done, batches, attempt_id, updated_at, finished, total, rate
) VALUES (
    :task_id, :part, :parts, :cursor, :done, :batches, :attempt_id, :updated_at, :finished,
    :total, :rate
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
SELECT task_id, command, requested_at, requested_by FROM runce_controls
ORDER BY task_id;

-- name: set_control
INSERT INTO runce_controls (task_id, command, requested_at, requested_by)
VALUES (:task_id, :command, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), :requested_by)
ON CONFLICT (task_id) DO UPDATE SET
    command = excluded.command,
    requested_at = excluded.requested_at,
    requested_by = excluded.requested_by;

-- name: clear_control
DELETE FROM runce_controls WHERE task_id = :task_id;

-- Parallel backfills' range claims (see 0011_backfill_claims.sql). A range is claimable when
-- not finished and unclaimed, expired by SQLite's clock, or (for the lock's holder, :takeover)
-- claimed for another attempt; unclaimed ranges first, then by part.

-- name: claim_range
UPDATE runce_checkpoints
SET claim_token = :token,
    claim_owner = :owner,
    claim_until = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', :ttl),
    attempt_id = :attempt_id
WHERE task_id = :task_id AND part = (
    SELECT part FROM runce_checkpoints
    WHERE task_id = :task_id AND finished = 0 AND (
        claim_token IS NULL
        OR claim_until < strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
        OR (:takeover AND attempt_id <> :attempt_id)
    )
    ORDER BY claim_token IS NOT NULL, part
    LIMIT 1
)
RETURNING *;

-- name: renew_claim
UPDATE runce_checkpoints
SET claim_until = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', :ttl)
WHERE task_id = :task_id AND part = :part AND claim_token = :token;

-- name: release_claim
UPDATE runce_checkpoints
SET claim_token = NULL, claim_owner = NULL, claim_until = NULL
WHERE task_id = :task_id AND part = :part AND claim_token = :token;

-- name: save_claimed_checkpoint
UPDATE runce_checkpoints
SET parts = :parts,
    cursor = :cursor,
    done = :done,
    batches = :batches,
    attempt_id = :attempt_id,
    updated_at = :updated_at,
    finished = :finished,
    total = :total,
    rate = :rate,
    claim_until = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', :ttl)
WHERE task_id = :task_id AND part = :part AND claim_token = :token;
