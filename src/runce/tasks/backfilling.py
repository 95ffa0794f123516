"""Driving one backfill attempt (docs/backfills.md): batch after batch, a checkpoint after
each, paced, and stopping at a batch boundary when someone asks it to pause or cancel.

Each key range goes ``fetch`` -> ``process`` -> checkpoint. Without ``transactional`` a
runner killed between ``process`` and the checkpoint redoes that one batch on the next run;
with it, the three happen in one transaction on the store's database, so a batch is done
exactly once. Requests to pause or cancel are read from the store at every batch boundary,
and every :data:`CONTROL_POLL` seconds while waiting between batches.

A parallel backfill on a store that keeps range claims (:class:`RangeClaims`: SQLite,
PostgreSQL, MongoDB) has its ranges claimed through the store, by the coordinator's threads
and by helpers' (``runce backfill join``, :mod:`runce.tasks.joining`) alike: each thread
claims a range, works it to its end with every checkpoint saved under the claim, and claims
the next, until every range is finished.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any

from runce.domain.locks import Lease
from runce.domain.tasks import Attempt, Checkpoint, ControlCommand, RangeClaim
from runce.errors import ClaimLost, StoreError, TransactionConflict, UsageError
from runce.stores.base import RangeClaims, TaskTracker
from runce.tasks.backfill import Backfill, Batch, Cursor, check_cursor
from runce.tasks.claiming import ClaimKeeper
from runce.tasks.lease import LeaseKeeper
from runce.tasks.model import TaskContext
from runce.timeutil import utcnow
from runce.transaction import TaskConnection

CONTROL_POLL = 0.25  # a pause takes effect well within a second of being asked
WATCH_POLL = 1.0  # how often a helper asks whether the attempt it joined still runs
# How long a transactional batch is tried again after write conflicts. On MongoDB a runner
# killed mid-batch leaves its transaction open; the next holder of the lock ends its sessions
# (killSessions), but where the server refuses that, the transaction stays until the server
# aborts it (60 s by default), and until then the next runner's batch conflicts with it.
CONFLICT_PATIENCE = 150.0
_WAIT_STEP = 0.05


@dataclass(frozen=True)
class BackfillOutcome:
    """How an attempt ended: every range finished, or stopped on request (checkpoint kept)."""

    done: int
    total: int | None
    stopped: ControlCommand | None = None
    requested_by: str | None = None
    ended: str | None = None  # a helper stopped because the attempt it joined ended: why
    mine: int = 0  # items this process processed

    @property
    def summary(self) -> str:
        of = f" of {self.total:,}" if self.total is not None else ""
        return f"{self.done:,}{of} done"


class Stopped(Exception):
    """Raised inside a range's loop when the backfill must stop at this boundary."""


