"""The SQL of the SQLite store, kept in ``.sql`` files beside this module.

``queries.sql`` (once tasks and the lock) and ``runs.sql`` (the run queue) hold named
statements (``-- name: foo`` starts one); ``migrations/`` holds the numbered schema
migrations, applied in order and counted in ``PRAGMA user_version``.
"""

from __future__ import annotations

import sqlite3
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from runce.stores.base import iter_migration_names

_PACKAGE = files(__package__)
_NAME_MARK = "-- name:"
_QUERY_FILES = ("queries.sql", "runs.sql", "schedules.sql", "tokens.sql", "backfills.sql")


def query(name: str) -> str:
    """The statement named ``name`` in one of the query files."""
    return _queries()[name]


@cache
def _queries() -> dict[str, str]:
    found: dict[str, str] = {}
    for file_name in _QUERY_FILES:
        named = parse_named_queries(_PACKAGE.joinpath(file_name).read_text(encoding="utf-8"))
        twice = sorted(set(found) & set(named))
        if twice:
            raise RuntimeError(f"query names defined twice ({file_name}): {', '.join(twice)}")
        found.update(named)
    return found


def parse_named_queries(text: str) -> dict[str, str]:
    """Split a file of ``-- name: foo`` sections; comment lines are dropped."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(_NAME_MARK):
            current = found.setdefault(stripped.removeprefix(_NAME_MARK).strip(), [])
        elif current is not None and stripped and not stripped.startswith("--"):
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in found.items()}


def _migrations_dir() -> Traversable:
    return _PACKAGE.joinpath("migrations")


@cache
def migration_names() -> tuple[str, ...]:
    """Every migration file name, oldest first."""
    return tuple(iter_migration_names(entry.name for entry in _migrations_dir().iterdir()))


def migration_version(name: str) -> int:
    """The schema version a migration brings the database to: its file number."""
    return int(name[:4])


def latest_version() -> int:
    names = migration_names()
    return migration_version(names[-1]) if names else 0


def migration_sql(name: str) -> str:
    return _migrations_dir().joinpath(name).read_text(encoding="utf-8")


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


def fetch_rows(conn: sqlite3.Connection, name: str, params: dict[str, Any]) -> list[sqlite3.Row]:
    """The rows of the statement ``name``, by column name whatever the connection returns."""
    cursor = conn.cursor()
    cursor.row_factory = sqlite3.Row
    # fetchall: a RETURNING statement is only finished once its rows are all read.
    rows: list[sqlite3.Row] = cursor.execute(query(name), params).fetchall()
    return rows


def clock(conn: sqlite3.Connection) -> str:
    """SQLite's clock as runce writes times, read once per transaction."""
    cursor = conn.cursor()
    cursor.row_factory = None
    now: str = cursor.execute(query("now")).fetchone()[0]
    return now
