"""The applied state (``runce.applied``) and the append-only history (``runce.history``).

Every write under a lease is fenced (see :mod:`.lock`): on a server with transactions the
records and the fence go in one short transaction, retried whole on a write conflict;
on a standalone server the token is checked just before writing. A finish changes a
history document only while it is ``started``; finished ones are never touched again and
none is ever deleted.

Transactional tasks (docs/once-tasks.md#transactional-tasks) get a
:class:`MongoTransaction`: ``handle`` is a pymongo ``ClientSession`` inside
``start_transaction()``, passed by the task as ``session=`` to its own writes, and the
attempt's outcome is written with the same session. The task's body runs once: nothing
retries it. How a stolen lease is caught there is told in
:meth:`MongoTracker.transaction`.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.errors import PyMongoError

from runce.domain.locks import Lease
from runce.domain.tasks import (
    AppliedRecord,
    Attempt,
    Checkpoint,
    ControlCommand,
    RangeClaim,
    TaskControl,
)
from runce.errors import (
    ClaimLost,
    LockLost,
    StoreError,
    TransactionConflict,
    UnsupportedFeature,
    UsageError,
)
from runce.stores.mongo.connection import Connection, Document, conflicted
from runce.stores.mongo.documents import (
    applied_document,
    applied_from,
    attempt_document,
    attempt_from,
    aware,
    checkpoint_document,
    checkpoint_from,
    checkpoint_key,
    control_from,
    finish_changes,
)
from runce.stores.mongo.lock import check, claim, lost_message, record_session
from runce.stores.mongo.schema import Schema

Write = Callable[[ClientSession | None], None]
CLAIM_SESSIONS = "claimSessions"  # a range's holder's batch transactions (transactional)
_BY_START = [("startedAt", 1), ("_id", 1)]


class MongoTracker:
    def __init__(self, conn: Connection, schema: Schema) -> None:
        self._conn = conn
        self._schema = schema
        # (lease token, session id) pairs already noted in the lock document
        self._recorded: set[tuple[str, bytes]] = set()
        self._recorded_guard = threading.Lock()

    # --- reads -------------------------------------------------------------------------------

    def applied(self) -> dict[str, AppliedRecord]:
        with self._conn.translated("read the applied tasks"):
            docs = list(self._conn.applied.find({"id": {"$type": "string"}}, {"_id": 0}))
        return {record.id: record for record in map(applied_from, docs)}

    def history(self, task_id: str | None = None) -> list[Attempt]:
        query = {} if task_id is None else {"taskId": task_id}
        what = "read the history" if task_id is None else f"read the history of {task_id}"
        return self._attempts(query, what)

    def latest_attempts(self, task_ids: Sequence[str], per_task: int) -> dict[str, list[Attempt]]:
        found: dict[str, list[Attempt]] = {}
        if per_task <= 0:
            return found
        with self._conn.translated("read the latest attempts"):
            for task_id in dict.fromkeys(task_ids):
                docs = self._latest(task_id, per_task)
                if docs:
                    found[task_id] = [attempt_from(doc) for doc in docs]
        return found

    def _latest(self, task_id: str, count: int) -> list[Document]:
        """One task's last ``count`` attempts in history order, from its index (taskId,
        startedAt) walked back: ``count + 1`` documents, and a second read of the tied ones
        only when two of them started at one moment (their order is then by ``_id``)."""
        history = self._conn.history
        newest = list(
            history.find({"taskId": task_id}, {"_id": 0}).sort("startedAt", -1).limit(count + 1)
        )
        starts = [doc.get("startedAt") for doc in newest]
        if len(set(starts)) == len(starts):
            return newest[:count][::-1]
        boundary = starts[min(count, len(starts)) - 1]
        tied: Document = {"taskId": task_id}
        if boundary is not None:
            tied["startedAt"] = {"$gte": boundary}
        return list(history.find(tied, {"_id": 0}).sort(_BY_START))[-count:]

    def open_attempts(self) -> list[Attempt]:
        return self._attempts({"status": "started"}, "read the open attempts")

    def _attempts(self, query: Document, what: str) -> list[Attempt]:
        with self._conn.translated(what):
            docs = list(self._conn.history.find(query, {"_id": 0}).sort(_BY_START))
        return [attempt_from(doc) for doc in docs]

    # --- writes ------------------------------------------------------------------------------

    def begin(self, attempt: Attempt, lease: Lease | None) -> None:
        doc = attempt_document(replace(attempt, status="started"))

        def write(session: ClientSession | None) -> None:
            self._conn.history.insert_one(doc, session=session)

        self._write(write, lease, f"record the start of {attempt.task_id}")

    def progress(self, attempt_id: str, done: int, total: int | None, lease: Lease | None) -> None:
        if self._conn.in_user_transaction():
            # A transactional task finishes its attempt inside its transaction; changing that
            # document from outside meanwhile would make the commit fail with a write conflict.
            return
        changes = {"progressDone": done, "progressTotal": total}

        def write(session: ClientSession | None) -> None:
            result = self._conn.history.update_one(
                _started(attempt_id), {"$set": changes}, session=session
            )
            if result.matched_count != 1:
                raise _not_started(self._conn, attempt_id)

        self._write(write, lease, f"store the progress of attempt {attempt_id}")

    def finish(self, attempt: Attempt, applied: AppliedRecord | None, lease: Lease | None) -> None:
        _must_be_finished(attempt)
        self._write(
            lambda session: write_finish(self._conn, attempt, applied, session),
            lease,
            f"record the outcome of {attempt.task_id}",
        )

    def record(self, attempt: Attempt, applied: AppliedRecord | None, lease: Lease | None) -> None:
        _must_be_finished(attempt)
        doc = attempt_document(attempt)

        def write(session: ClientSession | None) -> None:
            self._conn.history.insert_one(doc, session=session)
            _upsert_applied(self._conn, applied, session)

        self._write(write, lease, f"record the {attempt.status} attempt of {attempt.task_id}")

    # --- backfills ----------------------------------------------------------------------------

    def checkpoints(self, task_id: str) -> list[Checkpoint]:
        return self._checkpoints({"taskId": task_id})

    def all_checkpoints(self) -> list[Checkpoint]:
        return self._checkpoints({})

    def _checkpoints(self, query: Document) -> list[Checkpoint]:
        with self._conn.translated("read the checkpoints"):
            docs = list(self._conn.checkpoints.find(query).sort([("taskId", 1), ("part", 1)]))
        return [checkpoint_from(doc) for doc in docs]

    def save_checkpoint(self, checkpoint: Checkpoint, lease: Lease | None) -> None:
        self._write(
            lambda session: save_checkpoint(self._conn, checkpoint, session),
            lease,
            f"save the checkpoint of {checkpoint.task_id}",
        )

    # --- range claims (parallel backfills shared by several processes) -----------------------

    def claim_range(
        self, task_id: str, attempt_id: str, owner: str, ttl: float, lease: Lease | None = None
    ) -> RangeClaim | None:
        """Unclaimed ranges first (one atomic find-and-modify), then expired ones or, for the
        lock's holder, ones claimed for another attempt (another)."""
        self._end_takeable_holders(task_id, attempt_id, lease)
        token = secrets.token_hex(16)
        found: list[Document] = []
        orphans: list[Any] = []

        def write(session: ClientSession | None) -> None:
            found.clear()
            orphans.clear()
            now = self._conn.server_now()
            changes = {
                "claimToken": token,
                "claimOwner": owner,
                "claimUntil": now + timedelta(seconds=ttl),
                "attemptId": attempt_id,
            }
            taken: list[Document] = [{"claimToken": None}, {"claimUntil": {"$lt": now}}]
            if lease is not None:
                taken.append({"attemptId": {"$ne": attempt_id}})
            for claimable in (taken[0], {"$or": taken[1:]}):
                before = self._conn.checkpoints.find_one_and_update(
                    {"taskId": task_id, "finished": False, **claimable},
                    {"$set": {**changes, CLAIM_SESSIONS: []}},
                    sort=[("part", 1)],
                    return_document=ReturnDocument.BEFORE,
                    session=session,
                )
                if before is not None:
                    found.append({**before, **changes})
                    orphans.extend(before.get(CLAIM_SESSIONS) or [])
                    return

        self._claim_write(write, lease, f"claim a key range of {task_id}")
        if not found:
            return None
        doc = found[0]
        if orphans:  # the transactions of a holder that died mid-batch: end them now
            self._end_sessions(orphans)
        return RangeClaim(
            task_id=task_id,
            part=doc["part"],
            token=token,
            owner=owner,
            attempt_id=attempt_id,
            until=aware(doc["claimUntil"]),
            ttl=ttl,
            checkpoint=checkpoint_from(doc),
        )

    def _end_takeable_holders(self, task_id: str, attempt_id: str, lease: Lease | None) -> None:
        """End the batch transactions noted on the claims a claimer may take over (expired,
        or, for the lock's holder, made for another attempt) before it tries: a holder
        killed mid-batch leaves its transaction open on the range's checkpoint, and the claim
        would meet its writes (WriteConflict) until the server aborts it. Only a read, which
        meets no transaction's writes."""
        now = self._conn.server_now()
        takeable: list[Document] = [{"claimUntil": {"$lt": now}}]
        if lease is not None:
            takeable.append({"attemptId": {"$ne": attempt_id}})
        noted = {f"{CLAIM_SESSIONS}.0": {"$exists": True}}
        query = {"taskId": task_id, "finished": False, "$or": takeable, **noted}
        with self._conn.translated(f"claim a key range of {task_id}"):
            docs = list(self._conn.checkpoints.find(query, {CLAIM_SESSIONS: 1}))
        sessions = [session for doc in docs for session in doc.get(CLAIM_SESSIONS) or []]
        if sessions:
            self._end_sessions(sessions)

    def renew_claim(self, claim: RangeClaim) -> bool:
        with self._conn.translated(f"renew the claim on a key range of {claim.task_id}"):
            until = self._conn.server_now() + timedelta(seconds=claim.ttl)
            result = self._conn.checkpoints.update_one(
                _claimed(claim), {"$set": {"claimUntil": until}}
            )
        return result.matched_count == 1

    def release_claim(self, claim: RangeClaim) -> None:
        with self._conn.translated(f"release a key range of {claim.task_id}"):
            self._conn.checkpoints.update_one(
                _claimed(claim),
                {
                    "$set": {
                        "claimToken": None,
                        "claimOwner": None,
                        "claimUntil": None,
                        CLAIM_SESSIONS: [],
                    }
                },
            )

    def save_claimed_checkpoint(
        self, checkpoint: Checkpoint, claim: RangeClaim, lease: Lease | None
    ) -> None:
        self._claim_write(
            lambda session: save_claimed(self._conn, checkpoint, claim, session),
            lease,
            f"save the checkpoint of {checkpoint.task_id}",
        )

    def _claim_write(self, write: Write, lease: Lease | None, what: str) -> None:
        """A claim's write is one document, atomic alone: a fenced transaction only for the
        lock's holder. A helper (no lease) writes without one, so that a helper killed
        mid-write leaves no transaction open on the server."""
        if lease is not None:
            self._write(write, lease, what)
            return
        self._schema.prepare()
        with self._conn.translated(what):
            write(None)

    def _note_session(self, claim: RangeClaim, session: ClientSession) -> None:
        """Note a batch's transaction session with its range's claim (whoever takes the
        range over ends it), which is also a first check that the claim still holds."""
        with self._conn.translated(f"save the checkpoint of {claim.task_id}"):
            result = self._conn.checkpoints.update_one(
                _claimed(claim), {"$addToSet": {CLAIM_SESSIONS: session.session_id}}
            )
        if result.matched_count != 1:
            raise ClaimLost(_claim_lost_message(claim))

    def _end_sessions(self, sessions: list[Any]) -> None:
        """``killSessions``, as the lock does for a dead holder (see :mod:`.lock`)."""
        with suppress(PyMongoError):
            self._conn.client.admin.command("killSessions", sessions)

    def controls(self) -> dict[str, TaskControl]:
        with self._conn.translated("read the pause and cancel requests"):
            docs = list(self._conn.controls.find({}))
        return {control.task_id: control for control in map(control_from, docs)}

    def set_control(self, task_id: str, command: ControlCommand | None, requested_by: str) -> None:
        with self._conn.translated(f"ask {task_id} to {command or 'resume'}"):
            if command is None:
                self._conn.controls.delete_one({"_id": task_id})
                return
            document = {
                "command": command,
                "requestedAt": self._conn.server_now(),
                "requestedBy": requested_by,
            }
            self._conn.controls.update_one({"_id": task_id}, {"$set": document}, upsert=True)

    def _write(self, write: Write, lease: Lease | None, what: str) -> None:
        """One fenced write: in a short transaction when the server has them."""
        self._schema.prepare()
        with self._conn.translated(what):
            if self._conn.transactions:

                def fenced(session: ClientSession) -> None:
                    claim(self._conn, lease, session)
                    write(session)

                self._conn.in_transaction(fenced)
            else:
                check(self._conn, lease)
                write(None)

    # --- transactional tasks ---------------------------------------------------------------

    @contextmanager
    def transaction(
        self, lease: Lease | None, claim: RangeClaim | None = None
    ) -> Iterator[MongoTransaction]:
        """A transaction for a transactional task; committed when the block exits cleanly.

        The token is checked before the transaction starts, inside it when the outcome is
        written (:meth:`MongoTransaction.finish`) and once more, outside its snapshot, just
        before the commit. The lock document itself is not written in the transaction: the
        lease keeper renews it meanwhile, which would make the commit fail. What closes the
        last gap is the attempt's document: a runner that took the lock over first closes
        this attempt as ``interrupted`` before running the task again, and that write
        conflicts with this transaction's finish, so at most one of the two commits.
        """
        what = "run a transactional task"
        self._refuse_without_transactions()
        self._schema.prepare()
        with self._conn.translated(what):
            session = self._conn.client.start_session()
            try:
                self._fence_session(lease, session)
                if claim is not None:
                    self._note_session(claim, session)
            except BaseException:
                session.end_session()
                raise
        try:
            with self._conn.translated(what):
                session.start_transaction()
            with self._conn.user_transaction(), _conflicts_named(self._conn):
                try:
                    yield MongoTransaction(self._conn, session, lease)
                except BaseException:
                    _abort_quietly(session)
                    raise
                self._commit(session, lease, what)
        finally:
            session.end_session()

    def _fence_session(self, lease: Lease | None, session: ClientSession) -> None:
        """Check the lease before a transaction starts, and record its session in the lock
        document the first time this lease uses it: a runner that takes the lock over ends
        it, aborting a transaction this runner left open by dying (see :mod:`.lock`)."""
        if lease is None:
            return
        key = (lease.token, bytes(session.session_id["id"]))
        with self._recorded_guard:
            known = key in self._recorded
        if known:
            check(self._conn, lease)
            return
        record_session(self._conn, lease, session)
        with self._recorded_guard:
            if len(self._recorded) > 1024:
                self._recorded.clear()
            self._recorded.add(key)

    def _commit(self, session: ClientSession, lease: Lease | None, what: str) -> None:
        if not session.in_transaction:
            raise StoreError(
                "the transactional task ended its transaction itself; leave "
                "commit_transaction and abort_transaction to runce"
            )
        try:
            with _lost_explained(self._conn, lease), self._conn.translated(what):
                check(self._conn, lease)  # a fresh read, not the transaction's snapshot
                session.commit_transaction()
        except BaseException:
            _abort_quietly(session)
            raise

    def _refuse_without_transactions(self) -> None:
        if not self._conn.transactions:
            raise UnsupportedFeature(
                f"MongoDB at {self._conn.location.servers} is a standalone server, which has "
                "no multi-document transactions; transactional tasks need a replica set "
                "(a single-node replica set will do)"
            )


