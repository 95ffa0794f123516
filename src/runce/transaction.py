"""The connection a transactional once task gets as ``ctx.db``: everything but the end.

runce commits a transactional task's work in one transaction with its applied record, or
rolls both back. A task that committed by itself and then failed would keep its work while
its record says FAILED, and run again. So ``ctx.db`` is a thin wrapper around the store's
connection (``sqlite3`` or ``psycopg``) that forwards everything (``execute``, ``cursor``,
``executemany``, ``row_factory``, ...) but refuses, with a :class:`~runce.errors.UsageError`,
what would end runce's transaction: ``commit()``, ``rollback()``, ``close()``,
``executescript()``, ``with ctx.db:``, changing ``isolation_level`` or ``autocommit``, and
``COMMIT``/``ROLLBACK``/``BEGIN``/``END`` statements, also through its cursors. MongoDB's
``ctx.session`` is pymongo's own ``ClientSession`` (pymongo accepts nothing else):
:func:`session_guarded` refuses its ``commit_transaction()``, ``abort_transaction()`` and
the like while the task runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from runce.errors import UsageError

_ENDING_METHODS = frozenset({"commit", "rollback", "close", "executescript"})
_ENDING_SETTINGS = frozenset({"isolation_level", "autocommit"})
# A statement that ends (or nests) the transaction; ROLLBACK TO a savepoint is allowed.
_ENDING_SQL = re.compile(r"^\s*(COMMIT|END|BEGIN|ROLLBACK(?!\s+TO\b))\b", re.IGNORECASE)
_SESSION_ENDING = (
    "commit_transaction",
    "abort_transaction",
    "start_transaction",
    "with_transaction",
    "end_session",
)


def _refuse(what: str) -> NoReturn:
    raise UsageError(
        f"{what} is refused in a transactional task: runce commits the task's work together "
        "with its applied record when run() returns, and rolls both back when it raises"
    )


def _check_sql(statement: object, where: str) -> None:
    text = statement.decode(errors="replace") if isinstance(statement, bytes) else statement
    if isinstance(text, str) and (found := _ENDING_SQL.match(text)):
        _refuse(f"{where}({found.group(1).upper()!r} ...)")


def _checking(method: Any, where: str) -> Any:
    def call(statement: Any, *args: Any, **kwargs: Any) -> Any:
        _check_sql(statement, where)
        return method(statement, *args, **kwargs)

    return call


class TaskConnection:
    """``ctx.db``: the store's connection inside runce's transaction, minus ending it.

    Attributes and methods not named in this module's docstring are the connection's own
    (``execute``, ``cursor``, ``row_factory``, ...), typed as ``Any``.
    """

    __slots__ = ("_connection",)

    def __init__(self, connection: Any) -> None:
        object.__setattr__(self, "_connection", connection)

    def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        _check_sql(statement, "ctx.db.execute")
        return self._connection.execute(statement, *args, **kwargs)

    def cursor(self, *args: Any, **kwargs: Any) -> TaskCursor:
        return TaskCursor(self._connection.cursor(*args, **kwargs), self)

    def __getattr__(self, name: str) -> Any:
        if name in _ENDING_METHODS:
            _refuse(f"ctx.db.{name}()")
        found = getattr(self._connection, name)
        if name == "executemany":  # sqlite3 has it, psycopg's connections do not
            return _checking(found, "ctx.db.executemany")
        return found

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _ENDING_SETTINGS:
            _refuse(f"setting ctx.db.{name}")
        setattr(self._connection, name, value)

    def __enter__(self) -> NoReturn:
        _refuse("`with ctx.db:` (which commits or closes on exit)")

    def __exit__(self, *exc_info: object) -> None:  # never entered
        return None

    def __repr__(self) -> str:
        return f"<runce TaskConnection around {self._connection!r}>"


class TaskCursor:
    """A cursor of ``ctx.db``: the connection's own, checking statements as ``ctx.db`` does;
    its ``connection`` is ``ctx.db`` again, not the connection underneath."""

    __slots__ = ("_cursor", "connection")

    def __init__(self, cursor: Any, connection: TaskConnection) -> None:
        object.__setattr__(self, "_cursor", cursor)
        object.__setattr__(self, "connection", connection)

    def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        _check_sql(statement, "ctx.db.cursor().execute")
        result = self._cursor.execute(statement, *args, **kwargs)
        return self if result is self._cursor else result  # chained calls stay checked

    def executemany(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        _check_sql(statement, "ctx.db.cursor().executemany")
        result = self._cursor.executemany(statement, *args, **kwargs)
        return self if result is self._cursor else result

    def executescript(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("ctx.db.cursor().executescript()")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._cursor, name, value)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def __enter__(self) -> TaskCursor:
        self._cursor.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        return self._cursor.__exit__(*exc_info)


def unwrap(connection: Any) -> Any:
    """The connection underneath ``ctx.db`` (for ``runce.enqueue(connection=ctx.db)``)."""
    if isinstance(connection, TaskConnection):
        return object.__getattribute__(connection, "_connection")
    return connection


@contextmanager
def session_guarded(session: Any) -> Iterator[Any]:
    """While the block runs, ``session``'s methods that end its transaction are refused."""

    def refuser(name: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> NoReturn:
            _refuse(f"ctx.session.{name}()")

        return refused

    shadowed = []
    for name in _SESSION_ENDING:
        try:
            setattr(session, name, refuser(name))
        except (AttributeError, TypeError):  # a session that cannot be guarded: left as is
            continue
        shadowed.append(name)
    try:
        yield session
    finally:
        for name in shadowed:
            delattr(session, name)
