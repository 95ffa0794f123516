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
