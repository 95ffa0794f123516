"""One MongoClient per store; what its server says about itself (its clock, whether it runs
transactions); short write transactions; and the driver's errors turned into runce's.

The client is opened lazily (``connect=False``): opening a store contacts nobody, so a
command that only prints the store's description works with the server down, and the
first real operation reports an unreachable server as one sentence.

The server's clock: "now" for leases is the server's time, read from ``hello``'s
``localTime`` and compared as a literal (never ``$$NOW`` in a query filter, which some
MongoDB-compatible servers evaluate wrongly). The offset between the server's clock and
ours is measured once and refreshed every :data:`CLOCK_REFRESH` seconds, so renewing a
lease costs one round trip, not two.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from bson.codec_options import CodecOptions
from pymongo import MongoClient
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from runce._version import __version__
from runce.errors import StoreUnavailable
from runce.stores.mongo.errors import translated
from runce.stores.mongo.location import Location
from runce.timeutil import utcnow

T = TypeVar("T")
Document = dict[str, Any]

SERVER_SELECTION_TIMEOUT_MS = 5000
_CODEC: CodecOptions[Document] = CodecOptions(document_class=dict, tz_aware=True, tzinfo=UTC)
CLOSE_WAIT = 0.2  # seconds a close waits for pymongo's own (ms when the server answers)
CLOCK_REFRESH = 30.0  # seconds; an idle worker reads the clock once per refresh
TRANSACTION_RETRY_FOR = 30.0
_COMMAND_NOT_FOUND = 59


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """What ``hello`` said: the server's clock against ours, and whether it has transactions."""

    clock_offset: timedelta
    transactions: bool
    read_at: float  # time.monotonic()


class Connection:
    """The client, the database's collections, and the server's facts."""

    def __init__(
        self,
        location: Location,
        *,
        transactions: bool | None = None,
        client: MongoClient[Document] | None = None,
    ) -> None:
        self.location = location
        self._owns_client = client is None  # the application's client is never closed here
        self.client = _open_client(location) if client is None else client
        # runce reads its times back aware, in UTC, whatever the given client decodes.
        database = self.client.get_database(location.database, codec_options=_CODEC)
        self.applied: Collection[Document] = database[location.applied]
        self.history: Collection[Document] = database[location.history]
        self.lock: Collection[Document] = database[location.lock]
        self.runs: Collection[Document] = database[location.runs]
        self.run_attempts: Collection[Document] = database[location.run_attempts]
        self.workers: Collection[Document] = database[location.workers]
        self.schedules: Collection[Document] = database[location.schedules]
        self.tokens: Collection[Document] = database[location.tokens]
        self.checkpoints: Collection[Document] = database[location.checkpoints]
        self.controls: Collection[Document] = database[location.controls]
        self._forced_transactions = transactions
        self._facts: ServerFacts | None = None
        self._facts_guard = threading.Lock()
        self._open_user_transactions = 0
        self._user_guard = threading.Lock()

    def translated(self, what: str) -> AbstractContextManager[None]:
        """Driver errors in the block become runce's, saying ``what`` failed and where."""
        timeout = self.client.options.server_selection_timeout
        return translated(what, self.location, timeout)

    # --- the server ----------------------------------------------------------------------

    def server_now(self) -> datetime:
        """The server's clock now (estimated from the measured offset), aware UTC."""
        return utcnow() + self._server_facts(max_age=CLOCK_REFRESH).clock_offset

    @property
    def transactions(self) -> bool:
        """Whether the server runs multi-document transactions (a replica set or mongos)."""
        if self._forced_transactions is not None:
            return self._forced_transactions
        with self.translated("ask the server whether it runs transactions"):
            return self._server_facts(max_age=math.inf).transactions

    def _server_facts(self, max_age: float) -> ServerFacts:
        with self._facts_guard:
            facts = self._facts
            if facts is None or time.monotonic() - facts.read_at > max_age:
                facts = self._facts = _read_facts(self.client)
            return facts

    # --- transactions --------------------------------------------------------------------

    def in_transaction(self, work: Callable[[ClientSession], T]) -> T:
        """Run ``work`` in one short transaction, run again whole after a write conflict
        (so ``work`` must only write through the session, never act outside).

        Not pymongo's ``with_transaction``: it also retries a server that is gone, for two
        minutes, where runce should say so after one server selection timeout.
        """
        deadline = time.monotonic() + TRANSACTION_RETRY_FOR
        pause = 0.005
        with self.client.start_session() as session:
            while True:
                try:
                    return _run_once(session, work)
                except PyMongoError as exc:
                    if not conflicted(exc) or time.monotonic() >= deadline:
                        raise
                # Random pauses keep writers that collided from colliding again in step.
                time.sleep(random.uniform(0, pause))
                pause = min(pause * 2, 0.2)

    @contextmanager
    def user_transaction(self) -> Iterator[None]:
        """Mark a transactional task's transaction as open for the block."""
        with self._user_guard:
            self._open_user_transactions += 1
        try:
            yield
        finally:
            with self._user_guard:
                self._open_user_transactions -= 1

    def in_user_transaction(self) -> bool:
        with self._user_guard:
            return self._open_user_transactions > 0

    def close(self) -> None:
        if not self._owns_client:  # a client the application gave: the application closes it
            return
        # pymongo's close first ends the server sessions, which waits for a server (up to
        # the server selection timeout) when none answers: a process stopping without its
        # store waits a moment at most, and leaves the rest to a thread of its own.
        closer = threading.Thread(target=self.client.close, name="runce-mongo-close", daemon=True)
        closer.start()
        closer.join(CLOSE_WAIT)


