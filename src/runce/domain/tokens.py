"""The HTTP API's bearer tokens as a store keeps them: the sha256 of the secret, never the
secret (see docs/http-api.md). The store contract is :class:`runce.stores.tokens.TokenStore`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class NewToken:
    id: str  # 12 hex characters, the public part of the token text
    name: str
    secret_hash: str  # sha256 of the secret, hex
    scopes: tuple[str, ...]
    projects: tuple[str, ...] = ()  # empty: every project


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    name: str
    secret_hash: str
    scopes: tuple[str, ...]
    projects: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None
