-- Runs (background jobs): the runs themselves, the attempts that did not succeed, and the
-- workers' heartbeats. Times are ISO-8601 UTC text with milliseconds and a "Z", as for
-- once tasks; JSON (input, result, a worker's kinds) is TEXT.

-- One row per run; a successful attempt is described by the row itself (docs/runs.md).
CREATE TABLE runce_runs (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    input            TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN (
                         'queued', 'running', 'succeeded', 'failed', 'canceled')),
    attempt          INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts     INTEGER NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    run_at           TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    project_id       TEXT,
    idempotency_key  TEXT,
    correlation_id   TEXT,
    result           TEXT,
    output_ref       TEXT,
    error            TEXT,
    claimed_by       TEXT,
    claimed_at       TEXT,
    lease_expires_at TEXT,
    started_at       TEXT,
    finished_at      TEXT,
    progress         INTEGER CHECK (progress BETWEEN 0 AND 100),
    progress_message TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1))
);

-- The same key returns the same run; a pruned run frees its key.
CREATE UNIQUE INDEX runce_runs_idempotency ON runce_runs (idempotency_key)
WHERE idempotency_key IS NOT NULL;

-- The claim path: only queued runs, in claim order, so a claim reads the first due ones.
CREATE INDEX runce_runs_claim ON runce_runs (priority DESC, run_at, id)
WHERE state = 'queued';

-- Reclaiming expired leases reads running runs by lease end: (state, lease_expires_at),
-- kept to the one state that has a lease: queued and finished runs never enter it.
CREATE INDEX runce_runs_lease ON runce_runs (state, lease_expires_at)
WHERE state = 'running';

-- Listing, newest first.
CREATE INDEX runce_runs_project ON runce_runs (project_id, created_at DESC);
CREATE INDEX runce_runs_state ON runce_runs (state, created_at DESC);
CREATE INDEX runce_runs_kind ON runce_runs (kind, created_at DESC);
CREATE INDEX runce_runs_correlation ON runce_runs (correlation_id)
WHERE correlation_id IS NOT NULL;

-- One row per attempt that did not succeed (failed, retried, canceled, handed back, or
-- whose lease expired), written in the transaction that ended the attempt.
CREATE TABLE runce_run_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    worker_id   TEXT NOT NULL,
    started_at  TEXT,
    finished_at TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN (
                    'failed', 'retry', 'canceled', 'released', 'lease-expired')),
    error       TEXT
);

CREATE INDEX runce_run_attempts_run ON runce_run_attempts (run_id);

-- Workers, by id, as of their last heartbeat.
CREATE TABLE runce_workers (
    id          TEXT PRIMARY KEY,
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    started_at  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    kinds       TEXT NOT NULL DEFAULT '[]',
    state       TEXT NOT NULL CHECK (state IN ('running', 'stopping', 'stopped'))
);
