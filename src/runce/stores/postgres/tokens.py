"""The HTTP API's tokens (docs/http-api.md#tokens-scopes-and-projects) in runce's ``tokens``
table: each call one statement."""

from __future__ import annotations

import builtins
from typing import Any

from psycopg.rows import dict_row

from runce.domain.tokens import NewToken, Token
from runce.errors import UsageError
from runce.stores.postgres.connection import Connection, Database
from runce.stores.postgres.rows import Row, utc

# The schema version that brings the tokens table (migrations/0004_tokens.sql).
TOKENS_VERSION = 4


class PostgresTokens:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, token: NewToken) -> Token:
        params = {
            "id": token.id,
            "name": token.name,
            "secret_hash": token.secret_hash,
            "scopes": list(token.scopes),
            "projects": list(token.projects),
        }
        made = self._change("insert_token", params, what=f"create token {token.id}")
        if made is None:
            raise UsageError(f"a token with the id {token.id} exists already")
        return made

    def find(self, token_id: str) -> Token | None:
        def work(conn: Connection) -> Token | None:
            rows = self._rows(conn, "get_token", {"id": token_id})
            return token_from(rows[0]) if rows else None

        return self._db.read(work, empty=None, what=f"read token {token_id}", needs=TOKENS_VERSION)

    def list(self) -> list[Token]:
        def work(conn: Connection) -> list[Token]:
            return [token_from(row) for row in self._rows(conn, "list_tokens", None)]

        return self._db.read(work, empty=[], what="list tokens", needs=TOKENS_VERSION)

    def revoke(self, token_id: str) -> Token | None:
        return self._change("revoke_token", {"id": token_id}, what=f"revoke token {token_id}")

    def touch(self, token_id: str) -> None:
        self._change("touch_token", {"id": token_id}, what=f"note the use of token {token_id}")

    def _change(self, name: str, params: dict[str, Any], *, what: str) -> Token | None:
        def work(conn: Connection) -> Token | None:
            rows = self._rows(conn, name, params)
            return token_from(rows[0]) if rows else None

        return self._db.write(work, what=what, transaction=False)

    def _rows(
        self, conn: Connection, name: str, params: dict[str, Any] | None
    ) -> builtins.list[Row]:
        with conn.cursor(row_factory=dict_row) as cursor:
            return cursor.execute(self._db.sql(name), params).fetchall()


def token_from(row: Row) -> Token:
    return Token(
        id=row["id"],
        name=row["name"],
        secret_hash=row["secret_hash"],
        scopes=tuple(row["scopes"]),
        projects=tuple(row["projects"]),
        created_at=utc(row["created_at"]),
        revoked_at=utc(row["revoked_at"]),
        last_used_at=utc(row["last_used_at"]),
    )
