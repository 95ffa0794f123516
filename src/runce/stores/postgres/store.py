"""The PostgreSQL store: opening it connects to nothing; the first read connects, and the
first write creates runce's schema and applies the migrations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runce.domain.schema import SchemaStatus
from runce.stores.base import StoreSpec
from runce.stores.postgres import schema
from runce.stores.postgres.connection import Database
from runce.stores.postgres.dialect import PostgresDialect
from runce.stores.postgres.location import connect_timeout, target_of
from runce.stores.postgres.lock import PostgresLock
from runce.stores.postgres.queue import PostgresRunQueue
from runce.stores.postgres.tracker import PostgresTracker
from runce.stores.sql.schedules import SqlSchedules
from runce.stores.sql.tokens import SqlTokens

if TYPE_CHECKING:
    from runce.stores.registry import StoreFactory


class PostgresStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = PostgresLock(db)
        dialect = PostgresDialect(db, self._lock)
        self._tracker = PostgresTracker(dialect, db, self._lock)
        self._runs = PostgresRunQueue(db)
        self._schedules = SqlSchedules(dialect)
        self._tokens = SqlTokens(dialect)

    @property
    def description(self) -> str:
        return self._db.target.description

    @property
    def schema(self) -> str:
        return self._db.target.schema

    @property
    def tracker(self) -> PostgresTracker:
        return self._tracker

    @property
    def lock(self) -> PostgresLock:
        return self._lock

    @property
    def runs(self) -> PostgresRunQueue:
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
        return schema.status(self._db.version())

    def upgrade(self) -> list[str]:
        return self._db.upgrade()

    def schema_sql(self) -> str:
        return schema.schema_sql(self._db.target.schema)

    def close(self) -> None:
        self._runs.close()
        self._lock.close()
        self._db.close()


def open_store(spec: StoreSpec) -> PostgresStore:
    """Open (never create) the PostgreSQL store a spec names."""
    db = Database(
        target_of(spec),
        auto_migrate=spec.auto_migrate,
        connect_timeout=connect_timeout(spec),
        pool=spec.options.get("pool"),  # runce.stores.from_postgres_pool
    )
    return PostgresStore(db)


if TYPE_CHECKING:
    # mypy checks here that the store fulfils the Store protocol, tracker and lock included.
    _factory: StoreFactory = open_store
