-- Queries of the SQLite schedule store, loaded by name (see queries.py). :now is SQLite's
-- clock read once by the transaction (the `now` query).

-- name: insert_schedule
INSERT INTO runce_schedules (
    name, kind, expression, timezone, input, enabled, next_run_at, created_at, updated_at
)
VALUES (:name, :kind, :expression, :timezone, :input, 1, :next_run_at, :now, :now)
ON CONFLICT (name) DO NOTHING;

-- name: update_schedule_definition
UPDATE runce_schedules
SET kind = :kind,
    expression = :expression,
    timezone = :timezone,
    input = :input,
    next_run_at = coalesce(:next_run_at, next_run_at),
    updated_at = :now
WHERE name = :name
RETURNING *;

-- name: get_schedule
SELECT * FROM runce_schedules WHERE name = :name;

-- name: list_schedules
SELECT * FROM runce_schedules ORDER BY name;

-- name: advance_schedule
UPDATE runce_schedules
SET next_run_at = :next_run_at,
    last_run_at = :tick,
    last_run_id = :run_id,
    updated_at = :now
WHERE name = :name AND next_run_at = :tick;

-- name: set_schedule_enabled
UPDATE runce_schedules
SET enabled = :enabled,
    next_run_at = coalesce(:next_run_at, next_run_at),
    updated_at = :now
WHERE name = :name
RETURNING *;
