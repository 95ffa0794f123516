"""The wake signal of the MongoDB run queue: ``{_id: "~wake", seq}`` in the workers
collection, counted up by every enqueue, retry and requeue, anywhere. Waiting workers read
it every 25 ms; the claims keep the due runs they read until it moves. Enqueues and
retries made in this process also set an event that wakes this process's waiters at once.
"""

from __future__ import annotations

import threading
from typing import Any

from runce.stores.mongo.connection import Connection

WAKE_ID = "~wake"  # the wake signal's document in the workers collection

# Same-process wake-ups, shared by every store object on one runs collection.
_wakers: dict[tuple[str, str, str], threading.Event] = {}
_wakers_guard = threading.Lock()


def waker(conn: Connection) -> threading.Event:
    key = (conn.location.url, conn.location.database, conn.location.runs)
    with _wakers_guard:
        return _wakers.setdefault(key, threading.Event())


def wake_signal(conn: Connection) -> Any:
    """The wake signal's count: moved by every enqueue, retry and requeue, anywhere."""
    doc = conn.workers.find_one({"_id": WAKE_ID}, {"seq": 1})
    return None if doc is None else doc.get("seq")


def wake_others(conn: Connection, event: threading.Event) -> None:
    """Move the wake signal (other processes) and wake waiters in this process."""
    conn.workers.update_one({"_id": WAKE_ID}, {"$inc": {"seq": 1}}, upsert=True)
    event.set()
