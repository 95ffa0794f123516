"""When to try a store that stopped answering again: capped exponential backoff, full jitter.

Each failure in a row doubles the ceiling (``base``, ``2 * base``, ``4 * base``... up to
``cap``) and the next try waits a random time between nothing and that ceiling: workers
that lost the same database do not come back in step, and a long outage costs about one
try per ``cap`` seconds (``cap / 2`` on average) instead of many a second.

:class:`Outage` keeps that schedule for one worker and says so in the log once when the
store stops answering (at the second failure in a row; the first is a line of its own, as a
connection that broke and is replaced is no outage) and once when it answers again, not on
every try.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

log = logging.getLogger("runce.worker")

BASE = 0.5  # seconds: the ceiling of the first wait
CAP = 30.0  # seconds: the longest wait between two tries


class Backoff:
    """The waits between tries after failures in a row."""

    def __init__(
        self,
        base: float = BASE,
        cap: float = CAP,
        rng: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng

    def ceiling(self) -> float:
        """The longest the next wait may be, after the failures so far."""
        if self.failures == 0:
            return 0.0
        # The exponent is bounded: 2.0 ** 2000 overflows, and the cap is reached long before.
        return min(self.cap, self.base * 2.0 ** min(self.failures - 1, 64))

    def failed(self) -> float:
        """Count one more failure; how long to wait before the next try."""
        self.failures += 1
        return self._rng(0.0, self.ceiling())

    def reset(self) -> None:
        self.failures = 0


class Outage:
    """Whether the store answers, and when a worker may try it again (thread-safe)."""

    def __init__(
        self, backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._guard = threading.Lock()
        self._since: float | None = None  # when the store stopped answering
        self._next_try = 0.0
        self._said = False  # the outage was said in the log

    @property
    def down(self) -> bool:
        return self._since is not None

    def ready(self) -> bool:
        """Whether a store call may be made now: the store answers, or its wait is over."""
        return self._since is None or self._clock() >= self._next_try

    def wait(self) -> float:
        """Seconds until the next try (0 when the store answers)."""
        if self._since is None:
            return 0.0
        return max(0.0, self._next_try - self._clock())

    def failed(self, exc: BaseException) -> None:
        """A store call failed: wait before the next. The first failure is one line; the
        outage is said at the second in a row: a connection that broke is replaced by the
        next call (each connection finds out on its own), and that alone is no outage."""
        with self._guard:
            now = self._clock()
            if self._since is None:
                self._since = now
            self._next_try = now + self._backoff.failed()
            failures = self._backoff.failures
            self._said = self._said or failures == 2
        if failures == 1:
            log.warning("worker.error: %s (trying again)", exc)
        elif failures == 2:
            log.error("store unreachable: %s; retrying with backoff", exc)

    def answered(self) -> None:
        """A store call succeeded: the store is back (said in the log once, if the outage
        was)."""
        if self._since is None:
            return
        with self._guard:
            since, self._since = self._since, None
            said, self._said = self._said, False
            self._backoff.reset()
        if since is not None and said:
            log.warning("store reachable again after %.1f s", self._clock() - since)
