-- The HTTP API's bearer tokens (docs/http-api.md): the sha256 of each secret, never the
-- secret. Scopes and projects are JSON arrays (no projects: every project). Times are
-- ISO-8601 UTC text.
CREATE TABLE runce_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    projects     TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT,
    last_used_at TEXT
);