class MongoTransaction:
    """``handle`` is a pymongo ``ClientSession`` inside runce's open transaction."""

    def __init__(self, conn: Connection, session: ClientSession, lease: Lease | None) -> None:
        self._conn = conn
        self._session = session
        self._lease = lease

    @property
    def handle(self) -> ClientSession:
        return self._session

    def finish(self, attempt: Attempt, applied: AppliedRecord | None) -> None:
        _must_be_finished(attempt)
        what = f"record the outcome of {attempt.task_id}"
        with _lost_explained(self._conn, self._lease), self._conn.translated(what):
            check(self._conn, self._lease, self._session)  # as of the transaction's snapshot
            write_finish(self._conn, attempt, applied, self._session)

    def checkpoint(self, checkpoint: Checkpoint, claim: RangeClaim | None = None) -> None:
        what = f"save the checkpoint of {checkpoint.task_id}"
        with _lost_explained(self._conn, self._lease), self._conn.translated(what):
            check(self._conn, self._lease, self._session)
            if claim is not None:
                save_claimed(self._conn, checkpoint, claim, self._session)
            else:
                save_checkpoint(self._conn, checkpoint, self._session)


def save_checkpoint(
    conn: Connection, checkpoint: Checkpoint, session: ClientSession | None
) -> None:
    """Upsert the range's checkpoint; a claim on it stays as it is."""
    conn.checkpoints.update_one(
        {"_id": checkpoint_key(checkpoint)},
        {"$set": checkpoint_document(checkpoint)},
        upsert=True,
        session=session,
    )


