"""Bearer tokens (docs/http-api.md#tokens-scopes-and-projects): their text, their hash, and
creating, listing and revoking them.

A token reads ``rnc_<id>_<secret>``: ``id`` is 12 hex characters that find the stored
token, ``secret`` 43 url-safe characters of which only the sha256 is stored. The secret is
shown once, when the token is made. Plain Python: ``runce tokens`` works without the
``api`` extra.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from runce.config import ConfigArg
from runce.domain.tokens import NewToken, Token
from runce.errors import UnsupportedFeature, UsageError
from runce.runs.library import runtime
from runce.runtime import Runtime
from runce.stores.base import Store
from runce.stores.tokens import TokenStore

PREFIX = "rnc_"
SCOPES = ("runs:read", "runs:write", "runs:work")
_TEXT = re.compile(r"rnc_([0-9a-f]{12})_([A-Za-z0-9_-]{32,128})")
_PROJECT = re.compile(r"[^\s\x00-\x1f]{1,200}")
# last_used_at is written at most this often per token, not on every request.
TOUCH_EVERY = 60.0
# Compared against when the id is unknown, so an unknown id costs what a wrong secret does.
_NO_HASH = hashlib.sha256(b"no such token").hexdigest()


@dataclass(frozen=True)
class MadeToken:
    token: Token
    text: str  # the whole bearer token; not kept anywhere


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(text: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed token text, else None."""
    match = _TEXT.fullmatch(text)
    return (match.group(1), match.group(2)) if match else None


def matches(token: Token | None, secret: str) -> bool:
    """Whether ``secret`` is the token's, in constant time (also when there is no token)."""
    stored = token.secret_hash if token is not None else _NO_HASH
    same = hmac.compare_digest(hash_secret(secret), stored)
    return same and token is not None


def token_store(store: Store) -> TokenStore:
    tokens = store.tokens
    if tokens is None:
        raise UnsupportedFeature(
            f"{store.description} keeps no API tokens; use the sqlite, postgresql or mongodb store"
        )
    return tokens


def tokens_of(runtime: Runtime) -> TokenStore:
    """The token store of a runtime's store (a part of the runtime)."""
    return token_store(runtime.store)


def _tokens(config: ConfigArg) -> TokenStore:
    return runtime(config).part(tokens_of)


def check_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise UsageError(
            f"scope {unknown[0]!r} is unknown; use {', '.join(SCOPES)}"
            if unknown
            else f"a token needs at least one scope: {', '.join(SCOPES)}"
        )
    return tuple(sorted(set(scopes), key=SCOPES.index))


def check_projects(projects: Sequence[str]) -> tuple[str, ...]:
    for project in projects:
        if not _PROJECT.fullmatch(project):
            raise UsageError(f"project {project!r} is not a project id (1-200 printable chars)")
    return tuple(dict.fromkeys(projects))


def create_token(
    name: str,
    scopes: Sequence[str],
    projects: Sequence[str] = (),
    *,
    config: ConfigArg = None,
) -> MadeToken:
    """Make a token; its text (``MadeToken.text``) is not stored and cannot be shown again."""
    if not name.strip() or len(name) > 200:
        raise UsageError("a token's name must be 1-200 characters")
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    made = _tokens(config).create(
        NewToken(
            token_id, name, hash_secret(secret), check_scopes(scopes), check_projects(projects)
        )
    )
    return MadeToken(made, f"{PREFIX}{token_id}_{secret}")


def list_tokens(*, config: ConfigArg = None) -> list[Token]:
    return _tokens(config).list()


def revoke_token(token_id: str, *, config: ConfigArg = None) -> Token:
    """Revoke by id (a whole token text is accepted too); revoking twice is harmless."""
    parsed = parse(token_id)
    wanted = parsed[0] if parsed else token_id
    token = _tokens(config).revoke(wanted)
    if token is None:
        raise UsageError(f"no token has the id {wanted!r}; `runce tokens list` shows them")
    return token


class LastUsed:
    """Decides when a token's ``last_used_at`` is written: at most every :data:`TOUCH_EVERY`
    seconds per token and process, so a busy token does not cost a write per request."""

    def __init__(self) -> None:
        self._written: dict[str, float] = {}
        self._mutex = threading.Lock()

    def due(self, token_id: str) -> bool:
        now = time.monotonic()
        with self._mutex:
            if now - self._written.get(token_id, -TOUCH_EVERY) < TOUCH_EVERY:
                return False
            self._written[token_id] = now
            return True
