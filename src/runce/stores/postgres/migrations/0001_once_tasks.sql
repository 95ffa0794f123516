-- Once tasks: the versions applied to this schema, the applied state per task id, the
-- append-only history of attempts, and who holds the global lock (for display: the lock
-- itself is a session-level advisory lock). Every name is qualified with runce's schema.

-- One row per migration applied; the highest version is the schema's version.
CREATE TABLE {schema}.schema_version (
    version    integer PRIMARY KEY CHECK (version > 0),
    name       text NOT NULL UNIQUE,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- The last outcome per task id, with the seed's field names.
CREATE TABLE {schema}.applied (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL,
    duration_ms bigint NOT NULL CHECK (duration_ms >= 0),
    status      text NOT NULL CHECK (status IN ('success', 'failed', 'skipped')),
    attempt_id  text NOT NULL,
    error       text
);

-- One row per attempt, inserted as 'started' and finished exactly once. seq keeps the
-- order of insertion for attempts started in the same microsecond.
CREATE TABLE {schema}.history (
    seq            bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    attempt_id     text PRIMARY KEY,
    task_id        text NOT NULL,
    title          text NOT NULL,
    checksum       text NOT NULL,
    status         text NOT NULL CHECK (status IN (
                       'started', 'succeeded', 'failed', 'skipped', 'skipped-by-env',
                       'interrupted', 'repaired', 'baselined')),
    started_at     timestamptz NOT NULL,
    applied_by     text NOT NULL,
    owner          text NOT NULL,
    host           text NOT NULL,
    pid            integer NOT NULL,
    machine        text NOT NULL,
    runce_version  text NOT NULL,
    lock_token     text,
    finished_at    timestamptz,
    duration_ms    bigint,
    error_type     text,
    error_message  text,
    traceback      text,
    progress_done  bigint,
    progress_total bigint,
    note           text
);

CREATE INDEX history_task ON {schema}.history (task_id, started_at);

-- Open attempts are few and read by every run and status; finished ones are the bulk.
CREATE INDEX history_open ON {schema}.history (started_at) WHERE status = 'started';

-- The history is the audit trail: the database itself refuses to rewrite or lose it.
CREATE FUNCTION {schema}.history_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'history: a finished attempt is never changed'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RAISE EXCEPTION 'history: attempts are never deleted'
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

CREATE TRIGGER history_finished_is_final
BEFORE UPDATE ON {schema}.history
FOR EACH ROW WHEN (OLD.status <> 'started')
EXECUTE FUNCTION {schema}.history_refuse_change();

CREATE TRIGGER history_is_append_only
BEFORE DELETE OR TRUNCATE ON {schema}.history
FOR EACH STATEMENT
EXECUTE FUNCTION {schema}.history_refuse_change();

-- Who took the global lock, written by the holder on its lock session right after taking
-- it. Only for display: a row whose backend no longer holds the lock is not a holder.
CREATE TABLE {schema}.lock_info (
    name          text PRIMARY KEY CHECK (name = 'global'),
    token         text NOT NULL,
    owner         text NOT NULL,
    host          text NOT NULL,
    pid           integer NOT NULL,
    machine       text NOT NULL,
    since         timestamptz NOT NULL,
    backend_pid   integer NOT NULL,
    backend_start timestamptz
);
