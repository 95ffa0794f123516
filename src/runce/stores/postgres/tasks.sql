-- Queries of the PostgreSQL store, loaded by name (see queries.py). {schema} is runce's
-- schema, quoted by psycopg.sql.Identifier; %(name)s are parameters bound by the driver.
-- The global lock is a session-level advisory lock on a 64-bit key; pg_locks shows such a
-- key as classid (high 32 bits) and objid (low 32 bits) with objsubid = 1, per database.

-- name: schema_exists
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %(schema)s);

-- name: version_table_exists
SELECT EXISTS (
    SELECT 1
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s AND c.relname = 'schema_version'
);

-- name: schema_version
SELECT coalesce(max(version), 0) FROM {schema}.schema_version;

-- name: create_schema
CREATE SCHEMA {schema};

-- name: create_schema_if_missing
CREATE SCHEMA IF NOT EXISTS {schema};

-- Waited for, never tried: a migration is short, and everyone after it needs it done.
-- name: migration_lock
SELECT pg_advisory_xact_lock(%(key)s);

-- name: record_migration
INSERT INTO {schema}.schema_version (version, name) VALUES ({version}, {name});

-- name: applied
SELECT id, name, checksum, applied_at, duration_ms, status, attempt_id, error
FROM {schema}.applied
ORDER BY id;

-- name: history
SELECT * FROM {schema}.history
ORDER BY started_at, seq;

-- name: history_of_task
SELECT * FROM {schema}.history
WHERE task_id = %(task_id)s
ORDER BY started_at, seq;

-- The last %(per_task)s attempts of each task named: history_task walked back from each
-- task's newest entry, so the read is bounded whatever the history holds.
-- name: latest_attempts
SELECT h.*
FROM unnest(%(task_ids)s::text[]) AS t (task_id)
CROSS JOIN LATERAL (
    SELECT * FROM {schema}.history AS x
    WHERE x.task_id = t.task_id
    ORDER BY x.started_at DESC, x.seq DESC
    LIMIT %(per_task)s
) AS h
ORDER BY h.task_id, h.started_at, h.seq;

-- name: open_attempts
SELECT * FROM {schema}.history
WHERE status = 'started'
ORDER BY started_at, seq;

-- name: insert_attempt
INSERT INTO {schema}.history (
    attempt_id, task_id, title, checksum, status, started_at, applied_by, owner, host, pid,
    machine, runce_version, lock_token, finished_at, duration_ms, error_type, error_message,
    traceback, progress_done, progress_total, note
) VALUES (
    %(attempt_id)s, %(task_id)s, %(title)s, %(checksum)s, %(status)s, %(started_at)s,
    %(applied_by)s, %(owner)s, %(host)s, %(pid)s, %(machine)s, %(runce_version)s,
    %(lock_token)s, %(finished_at)s, %(duration_ms)s, %(error_type)s, %(error_message)s,
    %(traceback)s, %(progress_done)s, %(progress_total)s, %(note)s
);

-- name: progress
UPDATE {schema}.history
SET progress_done = %(done)s, progress_total = %(total)s
WHERE attempt_id = %(attempt_id)s AND status = 'started';

-- The runner's finished attempt does not carry the progress stored while it ran: keep it.
-- name: finish_attempt
UPDATE {schema}.history
SET status = %(status)s,
    finished_at = %(finished_at)s,
    duration_ms = %(duration_ms)s,
    error_type = %(error_type)s,
    error_message = %(error_message)s,
    traceback = %(traceback)s,
    progress_done = coalesce(%(progress_done)s, progress_done),
    progress_total = coalesce(%(progress_total)s, progress_total),
    note = coalesce(%(note)s, note)
WHERE attempt_id = %(attempt_id)s AND status = 'started';

-- name: upsert_applied
INSERT INTO {schema}.applied (
    id, name, checksum, applied_at, duration_ms, status, attempt_id, error
) VALUES (
    %(id)s, %(name)s, %(checksum)s, %(applied_at)s, %(duration_ms)s, %(status)s,
    %(attempt_id)s, %(error)s
)
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name,
    checksum = excluded.checksum,
    applied_at = excluded.applied_at,
    duration_ms = excluded.duration_ms,
    status = excluded.status,
    attempt_id = excluded.attempt_id,
    error = excluded.error;

-- The session holding the global lock, if any: its backend and what it says it is.
-- name: lock_holder
SELECT l.pid AS backend_pid, a.application_name, a.backend_start
FROM pg_catalog.pg_locks l
LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory'
  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
  AND l.objsubid = 1
  AND ((l.classid::bigint << 32) | l.objid::bigint) = %(key)s
  AND l.granted;

-- Whether the backend %(pid)s holds the global lock (the fence of every leased write).
-- name: holds_lock
SELECT EXISTS (
    SELECT 1
    FROM pg_catalog.pg_locks
    WHERE locktype = 'advisory'
      AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
      AND objsubid = 1
      AND ((classid::bigint << 32) | objid::bigint) = %(key)s
      AND pid = %(pid)s
      AND granted
);

-- name: try_lock
SELECT pg_try_advisory_lock(%(key)s);

-- name: unlock
SELECT pg_advisory_unlock(%(key)s);

-- A host that vanishes without closing its socket keeps its session, and so the lock,
-- until the server's TCP keepalives give up on it: make that about one lease long.
-- name: session_keepalives
SELECT set_config('tcp_keepalives_idle', %(idle)s, false),
       set_config('tcp_keepalives_interval', %(interval)s, false),
       set_config('tcp_keepalives_count', %(count)s, false);

-- A transactional task's commit holds this row (see lock_info_for_share): never wait long.
-- name: short_lock_timeout
SET LOCAL lock_timeout = '5s';

-- name: write_lock_info
INSERT INTO {schema}.lock_info (
    name, token, owner, host, pid, machine, since, backend_pid, backend_start
) VALUES (
    'global', %(token)s, %(owner)s, %(host)s, %(pid)s, %(machine)s, now(), pg_backend_pid(),
    (SELECT backend_start FROM pg_catalog.pg_stat_activity WHERE pid = pg_backend_pid())
)
ON CONFLICT (name) DO UPDATE SET
    token = excluded.token,
    owner = excluded.owner,
    host = excluded.host,
    pid = excluded.pid,
    machine = excluded.machine,
    since = excluded.since,
    backend_pid = excluded.backend_pid,
    backend_start = excluded.backend_start
RETURNING since;

-- name: lock_info
SELECT token, owner, host, pid, machine, since, backend_pid, backend_start
FROM {schema}.lock_info
WHERE name = 'global';

-- A transactional task's commit keeps the next holder from recording its acquisition (and
-- so from reading the applied state) until this commit is done or undone.
-- name: lock_info_for_share
SELECT token FROM {schema}.lock_info WHERE name = 'global' FOR SHARE;

-- name: delete_lock_info
DELETE FROM {schema}.lock_info WHERE name = 'global' AND token = %(token)s;

-- name: terminate_backend
SELECT pg_terminate_backend(%(pid)s);
