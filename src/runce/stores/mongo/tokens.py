"""The HTTP API's tokens (docs/http-api.md#tokens-scopes-and-projects) in ``runce.tokens``:
one document per token, ``_id`` its id.

Only the sha256 of a token's secret is kept. Times are the server's clock.
"""

from __future__ import annotations

from typing import Any

from pymongo.errors import DuplicateKeyError

from runce.domain.tokens import NewToken, Token
from runce.errors import UsageError
from runce.stores.mongo.connection import Connection, Document
from runce.stores.mongo.documents import aware
from runce.stores.mongo.schema import Schema


class MongoTokens:
    def __init__(self, conn: Connection, schema: Schema) -> None:
        self._conn = conn
        self._schema = schema
        self._docs = conn.tokens

    def create(self, token: NewToken) -> Token:
        with self._conn.translated(f"create token {token.id}"):
            self._schema.prepare()
            doc = {
                "_id": token.id,
                "name": token.name,
                "secretHash": token.secret_hash,
                "scopes": list(token.scopes),
                "projects": list(token.projects),
                "createdAt": self._conn.server_now(),
                "revokedAt": None,
                "lastUsedAt": None,
            }
            try:
                self._docs.insert_one(doc)
            except DuplicateKeyError:
                raise UsageError(f"a token with the id {token.id} exists already") from None
            stored = self._docs.find_one({"_id": token.id})  # times as kept: milliseconds
        return token_from(stored or doc)

    def find(self, token_id: str) -> Token | None:
        with self._conn.translated(f"read token {token_id}"):
            doc = self._docs.find_one({"_id": token_id})
        return None if doc is None else token_from(doc)

    def list(self) -> list[Token]:
        with self._conn.translated("list tokens"):
            docs = self._docs.find({}).sort([("createdAt", 1), ("_id", 1)])
            return [token_from(doc) for doc in docs]

    def revoke(self, token_id: str) -> Token | None:
        with self._conn.translated(f"revoke token {token_id}"):
            self._schema.prepare()
            # Only a token not revoked yet changes, so the first revocation time stays.
            self._docs.update_one(
                {"_id": token_id, "revokedAt": None},
                {"$set": {"revokedAt": self._conn.server_now()}},
            )
            doc = self._docs.find_one({"_id": token_id})
        return None if doc is None else token_from(doc)

    def touch(self, token_id: str) -> None:
        with self._conn.translated(f"note the use of token {token_id}"):
            self._schema.prepare()
            self._docs.update_one(
                {"_id": token_id}, {"$set": {"lastUsedAt": self._conn.server_now()}}
            )


def token_from(doc: Document) -> Token:
    revoked: Any = doc.get("revokedAt")
    used: Any = doc.get("lastUsedAt")
    return Token(
        id=doc["_id"],
        name=doc["name"],
        secret_hash=doc["secretHash"],
        scopes=tuple(doc["scopes"]),
        projects=tuple(doc.get("projects") or ()),
        created_at=aware(doc["createdAt"]),
        revoked_at=None if revoked is None else aware(revoked),
        last_used_at=None if used is None else aware(used),
    )
