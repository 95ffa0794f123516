"""One SQLite file: its connections, short write transactions, waiting out a busy file, and
sqlite3's exceptions turned into runce's.

Threads: connections are pooled and each is used by one thread at a time (so they are
opened with ``check_same_thread=False``); a thread takes one for a single read or write
transaction and gives it back. A transactional task gets a connection of its own.

Busy files: a write waits up to ``busy_timeout`` for the write lock, trying again every
0.1 to 2 ms (SQLite's own wait, which the connections do not use, sleeps 1, 2, 5, 10 and
up to 100 ms between tries, so a writer kept missing the lock of a busy one fell behind by
tens to hundreds of milliseconds). A statement that still finds the file busy (or a read
that does, in the rare cases WAL makes readers wait) is retried from ``BEGIN`` with a
growing random pause, for up to ``retry_for`` seconds in all.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

from runce.errors import StoreError, StoreUnavailable
from runce.stores.sqlite import schema

T = TypeVar("T")

BUSY_TIMEOUT = 10.0
RETRY_FOR = 30.0

# SQLite's primary result codes that mean "the file is not usable", not "the SQL is wrong".
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 10, 11, 13, 14, 26
_UNAVAILABLE = {
    _SQLITE_PERM,
    _SQLITE_BUSY,
    _SQLITE_LOCKED,
    _SQLITE_READONLY,
    _SQLITE_IOERR,
    _SQLITE_CORRUPT,
    _SQLITE_FULL,
    _SQLITE_CANTOPEN,
    _SQLITE_NOTADB,
}


class DatabaseBusy(StoreUnavailable):
    """Another process kept the file's write lock for longer than runce waits."""


class GaveUp(Exception):
    """A write stopped waiting for the file because its caller no longer needs it."""