class Controls:
    """The pause and cancel requests for one task, shared by every range."""

    def __init__(
        self,
        tracker: TaskTracker,
        task_id: str,
        keeper: LeaseKeeper | None,
        watch: Callable[[], str | None] | None = None,
    ) -> None:
        self._tracker = tracker
        self._task_id = task_id
        self._keeper = keeper
        self._watch = watch  # a helper's: why the attempt it joined no longer runs, or None
        self._guard = threading.Lock()
        self._read_at = float("-inf")
        self._watched_at = float("-inf")
        self.command: ControlCommand | None = None
        self.requested_by: str | None = None
        self.ended: str | None = None
        self.failed = threading.Event()  # another range raised: stop this one too

    def check(self, *, every: float = 0.0) -> None:
        """Raise :class:`Stopped` when asked to stop; LockLost when the lease is gone.

        The store is read again when the last read is ``every`` seconds old.
        """
        if self._keeper is not None:
            self._keeper.check()
        if self.failed.is_set():
            raise Stopped
        with self._guard:
            if self.command is None and time.monotonic() - self._read_at >= every:
                self._read_at = time.monotonic()
                control = self._tracker.controls().get(self._task_id)
                if control is not None:
                    self.command, self.requested_by = control.command, control.requested_by
            if self.command is not None:
                raise Stopped
            watch = self._watch
            due = time.monotonic() - self._watched_at >= WATCH_POLL
            if watch is not None and self.ended is None and due:
                self._watched_at = time.monotonic()
                self.ended = watch()
            if self.ended is not None:
                raise Stopped

    def sleep(self, seconds: float) -> None:
        """Wait, checking for requests meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.check(every=CONTROL_POLL)
            time.sleep(min(left, _WAIT_STEP))


@dataclass
class Pace:
    """The batch size, adapted toward ``target`` seconds a batch within ``bounds``."""

    size: int
    target: float | None
    bounds: tuple[int, int]

    def after(self, seconds: float, fetched: int) -> None:
        if self.target is None or fetched < self.size or seconds <= 0:
            return  # a short batch (the last one) says nothing about speed
        factor = min(2.0, max(0.5, self.target / seconds))  # change gently
        low, high = self.bounds
        self.size = max(low, min(high, round(self.size * factor)))


class BackfillDriver:
    """Runs one attempt of one backfill under the runner's lease."""

    def __init__(
        self,
        task: Backfill,
        ctx: TaskContext,
        attempt: Attempt,
        tracker: TaskTracker,
        lease: Lease | None,
        keeper: LeaseKeeper | None,
        notice: Callable[[str], None],
        *,
        handle_name: str = "db",
        claims: RangeClaims | None = None,
        claim_ttl: float = 60.0,
        claimer: str = "",
        threads: int | None = None,
        watch: Callable[[], str | None] | None = None,
    ) -> None:
        self.task = task
        self.ctx = ctx
        self.attempt = attempt
        self.tracker = tracker
        self.lease = lease
        self.notice = notice
        self.handle_name = handle_name  # "db" (SQL stores) or "session" (MongoDB)
        self.controls = Controls(tracker, ctx.id, keeper, watch)
        # Ranges claimed through the store, so that helpers on other hosts share them; None
        # on stores without claims (memory, file): this process's threads share them alone.
        self.claims = claims
        self.claim_ttl = claim_ttl
        self.claimer = claimer  # who claims, as status shows it
        self.threads = threads or task.threads or task.parallel
        self._guard = threading.Lock()
        self._parts: dict[int, Checkpoint] = {}
        self._done_before = 0
        self._mine = 0
        self._claiming = 0
        self._started = time.monotonic()
        self._total: int | None = None

    # -- the attempt ---------------------------------------------------------------------------

    def run(self) -> BackfillOutcome:
        if self.task.total is not None:
            self._total = int(_call(self.task.total, self.ctx))
        self._parts = {c.part: c for c in self._starting_points()}
        self._done_before = self.done
        self._report()
        unfinished = [c for c in self._parts.values() if not c.finished]
        try:
            if self.claims is not None and len(self._parts) > 1:
                self._run_claimed(len(unfinished))
            elif len(unfinished) <= 1:
                for checkpoint in unfinished:
                    self._run_range(checkpoint)
            else:
                self._run_in_parallel(unfinished)
        except Stopped:
            return self._stopped()
        return BackfillOutcome(self.done, self._total, mine=self._mine)

    def join(self) -> BackfillOutcome:
        """A helper's part: claim the running attempt's ranges until none is left."""
        if self.claims is None:  # pragma: no cover - the join command refuses such stores
            raise UsageError("this store keeps no range claims")
        if self.task.total is not None:
            self._total = int(_call(self.task.total, self.ctx))
        self._refresh()
        self._done_before = self.done
        unfinished = sum(not c.finished for c in self._parts.values())
        try:
            if unfinished:
                self._run_claimed(unfinished)
        except Stopped:
            return self._stopped()
        return BackfillOutcome(self.done, self._total, mine=self._mine)

    @property
    def done(self) -> int:
        with self._guard:
            return sum(c.done for c in self._parts.values())

    def _stopped(self) -> BackfillOutcome:
        controls = self.controls
        if controls.command is None and controls.ended is None:  # a range failed: raised
            raise RuntimeError("a backfill range stopped without a request")  # pragma: no cover
        finished = self._refresh()
        if controls.command is None and finished:  # the attempt ended as every range did
            return BackfillOutcome(self.done, self._total, mine=self._mine)
        return BackfillOutcome(
            self.done,
            self._total,
            controls.command,
            controls.requested_by,
            ended=controls.ended if controls.command is None else None,
            mine=self._mine,
        )

    def _run_in_parallel(self, parts: list[Checkpoint]) -> None:
        threads = max(1, min(self.threads, len(parts)))
        with ThreadPoolExecutor(threads, thread_name_prefix="runce-backfill") as pool:
            futures = [pool.submit(self._guarded, self._run_range, c) for c in parts]
            _raise_first(self._outcomes(futures))

    def _outcomes(self, futures: list[Future[None]]) -> list[BaseException | None]:
        """Each range thread's exception (None: it ended cleanly). Interrupted meanwhile
        (Ctrl-C, SIGTERM), the threads are told to stop at their next batch boundary."""
        try:
            return [f.exception() for f in futures]
        except BaseException:
            self.controls.failed.set()
            raise

    def _guarded(self, work: Callable[..., None], *args: Any) -> None:
        try:
            work(*args)
        except Stopped:
            raise
        except BaseException:
            self.controls.failed.set()  # the other ranges stop at their next boundary
            raise

    # -- ranges claimed through the store (shared with helpers on other hosts) ----------------

    def _run_claimed(self, unfinished: int) -> None:
        """Threads that each claim a range, work it to its end and claim the next, until
        every range is finished (whoever finished it)."""
        assert self.claims is not None
        threads = max(1, min(self.threads, unfinished))
        self._claiming = threads  # threads that will look for a range again
        with (
            ClaimKeeper(self.claims, self.claim_ttl) as keeper,
            ThreadPoolExecutor(threads, thread_name_prefix="runce-backfill") as pool,
        ):
            futures = [pool.submit(self._guarded, self._claim_loop, keeper) for _ in range(threads)]
            errors = self._outcomes(futures)
        self._refresh()
        _raise_first(errors)

    def _claim_loop(self, keeper: ClaimKeeper) -> None:
        claims = self.claims
        assert claims is not None
        poll = max(0.1, min(1.0, self.claim_ttl / 4))  # a dead holder's claim runs out in ttl
        while True:
            self.controls.check()
            claim = claims.claim_range(
                self.ctx.id, self.attempt.attempt_id, self.claimer, self.claim_ttl, self.lease
            )
            if claim is None:
                if self._refresh():
                    return  # every range is finished
                with self._guard:
                    if self._claiming > 1:  # another thread here comes back when it is done
                        self._claiming -= 1
                        return
                self.controls.sleep(poll)  # the last one here waits: a range may come free
                continue
            keeper.hold(claim)
            try:
                with self._guard:
                    self._parts[claim.part] = claim.checkpoint
                self._run_range(claim.checkpoint, claim, keeper)
            except ClaimLost as exc:
                self.notice(f"{self.ctx.id}: {exc}; this process goes on with another range")
            finally:
                keeper.drop(claim)
                with suppress(StoreError):  # unreleased, it runs out after its lease
                    claims.release_claim(claim)

    def _refresh(self) -> bool:
        """Read every range's checkpoint again (others move them); True when all finished."""
        if self.claims is None:
            return all(c.finished for c in self._parts.values())
        saved = self.tracker.checkpoints(self.ctx.id)
        with self._guard:
            for checkpoint in saved:
                mine = self._parts.get(checkpoint.part)
                if mine is None or checkpoint.done >= mine.done:
                    self._parts[checkpoint.part] = checkpoint
        return bool(saved) and all(c.finished for c in saved)

    # -- where to start ----------------------------------------------------------------------

    def _starting_points(self) -> list[Checkpoint]:
        saved = self.tracker.checkpoints(self.ctx.id)
        if saved:
            self._say_resuming(saved)
            return saved
        first = self._first_cursors()
        fresh = [self._checkpoint(part, len(first), cursor) for part, cursor in enumerate(first)]
        if len(fresh) > 1:  # ranges() may not give the same answer twice: keep this one
            for checkpoint in fresh:
                self.tracker.save_checkpoint(checkpoint, self.lease)
        return fresh

    def _first_cursors(self) -> list[Cursor]:
        return first_cursors(self.task, self.ctx)

    def _say_resuming(self, saved: list[Checkpoint]) -> None:
        done = sum(c.done for c in saved)
        of = f" of {self._total:,}" if self._total is not None else ""
        if len(saved) == 1:
            where = f"from cursor {_show(saved[0].cursor)}"
        else:
            left = sum(not c.finished for c in saved)
            where = f"{left} of {len(saved)} ranges from their checkpoints"
        self.notice(f"{self.ctx.id}: resuming {where}, {done:,}{of} done")
        if len(saved) != self.task.parallel:
            self.notice(
                f"{self.ctx.id}: its checkpoints have {len(saved)} ranges and the file now says "
                f"parallel={self.task.parallel}; it goes on with the {len(saved)} ranges"
            )

    def _checkpoint(self, part: int, parts: int, cursor: Cursor) -> Checkpoint:
        return Checkpoint(
            task_id=self.ctx.id,
            part=part,
            parts=parts,
            cursor=cursor,
            done=0,
            batches=0,
            attempt_id=self.attempt.attempt_id,
            updated_at=utcnow(),
            total=self._total,
        )

    # -- one key range -----------------------------------------------------------------------

    def _run_range(
        self,
        checkpoint: Checkpoint,
        claim: RangeClaim | None = None,
        keeper: ClaimKeeper | None = None,
    ) -> None:
        ctx = replace(self.ctx)  # each range has its own ctx.db / ctx.session
        task = self.task
        pace = Pace(task.batch_size, task.target_seconds, task.size_bounds)
        while not checkpoint.finished:
            if keeper is not None and claim is not None:
                keeper.check(claim)
            self._wait_until_allowed(ctx)
            began = time.monotonic()
            checkpoint, fetched = self._one_batch(ctx, checkpoint, pace.size, claim)
            if keeper is not None and claim is not None:
                keeper.renewed(claim)
            pace.after(time.monotonic() - began, fetched)
            self._report()
            if task.throttle_seconds and not checkpoint.finished:
                self.controls.sleep(task.throttle_seconds)

    def _wait_until_allowed(self, ctx: TaskContext) -> None:
        self.controls.check()
        throttle_when = self.task.throttle_when
        while throttle_when is not None and _call(throttle_when, ctx):
            self.controls.sleep(max(self.task.throttle_seconds, 1.0))

    def _one_batch(
        self, ctx: TaskContext, checkpoint: Checkpoint, size: int, claim: RangeClaim | None
    ) -> tuple[Checkpoint, int]:
        if not self.task.transactional:
            batch, following = self._fetch(ctx, checkpoint.cursor, size)
            self._process(ctx, batch)
            saved = self._advance(checkpoint, following, len(batch))
            if claim is not None and self.claims is not None:
                self.claims.save_claimed_checkpoint(saved, claim, self.lease)
            else:
                self.tracker.save_checkpoint(saved, self.lease)
        else:
            saved, batch = self._transactional_batch(ctx, checkpoint, size, claim)
        with self._guard:
            self._parts[saved.part] = saved
            self._mine += len(batch)
        return saved, len(batch)

    def _transactional_batch(
        self, ctx: TaskContext, checkpoint: Checkpoint, size: int, claim: RangeClaim | None
    ) -> tuple[Checkpoint, Batch]:
        """Fetch, process and checkpoint in one transaction; again if it conflicted, as
        nothing of a conflicted transaction was committed."""
        deadline = time.monotonic() + CONFLICT_PATIENCE
        pause, told = 0.05, False
        while True:
            try:
                with self.tracker.transaction(self.lease, claim) as tx:
                    _give(ctx, self.handle_name, tx.handle)
                    try:
                        batch, following = self._fetch(ctx, checkpoint.cursor, size)
                        self._process(ctx, batch)
                        saved = self._advance(checkpoint, following, len(batch))
                        if claim is None:
                            tx.checkpoint(saved)
                        else:  # only while the range is still this process's
                            tx.checkpoint(saved, claim)
                    finally:
                        _give(ctx, self.handle_name, None)
                return saved, batch
            except TransactionConflict:
                if time.monotonic() >= deadline:
                    raise
                if not told:
                    told = True
                    self.notice(
                        f"{ctx.id}: a batch met another transaction's writes (a killed "
                        "runner's, until the database aborts it) and was rolled back; "
                        "trying it again"
                    )
            self.controls.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _fetch(self, ctx: TaskContext, cursor: Cursor, size: int) -> tuple[Batch, Cursor]:
        result = _call(lambda c: self.task.fetch(c, cursor, size), ctx)
        if not isinstance(result, tuple) or len(result) != 2:
            raise TypeError(
                f"fetch of {ctx.id} must return (batch, next_cursor), not {type(result).__name__}"
            )
        batch, following = result
        return list(batch), check_cursor(following, f"fetch of {ctx.id}")

    def _process(self, ctx: TaskContext, batch: Batch) -> None:
        if batch:
            _call(lambda c: self.task.process(c, batch), ctx)

    def _advance(self, checkpoint: Checkpoint, following: Cursor, count: int) -> Checkpoint:
        return replace(
            checkpoint,
            cursor=following,
            finished=following is None,
            done=checkpoint.done + count,
            batches=checkpoint.batches + 1,
            attempt_id=self.attempt.attempt_id,
            updated_at=utcnow(),
            total=self._total,
            rate=self._rate(extra=count),
        )

    def _rate(self, extra: int = 0) -> float | None:
        elapsed = time.monotonic() - self._started
        gained = self.done + extra - self._done_before
        return round(gained / elapsed, 3) if elapsed > 0 and gained > 0 else None

    def _report(self) -> None:
        self.ctx.progress(self.done, self._total)


