"""The PostgreSQL store's side of the dialect seam (:mod:`runce.stores.sql.dialect`): named
statements for the store's schema, each its own transaction on an autocommit connection
(the statements read the server's ``now()``), ``%(name)s`` parameters bound by psycopg,
``timestamptz``, ``boolean`` and ``text[]`` values as psycopg adapts them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from runce.domain.locks import Lease
from runce.stores.postgres.connection import Connection, Database
from runce.stores.postgres.lock import PostgresLock
from runce.stores.postgres.rows import utc
from runce.stores.sql.dialect import Row

T = TypeVar("T")


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

    def json(self, value: Any) -> Jsonb:
        return Jsonb(value)

    def read_json(self, value: Any) -> Any:
        return value  # psycopg reads jsonb

    def seconds(self, seconds: float) -> float:
        return float(seconds)


CODECS = PostgresCodecs()


class PostgresSteps:
    """Named statements on one connection (``%(name)s`` parameters bound by psycopg)."""

    def __init__(self, conn: Connection, db: Database) -> None:
        self._conn = conn
        self._db = db

    def run(self, name: str, params: Mapping[str, Any]) -> int:
        return self._conn.execute(self._db.sql(name), params or None).rowcount

    def row(self, name: str, params: Mapping[str, Any]) -> Row | None:
        with self._conn.cursor(row_factory=dict_row) as cursor:
            return cursor.execute(self._db.sql(name), params or None).fetchone()


class PostgresDialect(PostgresCodecs):
    """Writes under a lease run on the lease's own lock session (``lock``), so they happen
    only while the lock is held; the others are short transactions on the store's
    connection, or one statement alone."""

    def __init__(self, db: Database, lock: PostgresLock) -> None:
        self._db = db
        self._lock = lock

    @property
    def where(self) -> str:
        return f"the PostgreSQL store at {self._db.target.where}"

    def fenced(
        self,
        lease: Lease | None,
        work: Callable[[PostgresSteps], T],
        *,
        what: str,
        single: bool = False,
    ) -> T:
        def steps(conn: Connection) -> T:
            return work(PostgresSteps(conn, self._db))

        if lease is None:
            return self._db.write(steps, what=what, transaction=not single)
        return self._lock.fenced(lease, steps, what=what)

    def read(self, name: str, params: Mapping[str, Any], *, needs: int, what: str) -> list[Row]:
        return self._db.read(
            lambda conn: self._rows(conn, name, params), empty=[], what=what, needs=needs
        )

    def write(self, name: str, params: Mapping[str, Any], *, what: str) -> int:
        return self.fenced(None, lambda steps: steps.run(name, params), what=what, single=True)

    def write_rows(self, name: str, params: Mapping[str, Any], *, what: str) -> list[Row]:
        return self._db.write(
            lambda conn: self._rows(conn, name, params), what=what, transaction=False
        )

    def _rows(self, conn: Connection, name: str, params: Mapping[str, Any]) -> list[Row]:
        with conn.cursor(row_factory=dict_row) as cursor:
            return list(cursor.execute(self._db.sql(name), params or None).fetchall())
