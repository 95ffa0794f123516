"""Stores on what an application already has, without writing a URL: an SQLite file's path,
a psycopg connection pool, a pymongo client or database.

Each returns a :class:`~runce.stores.base.StoreSpec`, the value of the ``store`` key::

    # runce_config.py
    config = runce.define_config(store=runce.stores.from_mongo(app.mongo_client["shop"]))

The application keeps ownership: runce never closes a pool or client it was given.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote, urlencode

from runce.errors import ConfigError
from runce.stores.base import StoreSpec

# Keyword arguments of psycopg.connect that are not libpq connection parameters.
_NOT_LIBPQ = frozenset(
    {"autocommit", "prepare_threshold", "row_factory", "cursor_factory", "context"}
)


def from_sqlite(path: str | os.PathLike[str]) -> StoreSpec:
    """The SQLite store in this file (relative to the configuration's folder)."""
    return StoreSpec(type="sqlite", options={"path": os.fspath(path)})


def from_postgres_pool(pool: Any) -> StoreSpec:
    """The PostgreSQL store on a ``psycopg_pool.ConnectionPool``'s database.

    runce's reads and writes borrow the pool's connections (one per call); what needs a
    session of its own for long (the lock, a worker's LISTEN, a transactional task) opens
    its own connection with the pool's connection parameters.
    """
    if not callable(getattr(pool, "connection", None)) or not hasattr(pool, "conninfo"):
        raise ConfigError(
            f"from_postgres_pool needs a psycopg_pool.ConnectionPool, not {type(pool).__name__}"
        )
    return StoreSpec(type="postgresql", url=pool_url(pool), options={"pool": pool})


def pool_url(pool: Any) -> str:
    """The pool's connection parameters (its conninfo and keyword arguments) as a URL."""
    from psycopg.conninfo import conninfo_to_dict

    extra = {k: v for k, v in (pool.kwargs or {}).items() if k not in _NOT_LIBPQ}
    params = {k: str(v) for k, v in conninfo_to_dict(pool.conninfo, **extra).items()}
    user, password = params.pop("user", ""), params.pop("password", "")
    host, port = params.pop("host", ""), params.pop("port", "")
    if "," in host or host.startswith("/"):
        params["host"], host = host, ""  # several hosts, or a socket folder: as a parameter
    database = quote(params.pop("dbname", ""), safe="")
    credentials = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    netloc = (credentials + "@" if credentials else "") + host + (":" + port if port else "")
    return f"postgresql://{netloc}/{database}" + ("?" + urlencode(params) if params else "")


def from_mongo(client_or_database: Any, database: str | None = None) -> StoreSpec:
    """The MongoDB store on a ``pymongo.MongoClient`` (naming ``database``) or a
    ``pymongo.database.Database``; Motor's clients and databases give the pymongo object
    underneath."""
    from pymongo import MongoClient
    from pymongo.database import Database

    handle = client_or_database
    if not isinstance(handle, MongoClient | Database):
        # Motor's objects wrap pymongo's (a pymongo Database would answer any attribute
        # with a collection, so this is asked only of what is not pymongo's)
        handle = getattr(handle, "delegate", handle)

    name: str | None
    if isinstance(handle, Database):
        client, name = handle.client, database or handle.name
    elif isinstance(handle, MongoClient):
        client, name = handle, database
    else:
        raise ConfigError(
            "from_mongo needs a pymongo MongoClient or Database (or Motor's), "
            f"not {type(client_or_database).__name__}"
        )
    if not name:
        raise ConfigError("from_mongo(client) needs the database's name: from_mongo(client, 'app')")
    hosts = ",".join(
        f"{host}:{port}" for host, port in client.topology_description.server_descriptions()
    )
    return StoreSpec(
        type="mongodb", options={"client": client, "db": name, "uri": f"mongodb://{hosts}/{name}"}
    )
