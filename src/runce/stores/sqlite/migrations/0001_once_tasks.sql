-- Once tasks: the applied state per task id, the append-only history of attempts, and the
-- lease row of the global lock. Times are ISO-8601 UTC text with milliseconds and a "Z"
-- (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), so comparing the text orders them in time.

-- The last outcome per task id, with the seed's field names.
CREATE TABLE runce_applied (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    applied_at  TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('success', 'failed', 'skipped')),
    attempt_id  TEXT NOT NULL,
    error       TEXT
);

-- One row per attempt, inserted as 'started' and finished exactly once.
CREATE TABLE runce_history (
    attempt_id     TEXT PRIMARY KEY,
    task_id        TEXT NOT NULL,
    title          TEXT NOT NULL,
    checksum       TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN (
                       'started', 'succeeded', 'failed', 'skipped', 'skipped-by-env',
                       'interrupted', 'repaired', 'baselined')),
    started_at     TEXT NOT NULL,
    applied_by     TEXT NOT NULL,
    owner          TEXT NOT NULL,
    host           TEXT NOT NULL,
    pid            INTEGER NOT NULL,
    machine        TEXT NOT NULL,
    runce_version  TEXT NOT NULL,
    lock_token     TEXT,
    finished_at    TEXT,
    duration_ms    INTEGER,
    error_type     TEXT,
    error_message  TEXT,
    traceback      TEXT,
    progress_done  INTEGER,
    progress_total INTEGER,
    note           TEXT
);

CREATE INDEX runce_history_task ON runce_history (task_id, started_at);

-- Open attempts are few and read by every run and status; finished ones are the bulk.
CREATE INDEX runce_history_open ON runce_history (started_at) WHERE status = 'started';

-- The history is the audit trail: the database itself refuses to rewrite or lose it.
CREATE TRIGGER runce_history_finished_is_final
BEFORE UPDATE ON runce_history
WHEN OLD.status <> 'started'
BEGIN
    SELECT RAISE(ABORT, 'runce_history: a finished attempt is never changed');
END;

CREATE TRIGGER runce_history_is_append_only
BEFORE DELETE ON runce_history
BEGIN
    SELECT RAISE(ABORT, 'runce_history: attempts are never deleted');
END;

-- The global lock: one lease row, identified by a random token per acquisition.
CREATE TABLE runce_lock (
    name        TEXT PRIMARY KEY CHECK (name = 'global'),
    token       TEXT,
    owner       TEXT NOT NULL,
    host        TEXT,
    pid         INTEGER,
    machine     TEXT,
    acquired_at TEXT,
    lease_until TEXT
);