class Database:
    """The SQLite file at ``path``: reads, short write transactions and long ones
    (docs/once-tasks.md#transactional-tasks)."""

    def __init__(
        self,
        path: Path,
        *,
        auto_migrate: bool,
        busy_timeout: float = BUSY_TIMEOUT,
        retry_for: float = RETRY_FOR,
        synchronous: str = "full",
    ) -> None:
        self.path = path
        self._auto_migrate = auto_migrate
        self._busy_timeout = busy_timeout
        self._synchronous = synchronous
        self._retry_for = retry_for
        self._pool = _Pool(lambda: self._open(create=False))
        self._prepared = False
        self._prepare_guard = threading.Lock()
        self._open_tokens: Counter[str | None] = Counter()  # open transactions by lease token
        self._tokens_guard = threading.Lock()

    # --- reads and writes -------------------------------------------------------------------

    def read(self, work: Callable[[sqlite3.Connection], T], *, empty: T, what: str) -> T:
        """Run ``work`` in a read transaction; ``empty`` when the file has no schema yet.

        Never creates the file or its directory, and never migrates.
        """
        with self.translated(what):
            if not self._file_exists():
                return empty
            with self._pool.connection() as conn:
                return self._retrying(
                    lambda: _tolerating_bad_text(conn, lambda: self._read_once(conn, work, empty))
                )

    def write(
        self,
        work: Callable[[sqlite3.Connection], T],
        *,
        what: str,
        migrate: bool = True,
        patience: float | None = None,
        give_up: Callable[[], bool] | None = None,
    ) -> T:
        """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction, after migrating if needed.

        ``patience`` shortens the wait for the write lock per try, and ``give_up`` is asked
        between tries; when it says so, :class:`GaveUp` is raised instead of trying again.
        """
        with self.translated(what):
            self._prepare(migrate)
            with self._pool.connection() as conn:
                return self._retrying(
                    lambda: _tolerating_bad_text(
                        conn, lambda: self._write_once(conn, work, migrate, patience)
                    ),
                    give_up,
                )

    @contextmanager
    def transaction(self, token: str | None, *, what: str) -> Iterator[sqlite3.Connection]:
        """A write transaction left open for the caller's block; committed on a clean exit.

        While it is open, :meth:`in_transaction_for` answers True for ``token``: this
        store holds the file's write lock, so nobody else can write, let alone take the lease.
        """
        with self.translated(what):
            self._prepare(migrate=True)
            conn = self._open(create=False)
        try:
            with self.translated(what):
                self._retrying(lambda: self._begin_write(conn, migrate=True))
            with self._holding(token):
                try:
                    yield conn
                except BaseException:
                    _rollback_quietly(conn)
                    raise
                with self.translated(what):
                    _commit(conn)
        finally:
            conn.close()

    @property
    def auto_migrate(self) -> bool:
        return self._auto_migrate

    def connect(self) -> sqlite3.Connection:
        """A connection outside the pool, for its caller alone; never creates the file."""
        return self._open(create=False)

    def in_transaction_for(self, token: str) -> bool:
        with self._tokens_guard:
            return self._open_tokens[token] > 0

    def in_any_transaction(self) -> bool:
        """Whether this store holds the file's write lock in a transaction
        (docs/once-tasks.md#transactional-tasks) now."""
        with self._tokens_guard:
            return sum(self._open_tokens.values()) > 0

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def translated(self, what: str) -> Iterator[None]:
        """Turn a sqlite3 exception into a runce one saying what failed, on which file."""
        try:
            yield
        except sqlite3.Error as exc:
            raise _translate(exc, what, self.path) from exc
        except OSError as exc:
            raise StoreUnavailable(
                f"could not {what} (SQLite store {self.path}): {exc.strerror or exc}"
            ) from exc

    # --- one try ----------------------------------------------------------------------------

    def _read_once(
        self, conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], empty: T
    ) -> T:
        conn.execute("BEGIN")
        try:
            version = schema.user_version(conn)
            schema.refuse_newer(version, self.path)
            return empty if version == 0 else work(conn)
        finally:
            _rollback_quietly(conn)

    def _write_once(
        self,
        conn: sqlite3.Connection,
        work: Callable[[sqlite3.Connection], T],
        migrate: bool,
        patience: float | None = None,
    ) -> T:
        self._begin_write(conn, migrate=migrate, patience=patience)
        try:
            result = work(conn)
            _commit(conn)
        except BaseException:
            _rollback_quietly(conn)
            raise
        return result

    def _begin_write(
        self, conn: sqlite3.Connection, *, migrate: bool, patience: float | None = None
    ) -> None:
        _take_write_lock(conn, self._busy_timeout if patience is None else patience)
        if not migrate:
            return
        try:
            schema.ensure_current(conn, self.path, auto_migrate=self._auto_migrate)
        except BaseException:
            _rollback_quietly(conn)
            raise

    def _retrying(self, attempt: Callable[[], T], give_up: Callable[[], bool] | None = None) -> T:
        deadline = time.monotonic() + self._retry_for
        pause = 0.002
        while True:
            if give_up is not None and give_up():
                raise GaveUp
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise DatabaseBusy(
                        f"the SQLite store {self.path} stayed locked by another connection "
                        f"for {self._retry_for:g} s"
                    ) from exc
            # Random pauses keep processes that collided from colliding again in step.
            time.sleep(random.uniform(0, pause))
            pause = min(pause * 2, 0.2)

    # --- the file ---------------------------------------------------------------------------

    def _file_exists(self) -> bool:
        if self.path.is_dir():
            raise StoreUnavailable(f"the SQLite store {self.path} is a directory, not a file")
        return self.path.exists()

    def _prepare(self, migrate: bool) -> None:
        """Before the first write: create the directory and the file, and switch to WAL."""
        with self._prepare_guard:
            if self._prepared:
                return
            if migrate and not self._auto_migrate and not self._file_exists():
                # Refuse before creating anything, rather than leave an empty file behind.
                schema.refuse_missing(self.path)
            self._make_directory()
            conn = self._create()
            try:
                # WAL lets readers (status, list, another runner's checks) go on during writes.
                self._retrying(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            finally:
                conn.close()
            self._prepared = True

    def _make_directory(self) -> None:
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                f"could not create the directory {parent} for the SQLite store {self.path}: "
                f"{exc.strerror or exc}"
            ) from exc
        if self.path.is_dir():
            raise StoreUnavailable(f"the SQLite store {self.path} is a directory, not a file")

    def _create(self) -> sqlite3.Connection:
        try:
            return self._open(create=True)
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"could not create or open the SQLite store {self.path} for writing: {exc} "
                "(is its directory writable?)"
            ) from exc

    def _open(self, *, create: bool) -> sqlite3.Connection:
        # mode=rw never creates the file: only the first write (create=True) may.
        mode = "rwc" if create else "rw"
        conn = sqlite3.connect(
            f"{self.path.as_uri()}?mode={mode}",
            uri=True,
            timeout=0,  # writes wait for the lock themselves: _take_write_lock
            isolation_level=None,
            check_same_thread=False,
        )
        if self._synchronous != "full":  # opted in: commits skip the fsync (see location.py)
            conn.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
        return conn

    @contextmanager
    def _holding(self, token: str | None) -> Iterator[None]:
        with self._tokens_guard:
            self._open_tokens[token] += 1
        try:
            yield
        finally:
            with self._tokens_guard:
                self._open_tokens[token] -= 1


