-- Queries of the PostgreSQL token store, loaded by name (see queries.py).

-- name: insert_token
INSERT INTO {schema}.tokens (id, name, secret_hash, scopes, projects, created_at)
VALUES (%(id)s, %(name)s, %(secret_hash)s, %(scopes)s, %(projects)s, now())
ON CONFLICT (id) DO NOTHING
RETURNING *;

-- name: get_token
SELECT * FROM {schema}.tokens WHERE id = %(id)s;

-- name: list_tokens
SELECT * FROM {schema}.tokens ORDER BY created_at, id;

-- A second revocation keeps the first time.
-- name: revoke_token
UPDATE {schema}.tokens
SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(id)s
RETURNING *;

-- name: touch_token
UPDATE {schema}.tokens SET last_used_at = now() WHERE id = %(id)s
RETURNING *;
