"""The HTTP API's tokens (docs/http-api.md#tokens-scopes-and-projects) in a SQL store's
tokens table: each call one statement of the backend's ``tokens.sql``, run through its
:class:`Dialect`."""

from __future__ import annotations

import builtins
from typing import Any

from runce.domain.tokens import NewToken, Token
from runce.errors import UsageError
from runce.stores.sql.dialect import Dialect, Row

# The schema version that brings the tokens table (migrations/0004_tokens.sql).
TOKENS_VERSION = 4


class SqlTokens:
    """The :class:`~runce.stores.tokens.TokenStore` of the SQLite and PostgreSQL stores."""

    def __init__(self, dialect: Dialect) -> None:
        self._sql = dialect

    def create(self, token: NewToken) -> Token:
        params = {
            "id": token.id,
            "name": token.name,
            "secret_hash": token.secret_hash,
            "scopes": self._sql.texts(token.scopes),
            "projects": self._sql.texts(token.projects),
        }
        made = self._change("insert_token", params, what=f"create token {token.id}")
        if made is None:
            raise UsageError(f"a token with the id {token.id} exists already")
        return made

    def find(self, token_id: str) -> Token | None:
        what = f"read token {token_id}"
        rows = self._sql.read("get_token", {"id": token_id}, needs=TOKENS_VERSION, what=what)
        return self._token(rows[0]) if rows else None

    def list(self) -> builtins.list[Token]:
        rows = self._sql.read("list_tokens", {}, needs=TOKENS_VERSION, what="list tokens")
        return [self._token(row) for row in rows]

    def revoke(self, token_id: str) -> Token | None:
        return self._change("revoke_token", {"id": token_id}, what=f"revoke token {token_id}")

    def touch(self, token_id: str) -> None:
        self._change("touch_token", {"id": token_id}, what=f"note the use of token {token_id}")

    def _change(self, name: str, params: dict[str, Any], *, what: str) -> Token | None:
        rows = self._sql.write_rows(name, params, what=what)
        return self._token(rows[0]) if rows else None

    def _token(self, row: Row) -> Token:
        revoked_at, last_used_at = row["revoked_at"], row["last_used_at"]
        return Token(
            id=row["id"],
            name=row["name"],
            secret_hash=row["secret_hash"],
            scopes=self._sql.read_texts(row["scopes"]),
            projects=self._sql.read_texts(row["projects"]),
            created_at=self._sql.read_time(row["created_at"]),
            revoked_at=None if revoked_at is None else self._sql.read_time(revoked_at),
            last_used_at=None if last_used_at is None else self._sql.read_time(last_used_at),
        )
