"""The SQLite store's side of the dialect seam (:mod:`runce.stores.sql.dialect`): named
statements in short transactions on the store's file, ``:name`` parameters, times as
ISO-8601 text on SQLite's clock, flags as 0 and 1, lists of text as JSON arrays."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from runce.domain.locks import Lease
from runce.stores.sql.dialect import Row
from runce.stores.sqlite import schema
from runce.stores.sqlite.connection import Database
from runce.stores.sqlite.lock import fence
from runce.stores.sqlite.queries import clock, fetch_rows, query
from runce.stores.sqlite.rows import ttl_modifier
from runce.timeutil import from_iso, to_iso

T = TypeVar("T")


class SQLiteCodecs:
    """Times, flags and lists of text, ISO-8601 text, 0 and 1, JSON arrays."""

    def time(self, moment: datetime) -> str:
        return to_iso(moment)

    def read_time(self, value: Any) -> datetime:
        return from_iso(value)

    def flag(self, value: bool) -> int:
        return int(value)

    def texts(self, values: Sequence[str]) -> str:
        return json.dumps(list(values))

    def read_texts(self, value: Any) -> tuple[str, ...]:
        return tuple(json.loads(value))

    def json(self, value: Any) -> str:
        return json.dumps(value)

    def read_json(self, value: Any) -> Any:
        return json.loads(value)

    def seconds(self, seconds: float) -> str:
        return ttl_modifier(seconds)


CODECS = SQLiteCodecs()


class SQLiteSteps:
    """Named statements on one connection (``:name`` parameters), rows by column name."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def run(self, name: str, params: Mapping[str, Any]) -> int:
        changed: int = self._conn.execute(query(name), dict(params)).rowcount
        return changed

    def row(self, name: str, params: Mapping[str, Any]) -> Row | None:
        rows = fetch_rows(self._conn, name, dict(params))
        return dict(rows[0]) if rows else None


class SQLiteDialect(SQLiteCodecs):
    """Every write is one short transaction; one under a lease first checks, in that same
    transaction, that the lease is still the lock's (see :func:`lock.fence`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def where(self) -> str:
        return f"the SQLite store {self._db.path}"

    def fenced(
        self,
        lease: Lease | None,
        work: Callable[[SQLiteSteps], T],
        *,
        what: str,
        single: bool = False,
    ) -> T:
        def steps(conn: sqlite3.Connection) -> T:
            fence(conn, lease)
            return work(SQLiteSteps(conn))

        return self._db.write(steps, what=what)

    def read(self, name: str, params: Mapping[str, Any], *, needs: int, what: str) -> list[Row]:
        def work(conn: sqlite3.Connection) -> list[Row]:
            if schema.user_version(conn) < needs:  # reads never migrate
                return []
            return [dict(row) for row in fetch_rows(conn, name, dict(params))]

        return self._db.read(work, empty=[], what=what)

    def write(self, name: str, params: Mapping[str, Any], *, what: str) -> int:
        def work(conn: sqlite3.Connection) -> int:
            changed: int = conn.execute(query(name), {**params, "now": clock(conn)}).rowcount
            return changed

        return self._db.write(work, what=what)

    def write_rows(self, name: str, params: Mapping[str, Any], *, what: str) -> list[Row]:
        def work(conn: sqlite3.Connection) -> list[Row]:
            rows = fetch_rows(conn, name, {**params, "now": clock(conn)})
            return [dict(row) for row in rows]

        return self._db.write(work, what=what)