class _Pool:
    """Idle connections kept for reuse; a connection serves one thread at a time."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._idle: list[sqlite3.Connection] = []
        self._in_use: set[sqlite3.Connection] = set()
        self._to_close: set[sqlite3.Connection] = set()
        self._guard = threading.Lock()
        self._pid = os.getpid()

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        conn = self._take()
        try:
            yield conn
        finally:
            self._give_back(conn)

    def close(self) -> None:
        """Close idle connections now, and those in use when they are given back."""
        with self._guard:
            idle, self._idle = self._idle, []
            self._to_close.update(self._in_use)
        for conn in idle:
            conn.close()

    def _take(self) -> sqlite3.Connection:
        with self._guard:
            if self._pid != os.getpid():
                # A forked child must not use its parent's connections: SQLite state does not
                # survive a fork. Forget them and open its own.
                self._idle, self._in_use, self._to_close = [], set(), set()
                self._pid = os.getpid()
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        with self._guard:
            self._in_use.add(conn)
        return conn

    def _give_back(self, conn: sqlite3.Connection) -> None:
        _rollback_quietly(conn)
        with self._guard:
            self._in_use.discard(conn)
            closing = conn in self._to_close
            self._to_close.discard(conn)
            if not closing:
                self._idle.append(conn)
        if closing:
            conn.close()


def _tolerating_bad_text(conn: sqlite3.Connection, attempt: Callable[[], T]) -> T:
    """``attempt()``; when a row holds text that is not UTF-8 (written around runce), the
    whole attempt again (its transaction was rolled back) reading such text as
    :func:`read_text` does, so that one bad row cannot stop the reads of all the others."""
    try:
        return attempt()
    except sqlite3.OperationalError as exc:
        if not str(exc).startswith("Could not decode to UTF-8"):
            raise
    conn.text_factory = read_text
    try:
        return attempt()
    finally:
        conn.text_factory = str


def read_text(data: bytes) -> str:
    """Text as stored, its bytes that are not UTF-8 kept as lone surrogates (U+DC80 to
    U+DCFF): the rows' readers tell them apart from text that is."""
    return data.decode("utf-8", "surrogateescape")


def _commit(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("COMMIT")
    except BaseException:
        _rollback_quietly(conn)
        raise


def _rollback_quietly(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is open; the error that got us here is the one to report."""
    if not conn.in_transaction:
        return
    with suppress(sqlite3.Error):
        conn.execute("ROLLBACK")


def _error_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


# Pauses between tries for the write lock: short at first (another writer's transaction
# usually holds it for well under a millisecond), never long, random so that waiting
# writers do not try in step.
_FIRST_PAUSE = 0.0001
_LONGEST_PAUSE = 0.002


def _take_write_lock(conn: sqlite3.Connection, patience: float) -> None:
    """``BEGIN IMMEDIATE``, trying again for up to ``patience`` seconds while the file is
    busy; the last busy error is raised when that time is up."""
    deadline: float | None = None
    pause = _FIRST_PAUSE
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + patience
            elif now >= deadline:
                raise
        time.sleep(random.uniform(pause / 2, pause))
        pause = min(pause * 2, _LONGEST_PAUSE)


def _is_busy(exc: sqlite3.Error) -> bool:
    code = _error_code(exc)
    if code is not None:
        return code in (_SQLITE_BUSY, _SQLITE_LOCKED)
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _translate(exc: sqlite3.Error, what: str, path: Path) -> StoreError:
    message = f"could not {what} (SQLite store {path}): {exc}"
    if _error_code(exc) in _UNAVAILABLE:
        return StoreUnavailable(message)
    return StoreError(message)
