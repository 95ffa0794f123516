-- Backfills (docs/backfills.md): how far each key range got, and the standing pause and cancel
-- requests. Both are state, replaced in place; the history of attempts stays append-only.

-- One row per key range of a backfill; cursor is the JSON value the next fetch gets.
CREATE TABLE {schema}.checkpoints (
    task_id    text NOT NULL,
    part       integer NOT NULL CHECK (part >= 0),
    parts      integer NOT NULL CHECK (parts > part),
    cursor     jsonb NOT NULL,
    done       bigint NOT NULL CHECK (done >= 0),
    batches    bigint NOT NULL CHECK (batches >= 0),
    attempt_id text NOT NULL,
    updated_at timestamptz NOT NULL,
    finished   boolean NOT NULL,
    total      bigint,
    rate       double precision,
    PRIMARY KEY (task_id, part)
);

-- A task id with a row here is asked to pause or cancel; resuming deletes the row.
CREATE TABLE {schema}.controls (
    task_id      text PRIMARY KEY,
    command      text NOT NULL CHECK (command IN ('pause', 'cancel')),
    requested_at timestamptz NOT NULL,
    requested_by text NOT NULL
);
