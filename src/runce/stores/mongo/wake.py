"""Waking idle workers on MongoDB without polling the server, where it can.

Every enqueue, retry and requeue moves the wake signal (``{_id: "~wake", seq}`` in the
workers collection). A process's waiters on one runs collection share one :class:`Watch`:

* where the server has change streams (a replica set, a sharded cluster), a thread of the
  watch holds a change stream on the signal's document open: the server answers its
  ``getMore`` as soon as the signal moves, or after :data:`WATCH_WAIT` seconds of nothing,
  so an idle worker costs one command every few seconds and still wakes at once;
* elsewhere (a standalone server refuses ``$changeStream``), the waiters read the signal
  themselves, every 25 ms after a change and less often while nothing changes (see
  ``MongoRunQueue.wait_for_work``).

A stream that breaks is opened again (with a growing pause); meanwhile the waiters poll.

Enqueues and retries made in this process also set an event that wakes this process's
waiters at once (:func:`waker`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import InvalidOperation, OperationFailure, PyMongoError

from runce.stores.mongo.connection import Connection

log = logging.getLogger("runce.store")

WAKE_ID = "~wake"  # the wake signal's document in the workers collection
WATCH_WAIT = 30.0  # seconds the server holds a getMore of the stream when nothing moves
RETRY_MAX = 30.0  # seconds between tries to open a broken stream again, at most
# A getMore answered with nothing within EARLY seconds is followed by EARLY_PAUSE seconds
# of rest: a change meanwhile is still read by the next one (the stream keeps its place).
EARLY = 0.5
EARLY_PAUSE = 0.1

# Same-process wake-ups, shared by every store object on one runs collection.
_wakers: dict[tuple[str, str, str], threading.Event] = {}
_wakers_guard = threading.Lock()
_watches: dict[tuple[str, ...], Watch] = {}
_watches_guard = threading.Lock()


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


class Watch:
    """A change stream on one wake signal, kept open by a daemon thread, that sets
    ``waker`` whenever the signal moves."""

    def __init__(self, workers: Collection[Any], signal_id: str, waker: threading.Event) -> None:
        self._workers = workers
        self._signal_id = signal_id
        self._waker = waker
        self.watching = False  # the stream is open: waiters need not poll
        self.unsupported = False  # the server has no change streams: waiters poll for good
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="runce-mongo-watch", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._closed.set()

    def _run(self) -> None:
        pause = 0.5
        opened_before = False
        pipeline = [{"$match": {"documentKey._id": self._signal_id}}]
        wait_ms = int(WATCH_WAIT * 1000)
        while not self._closed.is_set():
            try:
                with self._workers.watch(pipeline, max_await_time_ms=wait_ms) as stream:
                    self.watching = True
                    if opened_before:  # the signal may have moved while the stream was down
                        self._waker.set()
                    opened_before = True
                    pause = 0.5
                    while not self._closed.is_set():
                        began = time.monotonic()
                        if stream.try_next() is not None:
                            self._waker.set()
                        elif time.monotonic() - began < EARLY:
                            # Answered at once with nothing (a server that does not hold
                            # the getMore, or another document of the collection moved):
                            # a short pause, so that such a server is never asked in a loop.
                            self._closed.wait(EARLY_PAUSE)
            except InvalidOperation:  # the client was closed: so is this watch
                self.watching = False
                return
            except OperationFailure as exc:
                self.watching = False
                if not opened_before:  # a standalone server: no change streams here
                    log.debug("no change streams (%s): idle workers poll the wake signal", exc)
                    self.unsupported = True
                    return
            except PyMongoError as exc:  # the server went away: poll until it is back
                log.debug("the wake signal's change stream broke: %s", exc)
            self.watching = False
            self._closed.wait(pause)
            pause = min(pause * 2, RETRY_MAX)


def watch_for(
    key: tuple[str, ...], workers: Collection[Any], signal_id: str, waker: threading.Event
) -> Watch:
    """The process's watch of one wake signal, started on first use (and again after its
    client was closed)."""
    with _watches_guard:
        watch = _watches.get(key)
        if watch is None or not (watch.alive or watch.unsupported):
            watch = _watches[key] = Watch(workers, signal_id, waker)
        return watch
