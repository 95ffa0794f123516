"""The MongoDB store (``mongodb://host:port/database``, ``mongodb+srv://…``, or the seed's
``tracker = { type = "mongo", options = { uri, db, … } }``): tracker, lock, run queue and
indexes.

Opening a store contacts nobody and creates nothing: reads of a database that does not
exist read as empty, and the first write creates the indexes (see :mod:`.schema`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo import MongoClient

from runce.domain.schema import SchemaStatus
from runce.errors import ConfigError
from runce.stores.base import StoreSpec
from runce.stores.mongo.connection import Connection
from runce.stores.mongo.location import location_of
from runce.stores.mongo.lock import MongoLock
from runce.stores.mongo.queue import MongoRunQueue
from runce.stores.mongo.schedules import MongoSchedules
from runce.stores.mongo.schema import Schema
from runce.stores.mongo.tokens import MongoTokens
from runce.stores.mongo.tracker import MongoTracker

if TYPE_CHECKING:
    from runce.stores.registry import StoreFactory


class MongoStore:
    def __init__(self, conn: Connection, *, auto_migrate: bool) -> None:
        self._conn = conn
        self._schema = Schema(conn, auto_migrate=auto_migrate)
        self._tracker = MongoTracker(conn, self._schema)
        self._lock = MongoLock(conn, self._schema)
        self._runs = MongoRunQueue(conn, self._schema)
        self._schedules = MongoSchedules(conn, self._schema)
        self._tokens = MongoTokens(conn, self._schema)

    @property
    def description(self) -> str:
        return self._conn.location.description

    @property
    def tracker(self) -> MongoTracker:
        return self._tracker

    @property
    def lock(self) -> MongoLock:
        return self._lock

    @property
    def runs(self) -> MongoRunQueue:
        """The run queue (``runce.runs``, ``runce.run_attempts``, ``runce.workers``)."""
        return self._runs

    @property
    def schedules(self) -> MongoSchedules:
        """Cron schedules (``runce.schedules``)."""
        return self._schedules

    @property
    def tokens(self) -> MongoTokens:
        """The HTTP API's bearer tokens (``runce.tokens``)."""
        return self._tokens

    @property
    def supports_transactions(self) -> bool:
        """True on a replica set or a sharded cluster; a standalone server has none."""
        return self._conn.transactions

    def schema_status(self) -> SchemaStatus:
        return self._schema.status()

    def upgrade(self) -> list[str]:
        return self._schema.upgrade()

    def schema_sql(self) -> str:
        return self._schema.describe()

    def close(self) -> None:
        self._conn.close()


def open_store(spec: StoreSpec, *, transactions: bool | None = None) -> MongoStore:
    """Open (never create) the MongoDB store a spec names.

    ``transactions`` overrides what the server says about itself (tests use False to run
    the standalone-server code paths on a replica set).
    """
    conn = Connection(location_of(spec), transactions=transactions, client=given_client(spec))
    return MongoStore(conn, auto_migrate=spec.auto_migrate)


def given_client(spec: StoreSpec) -> MongoClient[dict[str, Any]] | None:
    """The application's client (``runce.stores.from_mongo``), if the spec carries one."""
    client = spec.options.get("client")
    if client is None or isinstance(client, MongoClient):
        return client
    raise ConfigError(
        f"the MongoDB store's client option must be a pymongo MongoClient, not "
        f"{type(client).__name__}"
    )


if TYPE_CHECKING:
    # mypy checks here that the store fulfils the Store protocol, tracker and lock included.
    _factory: StoreFactory = open_store
