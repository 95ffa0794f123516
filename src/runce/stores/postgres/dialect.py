"""The PostgreSQL store's side of the dialect seam (:mod:`runce.stores.sql.dialect`): named
statements for the store's schema, each its own transaction on an autocommit connection
(the statements read the server's ``now()``), ``%(name)s`` parameters bound by psycopg,
``timestamptz``, ``boolean`` and ``text[]`` values as psycopg adapts them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from runce.stores.postgres.connection import Connection, Database
from runce.stores.postgres.rows import utc
from runce.stores.sql.dialect import Row


class PostgresCodecs:
    """Times, flags and lists of text, as psycopg adapts them."""

    def time(self, moment: datetime) -> datetime:
        return moment

    def read_time(self, value: Any) -> datetime:
        moment: datetime = utc(value)
        return moment

    def flag(self, value: bool) -> bool:
        return value

    def texts(self, values: Sequence[str]) -> list[str]:
        return list(values)

    def read_texts(self, value: Any) -> tuple[str, ...]:
        return tuple(value)


CODECS = PostgresCodecs()


class PostgresDialect(PostgresCodecs):
    def __init__(self, db: Database) -> None:
        self._db = db

    def read(self, name: str, params: Mapping[str, Any], *, needs: int, what: str) -> list[Row]:
        return self._db.read(
            lambda conn: self._rows(conn, name, params), empty=[], what=what, needs=needs
        )

    def write(self, name: str, params: Mapping[str, Any], *, what: str) -> int:
        def work(conn: Connection) -> int:
            return conn.execute(self._db.sql(name), params or None).rowcount

        return self._db.write(work, what=what, transaction=False)

    def write_rows(self, name: str, params: Mapping[str, Any], *, what: str) -> list[Row]:
        return self._db.write(
            lambda conn: self._rows(conn, name, params), what=what, transaction=False
        )

    def _rows(self, conn: Connection, name: str, params: Mapping[str, Any]) -> list[Row]:
        with conn.cursor(row_factory=dict_row) as cursor:
            return list(cursor.execute(self._db.sql(name), params or None).fetchall())
