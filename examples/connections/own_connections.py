"""Stores on what the application already has: no URL written twice.

python own_connections.py sqlite .runce/app.db
python own_connections.py postgres postgresql://app@db.internal/app
python own_connections.py mongo mongodb://mongo.internal:27017 app
"""

from __future__ import annotations

import sys

import runce


def on_sqlite(path: str) -> runce.Run:
    config = runce.define_config(store=runce.stores.from_sqlite(path))
    return runce.enqueue("report.build", {"month": "2025-06"}, config=config)


def on_postgres_pool(conninfo: str) -> runce.Run:
    from psycopg_pool import ConnectionPool

    with ConnectionPool(conninfo, min_size=1, max_size=4) as pool:  # the app's own pool
        config = runce.define_config(store=runce.stores.from_postgres_pool(pool))
        return runce.enqueue("report.build", {"month": "2025-06"}, config=config)


def on_mongo(url: str, database: str) -> runce.Run:
    import pymongo

    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(url)  # the app's own
    try:
        config = runce.define_config(store=runce.stores.from_mongo(client[database]))
        return runce.enqueue("report.build", {"month": "2025-06"}, config=config)
    finally:
        client.close()  # runce never closes a client it was given


if __name__ == "__main__":
    where, *rest = sys.argv[1:]
    made = {"sqlite": on_sqlite, "postgres": on_postgres_pool, "mongo": on_mongo}[where](*rest)
    print(made.state)
