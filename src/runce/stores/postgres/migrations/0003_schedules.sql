-- Cron schedules (docs/runs.md): declared in code, synchronised here by workers; `enabled` is the
-- operator's switch, which synchronising never changes. The input is kept as the canonical
-- JSON text code declared, so a worker can tell whether the declaration changed.
CREATE TABLE {schema}.schedules (
    name        text PRIMARY KEY,
    kind        text NOT NULL,
    expression  text NOT NULL,
    timezone    text NOT NULL,
    input       text NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    next_run_at timestamptz NOT NULL,
    last_run_at timestamptz,
    last_run_id text,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