def _run_once(session: ClientSession, work: Callable[[ClientSession], T]) -> T:
    session.start_transaction()
    try:
        result = work(session)
        session.commit_transaction()
    except BaseException:
        if session.in_transaction:
            with suppress(PyMongoError):
                session.abort_transaction()
        raise
    return result


def conflicted(exc: PyMongoError) -> bool:
    """Aborted for sure, by a write conflict or the like: safe to run again whole."""
    return exc.has_error_label("TransientTransactionError") and not isinstance(
        exc, ConnectionFailure
    )


def _open_client(location: Location) -> MongoClient[Document]:
    # Options the URL sets win: pymongo would let keyword arguments override them.
    given = location.url_options
    options: dict[str, Any] = {}
    if "serverselectiontimeoutms" not in given:
        options["serverSelectionTimeoutMS"] = SERVER_SELECTION_TIMEOUT_MS
    if "appname" not in given:
        options["appname"] = f"runce/{__version__}"
    try:
        return MongoClient(location.url, tz_aware=True, connect=False, **options)
    except (PyMongoError, ValueError, TypeError) as exc:
        raise StoreUnavailable(
            f"the MongoDB URL {location.description} is not valid: {exc}"
        ) from exc


def _read_facts(client: MongoClient[Document]) -> ServerFacts:
    before = utcnow()
    reply = _hello(client)
    after = utcnow()
    server_time = reply.get("localTime")
    offset = timedelta(0)
    if isinstance(server_time, datetime):
        # Commands decode without tz_aware: a naive localTime is UTC.
        aware = server_time if server_time.tzinfo else server_time.replace(tzinfo=UTC)
        offset = aware - (before + (after - before) / 2)
    replicated = "setName" in reply or reply.get("msg") == "isdbgrid"
    has_sessions = "logicalSessionTimeoutMinutes" in reply
    return ServerFacts(offset, replicated and has_sessions, time.monotonic())


def _hello(client: MongoClient[Document]) -> Document:
    try:
        reply: Document = client.admin.command("hello")
    except OperationFailure as exc:
        if exc.code != _COMMAND_NOT_FOUND:
            raise
        reply = client.admin.command("isMaster")  # servers older than 4.4.2
    return reply
