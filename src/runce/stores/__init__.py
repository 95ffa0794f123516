"""Storage: the contract (:mod:`runce.stores.base`), the registry and one module per backend;
stores on an application's own connections (:mod:`runce.stores.existing`)."""

from runce.stores.existing import from_mongo, from_postgres_pool, from_sqlite

__all__ = ["from_mongo", "from_postgres_pool", "from_sqlite"]
