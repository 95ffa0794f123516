"""The SQL of the PostgreSQL store, kept in ``.sql`` files beside this module.

``tasks.sql`` (once tasks and the lock) and ``runs.sql`` (the run queue) hold named
statements (``-- name: foo`` starts one); ``migrations/`` holds the numbered schema
migrations. All write runce's schema as ``{schema}``: it is filled in with
:class:`psycopg.sql.Identifier`, never by formatting text, and parameters are ``%(name)s``
placeholders bound by the driver. A statement named ``part_foo`` is a piece of others (say
a common table expression two statements share), put in where they write ``{part_foo}``.
"""

from __future__ import annotations

import os
from functools import cache

from psycopg import sql

from runce.stores.sql import files as sql_files

_FOLDER = os.path.dirname(os.path.abspath(__file__))
# The numbered schema migrations, oldest first (their names, latest version and texts).
MIGRATIONS = sql_files.Migrations(os.path.join(_FOLDER, "migrations"))
_QUERY_FILES = ("tasks.sql", "runs.sql", "schedules.sql", "tokens.sql", "backfills.sql")
_PART = "part_"


def query(name: str, schema: str) -> sql.Composed:
    """The statement named ``name`` in the ``.sql`` files, for runce's tables in ``schema``."""
    return _composed(_queries()[name], schema)


def migration(name: str, schema: str) -> sql.Composed:
    """The DDL of one migration file, for ``schema``."""
    return _composed(MIGRATIONS.text(name), schema)


def record_migration(name: str, schema: str) -> sql.Composed:
    """The statement that counts ``name`` as applied (literals from our own file names)."""
    template = sql.SQL(_queries()["record_migration"])
    return template.format(
        schema=sql.Identifier(schema),
        version=sql.Literal(sql_files.migration_version(name)),
        name=sql.Literal(name),
    )


@cache
def _queries() -> dict[str, str]:
    return sql_files.load_named_queries(_FOLDER, _QUERY_FILES)


def query_with(name: str, schema: str, **pieces: sql.Composable) -> sql.Composed:
    """A statement whose other placeholders (``{filters}``, say) the caller fills in."""
    text = _queries()[name]
    return sql.SQL(text).format(schema=sql.Identifier(schema), **_parts_of(text, schema), **pieces)


@cache
def _composed(text: str, schema: str) -> sql.Composed:
    return sql.SQL(text).format(schema=sql.Identifier(schema), **_parts_of(text, schema))


def _parts_of(text: str, schema: str) -> dict[str, sql.Composed]:
    return {
        name: _composed(part, schema)
        for name, part in _queries().items()
        if name.startswith(_PART) and f"{{{name}}}" in text
    }