def _raise_first(errors: list[BaseException | None]) -> None:
    """A range's failure first; else Stopped when one stopped on request."""
    failures = [e for e in errors if e is not None and not isinstance(e, Stopped)]
    if failures:
        raise failures[0]
    if any(isinstance(e, Stopped) for e in errors):
        raise Stopped


def first_cursors(task: Backfill, ctx: TaskContext) -> list[Cursor]:
    """The cursor each key range starts from: None alone, or what ``ranges(ctx, n)`` gives."""
    if task.parallel == 1 or task.ranges is None:
        return [None]
    cursors = list(task.ranges(ctx, task.parallel))
    if len(cursors) != task.parallel:
        raise UsageError(
            f"ranges of {ctx.id} returned {len(cursors)} cursors for parallel={task.parallel}; "
            "it must return one first cursor per range"
        )
    return [check_cursor(c, f"ranges of {ctx.id}") for c in cursors]


def dry_run_note(
    task: Backfill, ctx: TaskContext, tracker: TaskTracker, handle_name: str = "db"
) -> str:
    """Call ``fetch`` once, from where the next run would start, and say what it found.

    A transactional backfill fetches inside a transaction that is rolled back.
    """
    saved = [c for c in tracker.checkpoints(ctx.id) if not c.finished]
    cursor = saved[0].cursor if saved else first_cursors(task, ctx)[0]
    where = f"from cursor {_show(cursor)}" if saved else "from the start"
    if not task.transactional:
        batch, _ = _call(lambda c: task.fetch(c, cursor, task.batch_size), ctx)
        return f"backfill: first batch {where} has {len(batch):,} items"
    found: list[int] = []
    try:
        with tracker.transaction(None) as tx:
            _give(ctx, handle_name, tx.handle)
            batch, _ = _call(lambda c: task.fetch(c, cursor, task.batch_size), ctx)
            found.append(len(batch))
            raise _RollBack
    except _RollBack:
        pass
    finally:
        _give(ctx, handle_name, None)
    return f"backfill: first batch {where} has {found[0]:,} items"


class _RollBack(Exception):
    """Ends a dry run's transaction without committing it."""


def _call(fn: Callable[[TaskContext], Any], ctx: TaskContext) -> Any:
    from runce.tasks.runner import call  # the runner imports this module

    return call(fn, ctx)


def _show(cursor: Any) -> str:
    text = json.dumps(cursor)
    return text if len(text) <= 60 else text[:57] + "..."


def _give(ctx: TaskContext, name: str, handle: Any) -> None:
    """Hand a batch's transaction to its code: ``ctx.db`` guarded like a transactional task's
    (commit and rollback refused), or ``ctx.session`` on MongoDB; ``None`` takes it back."""
    if name == "db":
        ctx._db = None if handle is None else TaskConnection(handle)
    else:
        ctx.session = handle
