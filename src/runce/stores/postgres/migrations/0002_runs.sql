-- Runs (background jobs): the runs themselves, the attempts that did not succeed, and the
-- workers' heartbeats. Times are timestamptz written with the server's clock; input,
-- result and a worker's kinds are JSONB / text[]. Every name is qualified with runce's schema.

-- One row per run; a successful attempt is described by the row itself (docs/runs.md).
CREATE TABLE {schema}.runs (
    id               text PRIMARY KEY,
    kind             text NOT NULL,
    input            jsonb NOT NULL,
    state            text NOT NULL CHECK (state IN (
                         'queued', 'running', 'succeeded', 'failed', 'canceled')),
    attempt          integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts     integer NOT NULL CHECK (max_attempts >= 1),
    priority         integer NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    project_id       text,
    idempotency_key  text,
    correlation_id   text,
    result           jsonb,
    output_ref       text,
    error            text,
    claimed_by       text,
    claimed_at       timestamptz,
    lease_expires_at timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz,
    progress         smallint CHECK (progress BETWEEN 0 AND 100),
    progress_message text,
    cancel_requested boolean NOT NULL DEFAULT false,
    -- A running run is always claimed by someone, under a lease.
    CHECK (state <> 'running' OR (claimed_by IS NOT NULL AND lease_expires_at IS NOT NULL))
);

-- The same key returns the same run; a pruned run frees its key.
CREATE UNIQUE INDEX runs_idempotency ON {schema}.runs (idempotency_key)
WHERE idempotency_key IS NOT NULL;

-- The claim path: only queued runs, in claim order, so a claim reads the first due ones
-- and stops (finished runs, the bulk of the table, are not in it).
CREATE INDEX runs_claim ON {schema}.runs (priority DESC, run_at, id)
WHERE state = 'queued';

-- Reclaiming expired leases reads running runs by lease end: (state, lease_expires_at),
-- kept to the one state that has a lease: queued and finished runs never enter it.
CREATE INDEX runs_lease ON {schema}.runs (state, lease_expires_at)
WHERE state = 'running';

-- Listing, newest first. Runs of no project (a filter never asks for those) stay out of
-- runs_project: every non-HOT update of a run writes an entry in each index it is in.
CREATE INDEX runs_project ON {schema}.runs (project_id, created_at DESC)
WHERE project_id IS NOT NULL;
CREATE INDEX runs_state ON {schema}.runs (state, created_at DESC);
CREATE INDEX runs_kind ON {schema}.runs (kind, created_at DESC);
CREATE INDEX runs_correlation ON {schema}.runs (correlation_id)
WHERE correlation_id IS NOT NULL;

-- One row per attempt that did not succeed (failed, retried, canceled, handed back, or
-- whose lease expired), written by the statement that ended the attempt. Pruning a run
-- deletes its attempts with it.
CREATE TABLE {schema}.run_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      text NOT NULL REFERENCES {schema}.runs (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    worker_id   text NOT NULL,
    started_at  timestamptz,
    finished_at timestamptz NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN (
                    'failed', 'retry', 'canceled', 'released', 'lease-expired')),
    error       text
);

CREATE INDEX run_attempts_run ON {schema}.run_attempts (run_id, id);

-- Workers, by id, as of their last heartbeat.
CREATE TABLE {schema}.workers (
    id          text PRIMARY KEY,
    host        text NOT NULL,
    pid         integer NOT NULL,
    started_at  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    concurrency integer NOT NULL,
    kinds       text[] NOT NULL,
    state       text NOT NULL CHECK (state IN ('running', 'stopping', 'stopped'))
);
