"""The SQL of the SQLite store, kept in ``.sql`` files beside this module.

``tasks.sql`` (once tasks and the lock) and ``runs.sql`` (the run queue) hold named
statements (``-- name: foo`` starts one); ``migrations/`` holds the numbered schema
migrations, applied in order and counted in ``PRAGMA user_version``.
"""

from __future__ import annotations

import os
import sqlite3
from functools import cache
from typing import Any

from runce.stores.sql import files as sql_files

_FOLDER = os.path.dirname(os.path.abspath(__file__))
# The numbered schema migrations, oldest first (their names, latest version and texts).
MIGRATIONS = sql_files.Migrations(os.path.join(_FOLDER, "migrations"))
_QUERY_FILES = ("tasks.sql", "runs.sql", "schedules.sql", "tokens.sql", "backfills.sql")


def query(name: str) -> str:
    """The statement named ``name`` in one of the query files."""
    return _queries()[name]


@cache
def _queries() -> dict[str, str]:
    return sql_files.load_named_queries(_FOLDER, _QUERY_FILES)


def split_statements(script: str) -> list[str]:
    """Cut a script into statements, so it can run inside an open transaction.

    ``executescript`` would commit the caller's transaction first; ``complete_statement``
    knows where a trigger's ``BEGIN ... END`` ends, which a split on ``;`` does not.
    """
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip() and not _only_comments(pending):
        statements.append(pending.strip())
    return statements


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in text.splitlines())


def fetch_rows(
    conn: sqlite3.Connection, name: str, params: dict[str, Any] | None = None
) -> list[sqlite3.Row]:
    """The rows of the statement ``name``, by column name whatever the connection returns
    (without changing the connection's rows)."""
    cursor = conn.cursor()
    cursor.row_factory = sqlite3.Row
    # fetchall: a RETURNING statement is only finished once its rows are all read.
    rows: list[sqlite3.Row] = cursor.execute(query(name), params or {}).fetchall()
    return rows


def clock(conn: sqlite3.Connection) -> str:
    """SQLite's clock as runce writes times, read once per transaction."""
    cursor = conn.cursor()
    cursor.row_factory = None
    now: str = cursor.execute(query("now")).fetchone()[0]
    return now