def save_claimed(
    conn: Connection, checkpoint: Checkpoint, claim: RangeClaim, session: ClientSession | None
) -> None:
    """Save a range's checkpoint, extending its claim, only while the range carries it."""
    changes = {
        **checkpoint_document(checkpoint),
        "claimUntil": conn.server_now() + timedelta(seconds=claim.ttl),
    }
    result = conn.checkpoints.update_one(_claimed(claim), {"$set": changes}, session=session)
    if result.matched_count != 1:
        raise ClaimLost(_claim_lost_message(claim))


def _claim_lost_message(claim: RangeClaim) -> str:
    return (
        f"range {claim.part} of {claim.task_id} is no longer claimed by this process (its "
        "claim expired and was taken over), so its checkpoint was not saved"
    )


def _claimed(claim: RangeClaim) -> Document:
    return {"_id": f"{claim.task_id}#{claim.part}", "claimToken": claim.token}


@contextmanager
def _conflicts_named(conn: Connection) -> Iterator[None]:
    """A transaction aborted by a write conflict (the task's own write or runce's) becomes
    TransactionConflict, so a caller knows that nothing of it was committed."""
    try:
        yield
    except (PyMongoError, StoreError) as exc:
        cause = exc if isinstance(exc, PyMongoError) else exc.__cause__
        if isinstance(cause, PyMongoError) and conflicted(cause):
            raise TransactionConflict(
                f"a transaction on the MongoDB store {conn.location.description} met another "
                f"transaction's writes and was rolled back: {cause}"
            ) from exc
        raise


