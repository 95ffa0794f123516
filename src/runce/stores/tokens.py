"""The token contract: the HTTP API's bearer tokens, kept by the store
(docs/http-api.md#tokens-scopes-and-projects).

A store keeps a token's id, name, the sha256 of its secret (never the secret), its scopes
and projects, and when it was created, revoked and last used. Stores with run queues
(memory, SQLite, PostgreSQL, MongoDB) expose one as ``store.tokens``; the file store keeps
no tokens, as it keeps no runs.

Rules every backend keeps (the contract suite in ``tests/stores/test_token_contract.py``):

* ``create`` refuses an id that exists; times come from the store's clock.
* ``revoke`` is final and keeps the first revocation time; a revoked token is still found
  (and listed), so the API can tell a revoked token from an unknown one in its log.
* Reads never create anything; a store without the tokens schema reads as empty.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from runce.domain.tokens import NewToken, Token


@runtime_checkable
class TokenStore(Protocol):
    """Bearer tokens: created, found by id, listed, revoked."""

    def create(self, token: NewToken) -> Token:
        """Insert a token; :class:`~runce.errors.UsageError` when its id exists."""

    def find(self, token_id: str) -> Token | None: ...

    def list(self) -> list[Token]:
        """Every token, revoked ones too, oldest first."""

    def revoke(self, token_id: str) -> Token | None:
        """Revoke a token (once: a second call changes nothing); None when unknown."""

    def touch(self, token_id: str) -> None:
        """Record that the token was just used (``last_used_at``, on the store's clock)."""


__all__ = [
    "TokenStore",
]
