"""One PostgreSQL database: runce's own connection to it, new connections for the lock and
for transactional tasks, the schema check before reads and writes, and psycopg's
exceptions turned into runce's.

Connections: a store object keeps one autocommit connection for its reads and its writes
without a lease, used by one thread at a time and opened on first use (so commands that
only print the store's description never connect). Writes run in short explicit
transactions on it (or, when they are a single statement, as that statement alone); it is
never left inside a transaction, so a task's ``CREATE INDEX CONCURRENTLY`` never waits for
it. A connection the server dropped is replaced on the next call. Every connection runce
opens names itself in ``pg_stat_activity`` (``runce store pid 123 host``; the lock's and the
run queue's say what they are for) unless the URL or ``PGAPPNAME`` names it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row
from psycopg.sql import Composed
from psycopg.types.json import set_json_loads

from runce.domain.runs import readable
from runce.errors import StoreError, StoreUnavailable
from runce.stores.postgres import schema
from runce.stores.postgres.location import Target
from runce.stores.postgres.prepared import Prepared
from runce.stores.postgres.queries import MIGRATIONS, query

T = TypeVar("T")
Connection = psycopg.Connection[Any]

_APPLICATION_NAME_BYTES = 63  # NAMEDATALEN - 1: the server cuts longer names
# SQLSTATE classes and codes meaning "the server or the connection is not usable".
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")
# libpq's words for why a connection could not be made, and what runce says instead.
_CONNECT_FAILURES = (
    ("connection refused", "the server is unreachable (connection refused)"),
    ("timeout expired", "the server did not answer in time (connection timed out)"),
    ("timed out", "the server did not answer in time (connection timed out)"),
    ("could not translate host name", "the host name could not be resolved"),
    ("name or service not known", "the host name could not be resolved"),
    ("no route to host", "the server is unreachable (no route to host)"),
    ("network is unreachable", "the server is unreachable (network unreachable)"),
    ("no such file or directory", "no server listens on the local socket"),
    ("password authentication failed", "authentication failed (wrong user name or password)"),
    ("no password supplied", "authentication failed (the server wants a password, none given)"),
    ("authentication failed", "authentication failed"),
    ("no pg_hba.conf entry", "the server refuses connections from this host and user"),
    ("too many clients", "the server has no free connection slots (too many clients)"),
    ("starting up", "the server is still starting up"),
    ("shutting down", "the server is shutting down"),
)


class Database:
    """runce's schema in one PostgreSQL database, seen through one connection."""

    def __init__(
        self, target: Target, *, auto_migrate: bool, connect_timeout: int, pool: Any = None
    ) -> None:
        self.target = target
        self._pool = pool  # the application's ConnectionPool: borrowed from, never closed
        self._auto_migrate = auto_migrate
        self._connect_timeout = connect_timeout
        self._conn: Connection | None = None
        self._guard = threading.Lock()
        self._closing = False  # closed while a call was in flight: close after it
        self._current = False  # seen at the latest version: stop checking
        self._names_itself = _names_itself(target.url)
        # The statements sent through libpq directly, prepared on each connection once.
        self.prepared = Prepared(target.schema)

    # --- connections ---------------------------------------------------------------------

    def connect(self, *, application_name: str | None = None, role: str = "store") -> Connection:
        """A new autocommit connection; a failure is one sentence naming the server.

        Its ``application_name`` (shown by ``pg_stat_activity``) is the one given, else the
        one the URL or ``PGAPPNAME`` sets, else ``runce <role> pid <pid> <host>``.
        """
        if application_name is None and not self._names_itself:
            application_name = default_application_name(role)
        extra: dict[str, Any] = {"application_name": application_name} if application_name else {}
        try:
            conn = psycopg.connect(
                self.target.url,
                autocommit=True,
                connect_timeout=self._connect_timeout,
                **extra,
            )
        except psycopg.Error as exc:
            raise StoreUnavailable(connect_failure(exc, self.target)) from exc
        # JSONB that Python cannot read back (nested too deeply, written around runce) becomes
        # an Unreadable value: one such row must not stop the reads of all the others.
        set_json_loads(_loads_or_unreadable, conn)
        return conn

    @contextmanager
    def session(self) -> Iterator[Connection]:
        """The store's own connection, for this thread alone until the block ends (with the
        application's pool: one of its connections, borrowed for the block)."""
        if self._pool is not None:
            with borrowed(self._pool) as lent:
                yield lent
            return
        with self._guard:
            conn = self._conn
            if conn is None or conn.closed:
                conn = self._conn = self.connect()
            try:
                yield conn
            finally:
                if conn.broken or conn.closed or self._closing:
                    conn.close()
                    self._conn, self._closing = None, False

    @contextmanager
    def own_session(self, what: str) -> Iterator[Connection]:
        """A connection for this block alone, apart from :meth:`session`'s (a transactional
        job holds it for its whole run, while the store's other calls go on)."""
        self.ensure_schema(what)
        if self._pool is not None:
            with self.translated(what), borrowed(self._pool) as lent:
                yield lent
            return
        conn = self.connect(role="job")
        try:
            yield conn
        finally:
            conn.close()

    def close(self) -> None:
        # Never waits for a call in flight (a server that never answers would hold a worker
        # stopping without it here): the call closes the connection on its way out.
        if not self._guard.acquire(blocking=False):
            self._closing = True
            return
        try:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        finally:
            self._guard.release()

    # --- reads and writes ----------------------------------------------------------------

    def read(self, work: Callable[[Connection], T], *, empty: T, what: str, needs: int = 1) -> T:
        """Run ``work``; ``empty`` while runce's schema is older than version ``needs`` (the
        one that brings the tables ``work`` reads): reads create nothing."""
        with self.translated(what), self.session() as conn:
            return empty if self._version(conn) < needs else work(conn)

    def write(self, work: Callable[[Connection], T], *, what: str, transaction: bool = True) -> T:
        """Run ``work`` in one transaction, after creating or upgrading the schema if needed.

        ``transaction=False`` for work that is one statement (its own transaction on this
        autocommit connection): it saves the round trips of ``BEGIN`` and ``COMMIT``.
        """
        with self.translated(what), self.session() as conn:
            self._ensure_current(conn)
            if not transaction:
                return work(conn)
            with conn.transaction():
                return work(conn)

    def plain(self, work: Callable[[Connection], T], *, what: str) -> T:
        """Run ``work`` needing nothing of runce's schema (the server's catalogs only)."""
        with self.translated(what), self.session() as conn:
            return work(conn)

    def ensure_schema(self, what: str) -> None:
        """Before a write on another connection: create or upgrade the schema if needed."""
        if self._current:
            return
        with self.translated(what), self.session() as conn:
            self._ensure_current(conn)

    @property
    def current(self) -> bool:
        """Whether the schema was seen at the latest version (nothing left to check)."""
        return self._current

    def version(self) -> int:
        with self.translated("read the schema version"), self.session() as conn:
            return self._version(conn)

    def upgrade(self) -> list[str]:
        with self.translated("upgrade the schema"), self.session() as conn:
            applied = schema.apply_pending(conn, self.target)
            self._current = True
            return applied

    def sql(self, name: str) -> Composed:
        """The named query for this store's schema."""
        return query(name, self.target.schema)

    @contextmanager
    def translated(self, what: str) -> Iterator[None]:
        """Turn a psycopg exception into a runce one saying what failed, on which server."""
        try:
            yield
        except psycopg.Error as exc:
            raise translate(exc, what, self.target) from exc

    # --- the schema ------------------------------------------------------------------------

    def _version(self, conn: Connection) -> int:
        if self._current:
            return MIGRATIONS.latest
        version = schema.read_version(conn, self.target)
        self._current = version == MIGRATIONS.latest
        return version

    def _ensure_current(self, conn: Connection) -> None:
        if self._current:
            return
        schema.ensure_current(conn, self.target, auto_migrate=self._auto_migrate)
        self._current = True