@contextmanager
def _lost_explained(conn: Connection, lease: Lease | None) -> Iterator[None]:
    """A store error (such as a write conflict) raised because the lease was taken over
    meanwhile becomes LockLost: the runner then stops, as for any lost lease."""
    try:
        yield
    except StoreError as exc:
        if lease is not None and not _still_held(conn, lease):
            raise LockLost(lost_message()) from exc
        raise


def _still_held(conn: Connection, lease: Lease) -> bool:
    try:
        with conn.translated("check the lock"):
            check(conn, lease)
    except LockLost:
        return False
    except StoreError:
        return True  # unknown: the original error is the one to report
    return True


def write_finish(
    conn: Connection, attempt: Attempt, applied: AppliedRecord | None, session: ClientSession | None
) -> None:
    """Close a started history document, then upsert the applied record (in that order:
    without a transaction, a late finish that matches nothing writes nothing)."""
    result = conn.history.update_one(
        _started(attempt.attempt_id), {"$set": finish_changes(attempt)}, session=session
    )
    if result.matched_count != 1:
        raise _not_started(conn, attempt.attempt_id)
    _upsert_applied(conn, applied, session)


def _upsert_applied(
    conn: Connection, applied: AppliedRecord | None, session: ClientSession | None
) -> None:
    if applied is not None:
        conn.applied.update_one(
            {"id": applied.id}, {"$set": applied_document(applied)}, upsert=True, session=session
        )


def _not_started(conn: Connection, attempt_id: str) -> StoreError:
    return StoreError(
        f"attempt {attempt_id} is not a started attempt in the MongoDB store "
        f"{conn.location.description} (it is unknown or already finished)"
    )


def _started(attempt_id: str) -> dict[str, Any]:
    return {"attemptId": attempt_id, "status": "started"}


def _abort_quietly(session: ClientSession) -> None:
    """Abort if still open; the error that got us here is the one to report."""
    if session.in_transaction:
        with suppress(PyMongoError):
            session.abort_transaction()


def _must_be_finished(attempt: Attempt) -> None:
    if not attempt.finished:
        raise UsageError(
            f"attempt {attempt.attempt_id} of {attempt.task_id} is still 'started'; "
            "only a finished attempt can be recorded as its outcome"
        )
