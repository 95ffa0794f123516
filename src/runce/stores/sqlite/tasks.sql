-- Queries of the SQLite store, loaded by name (see queries.py). Every "now" is SQLite's
-- clock, so runners on one file compare leases against one clock. Lease lengths arrive as
-- a date modifier such as '+30.000 seconds'.

-- name: user_version
PRAGMA user_version;

-- name: applied
SELECT id, name, checksum, applied_at, duration_ms, status, attempt_id, error
FROM runce_applied
ORDER BY id;

-- name: history
SELECT * FROM runce_history
ORDER BY started_at, rowid;

-- name: history_of_task
SELECT * FROM runce_history
WHERE task_id = :task_id
ORDER BY started_at, rowid;

-- The last :per_task attempts of each task of the JSON array :task_ids: per task,
-- runce_history_task (whose entries end with the rowid) walked back from its newest entry,
-- so the read is bounded whatever the history holds.
-- name: latest_attempts
SELECT h.*
FROM json_each(:task_ids) AS t
JOIN runce_history AS h ON h.rowid IN (
    SELECT x.rowid FROM runce_history AS x
    WHERE x.task_id = t.value
    ORDER BY x.started_at DESC, x.rowid DESC
    LIMIT :per_task
)
ORDER BY h.task_id, h.started_at, h.rowid;

-- name: open_attempts
SELECT * FROM runce_history
WHERE status = 'started'
ORDER BY started_at, rowid;

-- name: insert_attempt
INSERT INTO runce_history (
    attempt_id, task_id, title, checksum, status, started_at, applied_by, owner, host, pid,
    machine, runce_version, lock_token, finished_at, duration_ms, error_type, error_message,
    traceback, progress_done, progress_total, note
) VALUES (
    :attempt_id, :task_id, :title, :checksum, :status, :started_at, :applied_by, :owner,
    :host, :pid, :machine, :runce_version, :lock_token, :finished_at, :duration_ms,
    :error_type, :error_message, :traceback, :progress_done, :progress_total, :note
);

-- name: progress
UPDATE runce_history
SET progress_done = :done, progress_total = :total
WHERE attempt_id = :attempt_id AND status = 'started';

-- The runner's finished attempt does not carry the progress stored while it ran: keep it.
-- name: finish_attempt
UPDATE runce_history
SET status = :status,
    finished_at = :finished_at,
    duration_ms = :duration_ms,
    error_type = :error_type,
    error_message = :error_message,
    traceback = :traceback,
    progress_done = coalesce(:progress_done, progress_done),
    progress_total = coalesce(:progress_total, progress_total),
    note = coalesce(:note, note)
WHERE attempt_id = :attempt_id AND status = 'started';

-- name: upsert_applied
INSERT INTO runce_applied (id, name, checksum, applied_at, duration_ms, status, attempt_id, error)
VALUES (:id, :name, :checksum, :applied_at, :duration_ms, :status, :attempt_id, :error)
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name,
    checksum = excluded.checksum,
    applied_at = excluded.applied_at,
    duration_ms = excluded.duration_ms,
    status = excluded.status,
    attempt_id = excluded.attempt_id,
    error = excluded.error;

-- name: lock_holder
SELECT token, owner, host, pid, machine, acquired_at, lease_until,
       coalesce(lease_until < strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 0) AS expired
FROM runce_lock
WHERE name = 'global' AND token IS NOT NULL;

-- name: lock_token
SELECT token FROM runce_lock WHERE name = 'global';

-- name: take_lock
INSERT INTO runce_lock (name, token, owner, host, pid, machine, acquired_at, lease_until)
VALUES (
    'global', :token, :owner, :host, :pid, :machine,
    strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
    strftime('%Y-%m-%dT%H:%M:%fZ', 'now', :ttl)
)
ON CONFLICT (name) DO UPDATE SET
    token = excluded.token,
    owner = excluded.owner,
    host = excluded.host,
    pid = excluded.pid,
    machine = excluded.machine,
    acquired_at = excluded.acquired_at,
    lease_until = excluded.lease_until
RETURNING acquired_at;

-- name: renew_lock
UPDATE runce_lock
SET lease_until = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', :ttl)
WHERE name = 'global' AND token = :token;

-- name: release_lock
DELETE FROM runce_lock WHERE name = 'global' AND token = :token;

-- name: clear_lock
DELETE FROM runce_lock WHERE name = 'global';
