"""The MongoDB store's "schema": the indexes runce needs, created idempotently.

Collections need no DDL, so the schema version is whether the indexes exist: 1 when they
all do, 0 otherwise. Reads never create anything (a missing database reads as empty); the
first write creates the indexes unless ``auto_migrate`` is off, and ``runce db upgrade``
creates them on demand. Indexes are recognised by their keys, not their names, and keep
MongoDB's default names, so an index the seed's tool made on ``id`` counts and does not clash.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import OperationFailure

from runce.errors import SchemaError
from runce.stores.base import SchemaStatus
from runce.stores.mongo.connection import Connection, Document

LATEST = 1
MIGRATION = "0001_once_tasks"
Keys = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Index:
    collection: str  # "applied" or "history"
    keys: Keys
    unique: bool = False
    partial: Mapping[str, Any] | None = None
    purpose: str = ""
    alternatives: tuple[Keys, ...] = field(default=())  # keys that do the same job

    def options(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"unique": True} if self.unique else {}
        if self.partial is not None:
            extra["partialFilterExpression"] = dict(self.partial)
        return extra


_OPEN_FALLBACK: Keys = (("status", 1), ("startedAt", 1))
INDEXES = (
    Index("applied", (("id", 1),), unique=True, purpose="one document per task id"),
    Index("history", (("attemptId", 1),), unique=True, purpose="one document per attempt"),
    Index("history", (("taskId", 1), ("startedAt", 1)), purpose="one task's history"),
    Index(
        "history",
        (("startedAt", 1),),
        partial={"status": "started"},
        purpose="open attempts (a plain index on status, startedAt where partial indexes fail)",
        alternatives=(_OPEN_FALLBACK,),
    ),
)


class Schema:
    def __init__(self, conn: Connection, *, auto_migrate: bool) -> None:
        self._conn = conn
        self._auto_migrate = auto_migrate
        self._ready = False
        self._guard = threading.Lock()

    def status(self) -> SchemaStatus:
        with self._conn.translated("read the indexes"):
            current = LATEST if not self._missing() else 0
        done = current == LATEST
        return SchemaStatus(
            current=current,
            latest=LATEST,
            applied=(MIGRATION,) if done else (),
            pending=() if done else (MIGRATION,),
        )

    def upgrade(self) -> list[str]:
        with self._conn.translated("create the indexes"):
            missing = self._missing()
            for index in missing:
                _create(self._collection(index), index)
        with self._guard:
            self._ready = True
        return [MIGRATION] if missing else []

    def prepare(self) -> None:
        """Before this store's first write: create the indexes, or refuse when migrating is off."""
        with self._guard:
            if self._ready:
                return
            with self._conn.translated("create the indexes"):
                missing = self._missing()
                if missing and not self._auto_migrate:
                    raise SchemaError(self._needs_upgrade())
                for index in missing:
                    _create(self._collection(index), index)
            self._ready = True

    def describe(self) -> str:
        """The collections and indexes, as JSON, for teams who create them by hand."""
        location = self._conn.location
        return (
            json.dumps(
                {
                    "database": location.database,
                    "version": LATEST,
                    "collections": {
                        "applied": _collection_doc(location.applied, "applied"),
                        "history": _collection_doc(location.history, "history"),
                        "lock": {"name": location.lock, "indexes": []},
                    },
                },
                indent=2,
            )
            + "\n"
        )

    def _missing(self) -> list[Index]:
        present = {name: _existing(self._collection_named(name)) for name in ("applied", "history")}
        return [index for index in INDEXES if not _satisfied(index, present[index.collection])]

    def _collection(self, index: Index) -> Collection[Document]:
        return self._collection_named(index.collection)

    def _collection_named(self, name: str) -> Collection[Document]:
        return self._conn.applied if name == "applied" else self._conn.history

    def _needs_upgrade(self) -> str:
        return (
            f"the MongoDB store {self._conn.location.description} lacks runce's indexes "
            f"(schema version 0, this runce needs {LATEST}); run `runce db upgrade` "
            "(auto_migrate is off)"
        )


def _existing(collection: Collection[Document]) -> list[tuple[Keys, bool]]:
    # list_indexes on a collection that does not exist is empty, and creates nothing.
    return [
        (tuple((str(k), int(v)) for k, v in spec["key"].items()), bool(spec.get("unique")))
        for spec in collection.list_indexes()
    ]


def _satisfied(index: Index, present: list[tuple[Keys, bool]]) -> bool:
    keys = {index.keys, *index.alternatives}
    return any(found in keys and (unique or not index.unique) for found, unique in present)


def _create(collection: Collection[Document], index: Index) -> None:
    try:
        collection.create_index(list(index.keys), **index.options())
    except OperationFailure:
        if not index.alternatives:
            raise
        # A server without partial indexes (or an index on these keys already): a plain one.
        collection.create_index(list(index.alternatives[0]))


def _collection_doc(name: str, role: str) -> dict[str, Any]:
    return {
        "name": name,
        "indexes": [
            {"key": dict(i.keys), **i.options(), "purpose": i.purpose}
            for i in INDEXES
            if i.collection == role
        ],
    }
