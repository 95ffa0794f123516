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
