"""A glance at a SQLite store's once tasks, for the command line's fast path
(:mod:`runce.cli.quick`): the applied records of a store at rest, read with the store's
own queries and nothing but the standard library.

At rest means: the schema is at the version this runce ships, no attempt is open, and
(when asked) nobody holds the lock. Anything else, or anything that cannot be read, is
answered with None, and the full command takes over.
"""

from __future__ import annotations

import os
import sqlite3

from runce.stores.sqlite.queries import MIGRATIONS, query

# Paths that need no quoting in a file: URI (anything else is not glanced at).
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+,=@~")


def applied_at_rest(database: str, *, lock_free: bool) -> dict[str, sqlite3.Row] | None:
    """Task id -> applied record (``name``, ``checksum``, ``applied_at``, ``duration_ms``,
    ``status``...) of the store in the file ``database``, when it is at rest; else None."""
    if not set(database) <= _PLAIN or not os.path.isfile(database):
        return None
    try:
        conn = sqlite3.connect(f"file:{database}?mode=rw", uri=True, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        return _read(conn, lock_free)
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _read(conn: sqlite3.Connection, lock_free: bool) -> dict[str, sqlite3.Row] | None:
    conn.row_factory = sqlite3.Row
    conn.execute("BEGIN")  # one snapshot for every read below
    (version,) = conn.execute(query("user_version")).fetchone()
    if version != MIGRATIONS.latest or _any(conn, "open_attempts"):
        return None
    if lock_free and _any(conn, "lock_holder"):
        return None
    return {row["id"]: row for row in conn.execute(query("applied"))}


def _any(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute(query(name)).fetchone() is not None
