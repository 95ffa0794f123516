-- Cron schedules (docs/runs.md): declared in code, synchronised here by workers; `enabled` is the
-- operator's switch, which synchronising never changes. Times are ISO-8601 UTC text.
CREATE TABLE runce_schedules (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    expression  TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    input       TEXT NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    next_run_at TEXT NOT NULL,
    last_run_at TEXT,
    last_run_id TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
