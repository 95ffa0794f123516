"""Taking the global lock (bounded wait) and keeping it (renewal every ttl/3)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from runce.domain.locks import Lease, LockHolder, Owner
from runce.errors import LockHeld, LockLost, StoreError
from runce.errortext import describe
from runce.stores.base import Lock

POLL_INTERVAL = 0.25


def acquire(
    lock: Lock,
    owner: Owner,
    ttl: float,
    wait: float = 0.0,
    on_wait: Callable[[LockHolder | None], None] | None = None,
) -> Lease:
    """Take the lock, polling for up to ``wait`` seconds (never a blocking wait)."""
    deadline = time.monotonic() + wait
    told = False
    while True:
        lease = lock.try_acquire(owner, ttl)
        if lease is not None:
            return lease
        holder = lock.holder()
        if time.monotonic() >= deadline:
            raise LockHeld(_held_message(holder, wait))
        if on_wait is not None and not told:
            on_wait(holder)
            told = True
        time.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))


@contextmanager
def holding(
    lock: Lock,
    owner: Owner,
    ttl: float,
    wait: float = 0.0,
    on_wait: Callable[[LockHolder | None], None] | None = None,
) -> Iterator[LeaseKeeper]:
    """Hold the lock for the block, renewing it; released however the block ends."""
    keeper = LeaseKeeper(lock, acquire(lock, owner, ttl, wait, on_wait)).start()
    try:
        yield keeper
    finally:
        keeper.stop()
        lock.release(keeper.lease)


def _held_message(holder: LockHolder | None, wait: float) -> str:
    who = holder.describe() if holder else "another runner"
    waited = f" after waiting {wait:g}s" if wait else ""
    advice = "retry later, pass --wait SECONDS" if not wait else "retry later"
    return f"lock held by {who}{waited}; {advice}, or see `runce unlock`"


class LeaseKeeper:
    """Renews a lease from a background thread every ttl/3.

    A renewal the store refuses means another owner has the lock: the lease is lost at once.
    A renewal that fails (store unreachable) is retried at the next tick; once the lease
    may have run out without a successful renewal, it counts as lost too. Anything else
    going wrong in the thread (an error that is not the store's, a bug) loses the lease at
    once: a runner must never go on without knowing that its lease is kept.
    """

    def __init__(self, lock: Lock, lease: Lease) -> None:
        self._lock = lock
        self._lease = lease
        self._stop = threading.Event()
        self._reason: str | None = None
        self._last_renewal = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="runce-lease", daemon=True)

    @property
    def lease(self) -> Lease:
        return self._lease

    @property
    def lost(self) -> bool:
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        """Why the lease was lost; None while it is kept."""
        return self._reason

    def check(self) -> None:
        """Raise :class:`LockLost` when the lease is gone."""
        if self._reason is not None:
            raise LockLost(self._reason)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        keep_stop_signals_off()
        try:
            interval = max(self._lease.ttl / 3, 0.05)
            while not self._stop.wait(interval):
                if not self._renew_once():
                    return
        except BaseException as exc:
            self._reason = f"renewing the lock failed unexpectedly ({describe(exc)}); stopping"

    def _renew_once(self) -> bool:
        try:
            renewed = self._lock.renew(self._lease)
        except (StoreError, OSError) as exc:
            # Lost once the next try would come after the lease ran out.
            next_try = time.monotonic() + self._lease.ttl / 3
            if next_try - self._last_renewal >= self._lease.ttl:
                self._reason = (
                    f"could not renew the lock for {self._lease.ttl:g}s ({exc}); stopping"
                )
                return False
            return True
        if not renewed:
            self._reason = "the lock was taken by another owner after this runner's lease ran out"
            return False
        self._last_renewal = time.monotonic()
        return True


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def keep_stop_signals_off() -> None:
    """Block Ctrl-C and SIGTERM in the calling background thread, so the kernel hands them
    to the main thread: Python runs signal handlers there only, and a signal taken by
    another thread leaves a main thread that sleeps (a task's ``time.sleep``) asleep."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
