"""Storage: the contract (:mod:`runce.stores.base`), the registry and one module per backend;
stores on an application's own connections (:mod:`runce.stores.existing`).

The names below load on first use, so that importing a module of one backend (the command
line's fast path reads SQLite through :mod:`runce.stores.sqlite.glance`) loads no other.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runce.stores.existing import from_mongo, from_postgres_pool, from_sqlite

__all__ = ["from_mongo", "from_postgres_pool", "from_sqlite"]


def __getattr__(name: str) -> object:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from runce.stores import existing

    return getattr(existing, name)
