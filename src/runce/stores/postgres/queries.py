"""The SQL of the PostgreSQL store, kept in ``.sql`` files beside this module.

``queries.sql`` holds named statements (``-- name: foo`` starts one); ``migrations/`` holds
the numbered schema migrations. Both write runce's schema as ``{schema}``: it is filled in
with :class:`psycopg.sql.Identifier`, never by formatting text, and parameters are
``%(name)s`` placeholders bound by the driver.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable

from psycopg import sql

from runce.stores.base import iter_migration_names
from runce.stores.sqlite.queries import parse_named_queries

_PACKAGE = files(__package__)


def query(name: str, schema: str) -> sql.Composed:
    """The statement named ``name`` in ``queries.sql``, for runce's tables in ``schema``."""
    return _composed(_queries()[name], schema)


def migration(name: str, schema: str) -> sql.Composed:
    """The DDL of one migration file, for ``schema``."""
    return _composed(migration_text(name), schema)


def record_migration(name: str, schema: str) -> sql.Composed:
    """The statement that counts ``name`` as applied (literals from our own file names)."""
    template = sql.SQL(_queries()["record_migration"])
    return template.format(
        schema=sql.Identifier(schema),
        version=sql.Literal(migration_version(name)),
        name=sql.Literal(name),
    )


@cache
def _queries() -> dict[str, str]:
    return parse_named_queries(_PACKAGE.joinpath("queries.sql").read_text(encoding="utf-8"))


@cache
def _composed(text: str, schema: str) -> sql.Composed:
    return sql.SQL(text).format(schema=sql.Identifier(schema))


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


@cache
def migration_text(name: str) -> str:
    return _migrations_dir().joinpath(name).read_text(encoding="utf-8")
