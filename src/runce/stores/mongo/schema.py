"""The MongoDB store's "schema": the indexes runce needs, created idempotently.

Collections need no DDL, so the schema version is how far the indexes exist: each migration
is a set of indexes (1: the once tasks' ``applied`` and ``history``; 2: the run queue's
``runs`` and ``run_attempts``; 3: ``schedules``; 4: the HTTP API's ``tokens``), and the
version is the last migration whose indexes, and all earlier ones', are all there. Reads
never create anything (a missing database reads as empty); the first write creates every
index unless ``auto_migrate`` is off, and ``runce db upgrade`` creates them on demand.
Indexes are recognised by their keys, not their names, and keep MongoDB's default names, so
an index the seed's tool made on ``id`` counts and does not clash.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import OperationFailure

from runce.domain.schema import SchemaStatus
from runce.errors import SchemaError
from runce.stores.mongo.connection import Connection, Document

MIGRATIONS = (
    "0001_once_tasks",
    "0002_runs",
    "0003_schedules",
    "0004_tokens",
    "0005_runs_finished",
    "0006_flow_control",
    "0007_runs_queued",
    "0008_workers_seen",
)
LATEST = len(MIGRATIONS)
Keys = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Index:
    collection: str  # a role: "applied", "history", "runs", "run_attempts", "schedules", ...
    keys: Keys
    unique: bool = False
    partial: Mapping[str, Any] | None = None
    purpose: str = ""
    alternatives: tuple[Keys, ...] = field(default=())  # keys that do the same job
    version: int = 1  # the migration (1-based) that brings the index

    def options(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"unique": True} if self.unique else {}
        if self.partial is not None:
            extra["partialFilterExpression"] = dict(self.partial)
        return extra


_OPEN_FALLBACK: Keys = (("status", 1), ("startedAt", 1))
INDEXES: tuple[Index, ...] = (
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
_CLAIM_PATH: Keys = (("state", 1), ("priority", -1), ("runAt", 1), ("_id", 1))
RUN_INDEXES = (
    Index(
        "runs",
        _CLAIM_PATH,
        partial={"state": "queued"},
        purpose="the claim path: queued runs by priority desc, runAt, id "
        "(a plain index where partial indexes fail)",
        alternatives=(_CLAIM_PATH,),
        version=2,
    ),
    Index(
        "runs",
        (("idempotencyKey", 1),),
        unique=True,
        partial={"idempotencyKey": {"$type": "string"}},
        purpose="one run per idempotency key",
        version=2,
    ),
    Index("runs", (("state", 1), ("leaseExpiresAt", 1)), purpose="expired leases", version=2),
    Index("runs", (("projectId", 1), ("createdAt", -1)), purpose="a project's runs", version=2),
    Index("runs", (("kind", 1), ("createdAt", -1)), purpose="runs of a kind", version=2),
    Index("runs", (("state", 1), ("createdAt", -1)), purpose="runs in a state", version=2),
    Index("runs", (("createdAt", -1), ("_id", -1)), purpose="newest first", version=2),
    Index("runs", (("correlationId", 1),), purpose="runs by correlation id", version=2),
    Index("run_attempts", (("runId", 1),), purpose="one run's attempts", version=2),
)
SCHEDULE_INDEXES = (
    Index(
        "schedules",
        (("enabled", 1), ("nextRunAt", 1)),
        purpose="enabled schedules by next tick",
        version=3,
    ),
)
TOKEN_INDEXES = (
    Index("tokens", (("createdAt", 1), ("_id", 1)), purpose="tokens oldest first", version=4),
)
FINISHED_INDEXES = (
    Index("runs", (("finishedAt", 1),), purpose="runs by the time they finished", version=5),
)
FLOW_INDEXES = (
    Index(
        "runs",
        (("kind", 1), ("state", 1), ("concurrencyKey", 1)),
        purpose="flow control: a kind's running runs per key, and its due runs",
        version=6,
    ),
)
_QUEUED_BY_KIND: Keys = (("state", 1), ("kind", 1), ("runAt", 1))
COUNT_INDEXES = (
    Index(
        "runs",
        _QUEUED_BY_KIND,
        partial={"state": "queued"},
        purpose="counts: the kinds with queued runs, their queued runs and oldest due one "
        "(a plain index where partial indexes fail)",
        alternatives=(_QUEUED_BY_KIND,),
        version=7,
    ),
)
WORKER_INDEXES = (
    Index(
        "workers",
        (("state", 1), ("lastSeen", 1)),
        purpose="workers not stopped, the last stopped ones, and those a prune deletes",
        version=8,
    ),
)
INDEXES = (
    INDEXES
    + RUN_INDEXES
    + SCHEDULE_INDEXES
    + TOKEN_INDEXES
    + FINISHED_INDEXES
    + FLOW_INDEXES
    + COUNT_INDEXES
    + WORKER_INDEXES
)
_ROLES = ("applied", "history", "runs", "run_attempts", "schedules", "tokens", "workers")


class Schema:
    def __init__(self, conn: Connection, *, auto_migrate: bool) -> None:
        self._conn = conn
        self._auto_migrate = auto_migrate
        self._ready = False
        self._guard = threading.Lock()

    def status(self) -> SchemaStatus:
        with self._conn.translated("read the indexes"):
            missing = {index.version for index in self._missing()}
        current = min(missing, default=LATEST + 1) - 1
        return SchemaStatus(
            current=current,
            latest=LATEST,
            applied=MIGRATIONS[:current],
            pending=MIGRATIONS[current:],
        )

    def upgrade(self) -> list[str]:
        with self._conn.translated("create the indexes"):
            missing = self._missing()
            for index in missing:
                _create(self._collection(index), index)
        with self._guard:
            self._ready = True
        return [MIGRATIONS[v - 1] for v in sorted({index.version for index in missing})]

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
                        "runs": _collection_doc(location.runs, "runs"),
                        "run_attempts": _collection_doc(location.run_attempts, "run_attempts"),
                        "workers": _collection_doc(location.workers, "workers"),
                        "schedules": _collection_doc(location.schedules, "schedules"),
                        "tokens": _collection_doc(location.tokens, "tokens"),
                        # Keyed by _id: no index beyond MongoDB's own.
                        "checkpoints": {"name": location.checkpoints, "indexes": []},
                        "controls": {"name": location.controls, "indexes": []},
                    },
                },
                indent=2,
            )
            + "\n"
        )

    def _missing(self) -> list[Index]:
        present = {name: _existing(self._collection_named(name)) for name in _ROLES}
        return [index for index in INDEXES if not _satisfied(index, present[index.collection])]

    def _collection(self, index: Index) -> Collection[Document]:
        return self._collection_named(index.collection)

    def _collection_named(self, name: str) -> Collection[Document]:
        return {
            "applied": self._conn.applied,
            "history": self._conn.history,
            "runs": self._conn.runs,
            "run_attempts": self._conn.run_attempts,
            "schedules": self._conn.schedules,
            "tokens": self._conn.tokens,
            "workers": self._conn.workers,
        }[name]

    def _needs_upgrade(self) -> str:
        return (
            f"the MongoDB store {self._conn.location.description} lacks runce's indexes "
            f"(this runce needs schema version {LATEST}); run `runce db upgrade` "
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
