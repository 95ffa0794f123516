"""Cron schedules (docs/runs.md#cron-schedules) in ``runce.schedules``: one document per
schedule, ``_id`` its name.

The input is kept as its canonical JSON text (``inputJson``): a secret reference such as
``{"$secret": "NAME"}`` is not a valid field name in every MongoDB version, and the text
tells a worker exactly whether a declaration changed. Times are the server's clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from runce.domain.schedules import Schedule, ScheduleDefinition
from runce.stores.mongo.connection import Connection, Document
from runce.stores.mongo.documents import aware
from runce.stores.mongo.schema import Schema


class MongoSchedules:
    def __init__(self, conn: Connection, schema: Schema) -> None:
        self._conn = conn
        self._schema = schema
        self._docs = conn.schedules

    def insert(self, definition: ScheduleDefinition, next_run_at: datetime) -> bool:
        with self._conn.translated(f"add schedule {definition.name!r}"):
            self._schema.prepare()
            now = self._conn.server_now()
            doc = {
                "_id": definition.name,
                **_definition_fields(definition),
                "enabled": True,
                "nextRunAt": next_run_at,
                "lastRunAt": None,
                "lastRunId": None,
                "createdAt": now,
                "updatedAt": now,
            }
            try:
                self._docs.insert_one(doc)
            except DuplicateKeyError:
                return False
            return True

    def update_definition(
        self, definition: ScheduleDefinition, next_run_at: datetime | None
    ) -> Schedule | None:
        changes: Document = _definition_fields(definition)
        if next_run_at is not None:
            changes["nextRunAt"] = next_run_at
        return self._change(definition.name, changes, what=f"update schedule {definition.name!r}")

    def get(self, name: str) -> Schedule | None:
        with self._conn.translated(f"read schedule {name!r}"):
            doc = self._docs.find_one({"_id": name})
        return None if doc is None else schedule_from(doc)

    def all(self) -> list[Schedule]:
        with self._conn.translated("list schedules"):
            return [schedule_from(doc) for doc in self._docs.find({}).sort("_id", 1)]

    def advance(self, name: str, tick: datetime, next_run_at: datetime, run_id: str) -> bool:
        with self._conn.translated(f"advance schedule {name!r}"):
            self._schema.prepare()
            result = self._docs.update_one(
                {"_id": name, "nextRunAt": tick},
                {
                    "$set": {
                        "nextRunAt": next_run_at,
                        "lastRunAt": tick,
                        "lastRunId": run_id,
                        "updatedAt": self._conn.server_now(),
                    }
                },
            )
            return result.modified_count > 0

    def set_enabled(
        self, name: str, enabled: bool, next_run_at: datetime | None = None
    ) -> Schedule | None:
        changes: Document = {"enabled": enabled}
        if next_run_at is not None:
            changes["nextRunAt"] = next_run_at
        verb = "enable" if enabled else "disable"
        return self._change(name, changes, what=f"{verb} schedule {name!r}")

    def _change(self, name: str, changes: Document, *, what: str) -> Schedule | None:
        with self._conn.translated(what):
            self._schema.prepare()
            doc = self._docs.find_one_and_update(
                {"_id": name},
                {"$set": {**changes, "updatedAt": self._conn.server_now()}},
                return_document=ReturnDocument.AFTER,
            )
        return None if doc is None else schedule_from(doc)


def schedule_from(doc: Document) -> Schedule:
    last_run_at: Any = doc.get("lastRunAt")
    return Schedule(
        name=doc["_id"],
        kind=doc["kind"],
        expression=doc["expression"],
        timezone=doc["timezone"],
        input_json=doc["inputJson"],
        enabled=bool(doc["enabled"]),
        next_run_at=aware(doc["nextRunAt"]),
        created_at=aware(doc["createdAt"]),
        updated_at=aware(doc["updatedAt"]),
        last_run_at=None if last_run_at is None else aware(last_run_at),
        last_run_id=doc.get("lastRunId"),
    )


def _definition_fields(definition: ScheduleDefinition) -> Document:
    return {
        "kind": definition.kind,
        "expression": definition.expression,
        "timezone": definition.timezone,
        "inputJson": definition.input_json,
    }
