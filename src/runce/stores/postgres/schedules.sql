-- Queries of the PostgreSQL schedule store, loaded by name (see queries.py).

-- name: insert_schedule
INSERT INTO {schema}.schedules (
    name, kind, expression, timezone, input, enabled, next_run_at, created_at, updated_at
)
VALUES (
    %(name)s, %(kind)s, %(expression)s, %(timezone)s, %(input)s, true, %(next_run_at)s,
    now(), now()
)
ON CONFLICT (name) DO NOTHING;

-- name: update_schedule_definition
UPDATE {schema}.schedules
SET kind = %(kind)s,
    expression = %(expression)s,
    timezone = %(timezone)s,
    input = %(input)s,
    next_run_at = coalesce(%(next_run_at)s::timestamptz, next_run_at),
    updated_at = now()
WHERE name = %(name)s
RETURNING *;

-- name: get_schedule
SELECT * FROM {schema}.schedules WHERE name = %(name)s;

-- name: list_schedules
SELECT * FROM {schema}.schedules ORDER BY name;

-- name: advance_schedule
UPDATE {schema}.schedules
SET next_run_at = %(next_run_at)s,
    last_run_at = %(tick)s,
    last_run_id = %(run_id)s,
    updated_at = now()
WHERE name = %(name)s AND next_run_at = %(tick)s;

-- name: set_schedule_enabled
UPDATE {schema}.schedules
SET enabled = %(enabled)s,
    next_run_at = coalesce(%(next_run_at)s::timestamptz, next_run_at),
    updated_at = now()
WHERE name = %(name)s
RETURNING *;
