"""Statements sent through libpq directly (psycopg's ``pgconn``): prepared once per
connection, their parameters given as text, their results read in binary.

This is for the statement applications send most, one at a time: ``runce.enqueue`` of one
run. Through a psycopg cursor, converting the named placeholders, adapting each parameter
and building the cursor's result cost about 40 µs a call, as much as the rest of runce's
Python; here a call is one ``send_query_prepared`` and psycopg's own wait (which keeps
Ctrl-C cancelling the statement on the server). Errors are psycopg's, raised from the
server's result as psycopg raises them, so :meth:`Database.translated` turns them into
runce's as ever.

Values must be free of NUL characters (libpq sends text parameters as C strings): every
caller passes text that :mod:`runce.runs.limits` checked.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import generators
from psycopg.pq import DiagnosticField, ExecStatus
from psycopg.pq.abc import PGresult

from runce.stores.postgres.queries import query

Connection = psycopg.Connection[Any]

_PLACEHOLDER = re.compile(r"%\((\w+)\)[sb]")
_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# SQLSTATE 26000: the connection no longer has the statement (a pooler's DISCARD ALL, say).
_GONE = "26000"
# SQLSTATE 42P05: the connection has it already (prepared by another store object on a
# pool's connection): a statement's name is made from its text, so it is the same one.
_THERE = "42P05"


def numbered(text: str) -> tuple[str, tuple[str, ...]]:
    """A statement's ``%(name)s`` placeholders as ``$1``, ``$2``...: the text, and the
    names in the order of their numbers (a name used twice keeps its number)."""
    if "%%" in text:
        raise ValueError("a statement sent prepared cannot hold a literal %%")
    names: list[str] = []

    def number(found: re.Match[str]) -> str:
        name = found.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PLACEHOLDER.sub(number, text), tuple(names)


def text_value(value: object) -> bytes | None:
    """A parameter as PostgreSQL reads it in text: ``None`` is NULL."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, datetime):
        return value.isoformat().encode()
    if isinstance(value, dict):
        return json.dumps(value).encode()
    raise TypeError(f"no text form for a {type(value).__name__} parameter")


def timestamptz(result: PGresult, row: int, column: int) -> datetime:
    """A ``timestamptz`` value of a binary result (microseconds since 2000-01-01 UTC)."""
    data = result.get_value(row, column)
    if data is None:
        raise psycopg.DataError(f"column {column} of row {row} is NULL, a time was expected")
    return _POSTGRES_EPOCH + timedelta(microseconds=int.from_bytes(data, "big", signed=True))


class Prepared:
    """The named statements of one schema, each prepared on a connection the first time it
    runs there (and again should the connection have lost it). A statement's name on the
    server is made from its text, so two schemas' statements never share one."""

    def __init__(self, schema: str) -> None:
        self._schema = schema
        self._statements: dict[str, tuple[bytes, bytes, tuple[str, ...]]] = {}
        self._ready: weakref.WeakKeyDictionary[Connection, set[bytes]] = weakref.WeakKeyDictionary()
        self._mutex = threading.Lock()

    def run(self, conn: Connection, name: str, params: dict[str, object]) -> PGresult:
        """Run the statement ``name`` on ``conn`` (idle, autocommit) with ``params`` by
        name; the server's result, its rows in binary. A failure raises psycopg's error."""
        key, text, names = self._statement(name)
        values = [text_value(params[n]) for n in names]
        ready = self._on(conn)
        with conn.lock:
            if key not in ready:
                self._prepare(conn, key, text)
                ready.add(key)
            result = self._send(conn, key, values)
            if result.status == ExecStatus.FATAL_ERROR and _state(result) == _GONE:
                self._prepare(conn, key, text)
                result = self._send(conn, key, values)
        if result.status != ExecStatus.TUPLES_OK and result.status != ExecStatus.COMMAND_OK:
            raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
        return result

    def _statement(self, name: str) -> tuple[bytes, bytes, tuple[str, ...]]:
        found = self._statements.get(name)
        if found is None:
            text, names = numbered(query(name, self._schema).as_string(None))
            digest = hashlib.sha256(text.encode()).hexdigest()[:16]
            key = f"runce_{name}_{digest}".encode()
            found = self._statements[name] = (key, text.encode(), names)
        return found

    def _on(self, conn: Connection) -> set[bytes]:
        with self._mutex:
            ready = self._ready.get(conn)
            if ready is None:
                ready = self._ready[conn] = set()
            return ready

    def _prepare(self, conn: Connection, key: bytes, text: bytes) -> None:
        pgconn = conn.pgconn
        pgconn.send_prepare(key, text)
        for result in conn.wait(generators.execute(pgconn)):
            if result.status != ExecStatus.COMMAND_OK and _state(result) != _THERE:
                raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)

    def _send(self, conn: Connection, key: bytes, values: Sequence[bytes | None]) -> PGresult:
        pgconn = conn.pgconn
        pgconn.send_query_prepared(key, values, result_format=1)
        results: list[PGresult] = conn.wait(generators.execute(pgconn))
        return results[-1]


def _state(result: PGresult) -> str | None:
    code = result.error_field(DiagnosticField.SQLSTATE)
    return code.decode() if code else None
