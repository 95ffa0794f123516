"""The MongoDB store (``mongodb://…``), on the official pymongo driver: the seeds' first tracker."""

from runce.stores.mongo.store import MongoStore, open_store

__all__ = ["MongoStore", "open_store"]
