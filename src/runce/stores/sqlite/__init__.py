"""The SQLite store (``sqlite:///path.db``): runce's embedded default, on the stdlib driver."""

from runce.stores.sqlite.store import SQLiteStore, open_store

__all__ = ["SQLiteStore", "open_store"]
