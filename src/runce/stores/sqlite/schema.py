"""The schema version of one SQLite file, and the migrations that bring it up to date.

The version is ``PRAGMA user_version``: 0 on a file runce never wrote, else the number of
the last migration applied. Migrations run inside the caller's ``BEGIN IMMEDIATE``
transaction and re-read the version there, so of many processes starting at once on an
empty file one migrates and the others find the work done.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import NoReturn

from runce.domain.schema import SchemaStatus
from runce.errors import SchemaError
from runce.stores.sql import schema as sql_schema
from runce.stores.sql.files import migration_version
from runce.stores.sqlite.queries import (
    MIGRATIONS,
    query,
    split_statements,
)


def user_version(conn: sqlite3.Connection) -> int:
    cursor = conn.cursor()
    cursor.row_factory = None  # plain tuples, whatever a caller's connection is set to return
    version: int = cursor.execute(query("user_version")).fetchone()[0]
    return version


def refuse_newer(version: int, path: Path) -> None:
    latest = MIGRATIONS.latest
    if version > latest:
        raise SchemaError(
            f"the SQLite store {path} has schema version {version}, newer than the "
            f"{latest} this runce knows; upgrade runce to use it"
        )


def status(version: int) -> SchemaStatus:
    return sql_schema.status(version, MIGRATIONS.names)


def refuse_missing(path: Path) -> NoReturn:
    raise SchemaError(_needs_upgrade(path, 0))


def ensure_current(conn: sqlite3.Connection, path: Path, *, auto_migrate: bool) -> None:
    """Before a write, inside its transaction: migrate, or refuse when migrating is off."""
    version = user_version(conn)
    if version == MIGRATIONS.latest:
        return
    refuse_newer(version, path)
    if not auto_migrate:
        raise SchemaError(_needs_upgrade(path, version))
    apply_pending(conn, path)


def _needs_upgrade(path: Path, version: int) -> str:
    return (
        f"the SQLite store {path} has schema version {version} and this runce needs "
        f"{MIGRATIONS.latest}; run `runce db upgrade` (auto_migrate is off)"
    )


def apply_pending(conn: sqlite3.Connection, path: Path) -> list[str]:
    """Apply every migration newer than the file's version; return their names."""
    version = user_version(conn)
    refuse_newer(version, path)
    pending = status(version).pending
    for name in pending:
        for statement in split_statements(MIGRATIONS.text(name)):
            conn.execute(statement)
        # PRAGMA takes no parameters; the version is an int from a file name.
        conn.execute(f"PRAGMA user_version = {migration_version(name)}")
    return list(pending)


def schema_sql() -> str:
    """Every migration's DDL, each under a header naming its file, for applying by hand."""
    parts = [
        f"-- {name}\n{MIGRATIONS.text(name).strip()}\n"
        f"PRAGMA user_version = {migration_version(name)};\n"
        for name in MIGRATIONS.names
    ]
    return "\n".join(parts)
