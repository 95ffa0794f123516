"""The SQLite store: the embedded default, one file holding the tracker, the lock and the runs.

Nothing is created on opening: reads of a file that is not there read as empty, and the
first write creates the directory and the file and applies the migrations.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from runce.domain.schema import SchemaStatus
from runce.stores.base import StoreSpec
from runce.stores.sql.schedules import SqlSchedules
from runce.stores.sql.tokens import SqlTokens
from runce.stores.sqlite import schema
from runce.stores.sqlite.connection import BUSY_TIMEOUT, Database
from runce.stores.sqlite.dialect import SQLiteDialect
from runce.stores.sqlite.location import busy_timeout, database_path, synchronous, url_of
from runce.stores.sqlite.lock import SQLiteLock
from runce.stores.sqlite.tracker import SQLiteTracker

if TYPE_CHECKING:
    from runce.stores.registry import StoreFactory
    from runce.stores.sqlite.queue import SQLiteRunQueue


class SQLiteStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._tracker = SQLiteTracker(db)
        self._lock = SQLiteLock(db)
        self._runs: SQLiteRunQueue | None = None  # made on first use: once tasks never need it
        self._runs_guard = threading.Lock()
        self._schedules = SqlSchedules(SQLiteDialect(db))
        self._tokens = SqlTokens(SQLiteDialect(db))

    @property
    def description(self) -> str:
        return url_of(self._db.path)

    @property
    def path(self) -> str:
        return str(self._db.path)

    @property
    def tracker(self) -> SQLiteTracker:
        return self._tracker

    @property
    def lock(self) -> SQLiteLock:
        return self._lock

    @property
    def runs(self) -> SQLiteRunQueue:
        with self._runs_guard:
            if self._runs is None:
                from runce.stores.sqlite.queue import SQLiteRunQueue

                self._runs = SQLiteRunQueue(self._db)
            return self._runs

    @property
    def schedules(self) -> SqlSchedules:
        return self._schedules

    @property
    def tokens(self) -> SqlTokens:
        return self._tokens

    @property
    def supports_transactions(self) -> bool:
        return True

    def schema_status(self) -> SchemaStatus:
        version = self._db.read(schema.user_version, empty=0, what="read the schema version")
        return schema.status(version)

    def upgrade(self) -> list[str]:
        return self._db.write(
            lambda conn: schema.apply_pending(conn, self._db.path),
            what="upgrade the schema",
            migrate=False,
        )

    def schema_sql(self) -> str:
        return schema.schema_sql()

    def close(self) -> None:
        if self._runs is not None:
            self._runs.close()
        self._db.close()


def open_store(spec: StoreSpec) -> SQLiteStore:
    """Open (never create) the SQLite store a spec names."""
    db = Database(
        database_path(spec),
        auto_migrate=spec.auto_migrate,
        busy_timeout=busy_timeout(spec, BUSY_TIMEOUT),
        synchronous=synchronous(spec),
    )
    return SQLiteStore(db)


if TYPE_CHECKING:
    # mypy checks here that the store fulfils the Store protocol, tracker and lock included.
    _factory: StoreFactory = open_store
