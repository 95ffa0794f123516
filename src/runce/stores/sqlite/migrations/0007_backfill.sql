-- Backfills (docs/backfills.md): how far each key range got, and the standing pause and cancel
-- requests. Both are state, replaced in place; the history of attempts stays append-only.

-- One row per key range of a backfill; cursor is the JSON value the next fetch gets.
CREATE TABLE runce_checkpoints (
    task_id    TEXT NOT NULL,
    part       INTEGER NOT NULL CHECK (part >= 0),
    parts      INTEGER NOT NULL CHECK (parts > part),
    cursor     TEXT NOT NULL,
    done       INTEGER NOT NULL CHECK (done >= 0),
    batches    INTEGER NOT NULL CHECK (batches >= 0),
    attempt_id TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished   INTEGER NOT NULL CHECK (finished IN (0, 1)),
    total      INTEGER,
    rate       REAL,
    PRIMARY KEY (task_id, part)
);

-- A task id with a row here is asked to pause or cancel; resuming deletes the row.
CREATE TABLE runce_controls (
    task_id      TEXT PRIMARY KEY,
    command      TEXT NOT NULL CHECK (command IN ('pause', 'cancel')),
    requested_at TEXT NOT NULL,
    requested_by TEXT NOT NULL
);
