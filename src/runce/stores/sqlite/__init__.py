"""The SQLite store (``sqlite:///path.db``): runce's embedded default, on the stdlib driver.

The store loads on first use of its names, so that the command line's fast path
(:mod:`runce.stores.sqlite.glance`) loads only what it reads with.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runce.stores.sqlite.store import SQLiteStore, open_store

__all__ = ["SQLiteStore", "open_store"]


def __getattr__(name: str) -> object:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from runce.stores.sqlite import store

    return getattr(store, name)
