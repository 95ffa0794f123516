"""The HTTP API's tokens (docs/http-api.md#tokens-scopes-and-projects) in ``runce_tokens``:
each call one short transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from runce.domain.tokens import NewToken, Token
from runce.errors import UsageError
from runce.stores.sqlite import schema
from runce.stores.sqlite.connection import Database
from runce.stores.sqlite.queries import clock, fetch_rows
from runce.timeutil import from_iso

T = TypeVar("T")

# The schema version that brings the tokens table (migrations/0004_tokens.sql).
TOKENS_VERSION = 4


class SQLiteTokens:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, token: NewToken) -> Token:
        params = {
            "id": token.id,
            "name": token.name,
            "secret_hash": token.secret_hash,
            "scopes": json.dumps(list(token.scopes)),
            "projects": json.dumps(list(token.projects)),
        }
        made = self._change("insert_token", params, what=f"create token {token.id}")
        if made is None:
            raise UsageError(f"a token with the id {token.id} exists already")
        return made

    def find(self, token_id: str) -> Token | None:
        def work(conn: sqlite3.Connection) -> Token | None:
            rows = fetch_rows(conn, "get_token", {"id": token_id})
            return token_from(rows[0]) if rows else None

        return self._read(work, None, what=f"read token {token_id}")

    def list(self) -> list[Token]:
        def work(conn: sqlite3.Connection) -> list[Token]:
            return [token_from(row) for row in fetch_rows(conn, "list_tokens", {})]

        return self._read(work, [], what="list tokens")

    def revoke(self, token_id: str) -> Token | None:
        return self._change("revoke_token", {"id": token_id}, what=f"revoke token {token_id}")

    def touch(self, token_id: str) -> None:
        self._change("touch_token", {"id": token_id}, what=f"note the use of token {token_id}")

    def _change(self, name: str, params: dict[str, Any], *, what: str) -> Token | None:
        def work(conn: sqlite3.Connection) -> Token | None:
            rows = fetch_rows(conn, name, {**params, "now": clock(conn)})
            return token_from(rows[0]) if rows else None

        return self._db.write(work, what=what)

    def _read(self, work: Callable[[sqlite3.Connection], T], empty: T, *, what: str) -> T:
        """A read; ``empty`` while the file has no tokens table yet (reads never migrate)."""

        def guarded(conn: sqlite3.Connection) -> T:
            return empty if schema.user_version(conn) < TOKENS_VERSION else work(conn)

        return self._db.read(guarded, empty=empty, what=what)


def token_from(row: sqlite3.Row) -> Token:
    return Token(
        id=row["id"],
        name=row["name"],
        secret_hash=row["secret_hash"],
        scopes=tuple(json.loads(row["scopes"])),
        projects=tuple(json.loads(row["projects"])),
        created_at=from_iso(row["created_at"]),
        revoked_at=None if row["revoked_at"] is None else from_iso(row["revoked_at"]),
        last_used_at=None if row["last_used_at"] is None else from_iso(row["last_used_at"]),
    )
