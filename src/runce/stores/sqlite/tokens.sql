-- Queries of the SQLite token store, loaded by name (see queries.py). :now is SQLite's
-- clock read once by the transaction (the `now` query).

-- name: insert_token
INSERT INTO runce_tokens (id, name, secret_hash, scopes, projects, created_at)
VALUES (:id, :name, :secret_hash, :scopes, :projects, :now)
ON CONFLICT (id) DO NOTHING
RETURNING *;

-- name: get_token
SELECT * FROM runce_tokens WHERE id = :id;

-- name: list_tokens
SELECT * FROM runce_tokens ORDER BY created_at, id;

-- A second revocation keeps the first time.
-- name: revoke_token
UPDATE runce_tokens
SET revoked_at = coalesce(revoked_at, :now)
WHERE id = :id
RETURNING *;

-- name: touch_token
UPDATE runce_tokens SET last_used_at = :now WHERE id = :id;
