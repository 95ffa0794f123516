"""The global lock (docs/once-tasks.md#the-lock) as one lease document ``{_id: "global",
leaseUntil, owner, token, …}``.

Taking it is ONE conditional upsert: ``_id`` is "global" AND (``leaseUntil`` < now OR
``token`` is ours). When the document exists and matches neither, the upsert's insert
collides on ``_id``: a duplicate-key error, meaning someone else holds it. "Now" is the
server's clock (see :mod:`.connection`), passed as a literal, so every runner compares
leases against one clock whatever its own says. A holder that is a dead process on this
machine is replaced at once, by a second update conditional on that holder's exact token.

Fencing: a write under a lease checks that the document still carries the lease's token.
On a server with transactions the check is a write to the lock document inside the same
short transaction as the records (see :func:`claim`), so nobody can take the lock between
the check and the write. See :func:`check` for standalone servers.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from pymongo import ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.errors import DuplicateKeyError

from runce.domain.locks import Lease, LockHolder, Owner
from runce.errors import LockHeld, LockLost
from runce.stores.liveness import process_alive
from runce.stores.mongo.connection import Connection, Document
from runce.stores.mongo.documents import LOCK_ID, holder_from, lease_document
from runce.stores.mongo.schema import Schema


class MongoLock:
    def __init__(self, conn: Connection, schema: Schema) -> None:
        self._conn = conn
        self._schema = schema

    def try_acquire(self, owner: Owner, ttl: float) -> Lease | None:
        self._schema.prepare()  # the first write of a run: fail on a missing schema before it
        with self._conn.translated("take the lock"):
            now = self._conn.server_now()
            token = secrets.token_hex(16)
            lease = lease_document(token, owner, now, ttl)
            taken = self._take(lease, now) or self._take_from_the_dead(lease)
        if taken is None or taken.get("token") != token:
            return None
        return Lease(token=token, owner=owner, acquired_at=now, ttl=ttl)

    def renew(self, lease: Lease) -> bool:
        with self._conn.translated("renew the lock"):
            until = self._conn.server_now() + timedelta(seconds=lease.ttl)
            result = self._conn.lock.update_one(
                {"_id": LOCK_ID, "token": lease.token}, {"$set": {"leaseUntil": until}}
            )
        return result.matched_count == 1

    def release(self, lease: Lease) -> None:
        with self._conn.translated("release the lock"):
            self._conn.lock.delete_one({"_id": LOCK_ID, "token": lease.token})

    def holder(self) -> LockHolder | None:
        with self._conn.translated("read the lock holder"):
            doc = self._conn.lock.find_one({"_id": LOCK_ID})
            return None if doc is None else holder_from(doc, self._conn.server_now())

    def clear(self, *, force: bool = False) -> LockHolder | None:
        current = self.holder()
        if current is None:
            return None
        if current.state == "live" and not force:
            raise LockHeld(
                f"the lock is held by {current.describe()}, which is alive; wait for it to "
                "finish, or clear it with force"
            )
        with self._conn.translated("clear the lock"):
            # Only the lease we looked at: one taken meanwhile is somebody's live lease.
            result = self._conn.lock.delete_one({"_id": LOCK_ID, "token": current.token})
        return current if result.deleted_count == 1 else None

    def _take(self, lease: Document, now: datetime) -> Document | None:
        try:
            return self._conn.lock.find_one_and_update(
                {"_id": LOCK_ID, "$or": [{"leaseUntil": {"$lt": now}}, {"token": lease["token"]}]},
                {"$set": lease},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            return None  # the document exists and its lease is live (or was just taken)

    def _take_from_the_dead(self, lease: Document) -> Document | None:
        current = self._conn.lock.find_one({"_id": LOCK_ID})
        if (
            current is None
            or process_alive(current.get("machine"), current.get("pid")) is not False
        ):
            return None
        return self._conn.lock.find_one_and_update(
            {"_id": LOCK_ID, "token": current.get("token")},
            {"$set": lease},
            return_document=ReturnDocument.AFTER,
        )


def _dead(doc: Document) -> bool:
    return process_alive(doc.get("machine"), doc.get("pid")) is False


def claim(conn: Connection, lease: Lease | None, session: ClientSession) -> None:
    """Inside a write transaction, first of all: raise LockLost unless ``lease`` is current.

    It writes the lock document (a counter), which makes the transaction hold that document
    until it commits: a runner taking the lock meanwhile waits, or its transaction fails
    with a write conflict. So the token cannot change between this check and the commit.
    """
    if lease is None:
        return
    result = conn.lock.update_one(
        {"_id": LOCK_ID, "token": lease.token}, {"$inc": {"writes": 1}}, session=session
    )
    if result.matched_count != 1:
        raise LockLost(lost_message())


def check(conn: Connection, lease: Lease | None, session: ClientSession | None = None) -> None:
    """Raise LockLost unless the lock document still carries ``lease``'s token.

    Without a transaction (standalone servers) this is a read just before the write, and a
    window remains: the lease can lapse and be taken between the check and the write. The
    writes keep it harmless: a history document is inserted under its own ``attemptId``,
    a finish only changes a document still ``started`` (the next holder first closes a dead
    runner's attempt as ``interrupted``, so a late finish then matches nothing and writes
    nothing), and the applied document is written after the history one.
    """
    if lease is None:
        return
    found = conn.lock.find_one({"_id": LOCK_ID, "token": lease.token}, {"_id": 1}, session=session)
    if found is None:
        raise LockLost(lost_message())


def lost_message() -> str:
    return (
        "this runner's lease on the lock is gone (it expired and was taken, or was "
        "cleared), so nothing was written"
    )