def _loads_or_unreadable(data: str | bytes) -> Any:
    # Bytes are decoded first: given bytes, json.loads works out their encoding, which takes
    # as long as the decoding itself; PostgreSQL sends UTF-8 (an error is a ValueError).
    return readable(_loads_utf8, data)


def _loads_utf8(data: str | bytes) -> Any:
    return json.loads(data.decode() if isinstance(data, bytes) else data)


@contextmanager
def borrowed(pool: Any) -> Iterator[Connection]:
    """A pool's connection set up as runce's own are (autocommit, tuples, server-side
    binding) for the block, and given back as it was."""
    with pool.connection() as conn:
        saved = (conn.autocommit, conn.row_factory, conn.cursor_factory)
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        conn.autocommit = True
        conn.row_factory, conn.cursor_factory = tuple_row, psycopg.Cursor
        try:
            yield conn
        finally:
            if not conn.closed and not conn.broken:
                conn.autocommit, conn.row_factory, conn.cursor_factory = saved


def default_application_name(role: str = "store") -> str:
    """``runce <role> pid <pid> <host>``, cut to what the server keeps (63 bytes)."""
    name = f"runce {role} pid {os.getpid()} {socket.gethostname()}"
    return name.encode()[:_APPLICATION_NAME_BYTES].decode(errors="ignore")


def _names_itself(url: str) -> bool:
    """Whether the URL (or the environment) already sets an ``application_name``."""
    try:
        named = bool(conninfo_to_dict(url).get("application_name"))
    except psycopg.Error:
        named = False
    return named or bool(os.environ.get("PGAPPNAME"))


def translate(exc: psycopg.Error, what: str, target: Target) -> StoreError:
    """A psycopg error as a runce one; the server's first line says what went wrong."""
    message = f"could not {what} (PostgreSQL store at {target.where}): {first_line(exc)}"
    if _is_unavailable(exc):
        return StoreUnavailable(message)
    return StoreError(message)


def connect_failure(exc: psycopg.Error, target: Target) -> str:
    """One sentence: which server could not be reached, and why."""
    text = str(exc).lower()
    reason = next((said for words, said in _CONNECT_FAILURES if words in text), None)
    if reason is None:
        if "does not exist" in text and "database" in text:
            reason = "the database does not exist"
        elif "does not exist" in text and "role" in text:
            reason = f"authentication failed ({first_line(exc)})"
        else:
            reason = first_line(exc)
    return f"could not connect to the PostgreSQL store at {target.where}: {reason}"


def first_line(exc: BaseException) -> str:
    """The server's message without libpq's prefixes and hints."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    line = (lines[0] if lines else type(exc).__name__).removeprefix("connection failed:").strip()
    if line.startswith("connection to server") and " failed: " in line:
        line = line.split(" failed: ", 1)[1]
    return line.replace("FATAL:  ", "").replace("ERROR:  ", "")


def _is_unavailable(exc: psycopg.Error) -> bool:
    state = exc.sqlstate
    if state is None:
        return isinstance(exc, psycopg.OperationalError)
    return state.startswith(_UNAVAILABLE_CLASSES)
