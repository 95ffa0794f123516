-- The HTTP API's bearer tokens (docs/http-api.md): the sha256 of each secret, never the
-- secret. No projects means every project.
CREATE TABLE {schema}.tokens (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    secret_hash  text NOT NULL,
    scopes       text[] NOT NULL,
    projects     text[] NOT NULL,
    created_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
