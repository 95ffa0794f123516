"""The schema version of runce's schema in one database, and the migrations that bring it
up to date.

The version is the highest row of ``schema_version``: 0 while the schema or that table does
not exist. Migrations run in one transaction holding ``pg_advisory_xact_lock`` on a key
derived from the schema name, and re-read the version once they hold it, so of many
processes starting at once on an empty database one migrates and the others find the work
done. ``CREATE SCHEMA`` runs inside that lock too (two concurrent ``CREATE SCHEMA IF NOT
EXISTS`` can still collide), and only when the schema is missing, so a schema a DBA made
needs no right to create schemas.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from runce.domain.schema import SchemaStatus
from runce.errors import SchemaError
from runce.stores.postgres.location import Target
from runce.stores.postgres.queries import MIGRATIONS, migration, query, record_migration
from runce.stores.sql import schema as sql_schema

Connection = psycopg.Connection[Any]


def read_version(conn: Connection, target: Target) -> int:
    """The schema's version (0 when missing); refuses a version newer than this runce."""
    if not _fetch_value(conn, query("version_table_exists", target.schema), _named(target)):
        return 0
    version = int(_fetch_value(conn, query("schema_version", target.schema)))
    refuse_newer(version, target)
    return version


def refuse_newer(version: int, target: Target) -> None:
    latest = MIGRATIONS.latest
    if version > latest:
        raise SchemaError(
            f"the PostgreSQL store at {target.where} has schema {target.schema} at version "
            f"{version}, newer than the {latest} this runce knows; upgrade runce to use it"
        )


def status(version: int) -> SchemaStatus:
    return sql_schema.status(version, MIGRATIONS.names)


def ensure_current(conn: Connection, target: Target, *, auto_migrate: bool) -> None:
    """Before a write: migrate, or refuse when migrating is off."""
    version = read_version(conn, target)
    if version == MIGRATIONS.latest:
        return
    if not auto_migrate:
        raise SchemaError(
            f"the PostgreSQL store at {target.where} has schema {target.schema} at version "
            f"{version} and this runce needs {MIGRATIONS.latest}; run `runce db upgrade` "
            "(auto_migrate is off)"
        )
    apply_pending(conn, target)


def apply_pending(conn: Connection, target: Target) -> list[str]:
    """Apply every migration newer than the schema's version under the migration lock."""
    with conn.transaction():
        conn.execute(query("migration_lock", target.schema), {"key": target.migration_key})
        if not _fetch_value(conn, query("schema_exists", target.schema), _named(target)):
            conn.execute(query("create_schema", target.schema))
        pending = status(read_version(conn, target)).pending
        for name in pending:
            conn.execute(migration(name, target.schema))
            conn.execute(record_migration(name, target.schema))
    return list(pending)


def schema_sql(schema: str) -> str:
    """Every migration's DDL for ``schema``, each under a header naming its file."""
    parts = [_statement(query("create_schema_if_missing", schema))]
    for name in MIGRATIONS.names:
        ddl = migration(name, schema).as_string(None).strip()
        parts.append(f"-- {name}\n{ddl}\n{_statement(record_migration(name, schema))}")
    return "\n".join(parts)


def _statement(statement: sql.Composed) -> str:
    """One statement as text ending in exactly one semicolon and a newline."""
    return statement.as_string(None).strip().rstrip(";") + ";\n"


def _named(target: Target) -> dict[str, str]:
    return {"schema": target.schema}


def _fetch_value(
    conn: Connection, statement: sql.Composed, params: dict[str, str] | None = None
) -> Any:
    row = conn.execute(statement, params).fetchone()
    assert row is not None  # these statements always return one row
    return row[0]
