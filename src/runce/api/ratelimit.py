"""Per-token rate limits on enqueue and cancel: token buckets, in memory, per server process.

A bucket holds up to ``count`` requests and refills at ``count`` per ``per`` seconds, so a
token may burst to the whole allowance and then goes at the steady rate. Several server
processes each keep their own buckets (the limit is per process, as documented).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from runce.api.problems import ProblemError
from runce.config import Rate

# Buckets of tokens not seen for this long are dropped, so memory stays bounded.
_IDLE = 3600.0


@dataclass
class _Bucket:
    level: float
    updated: float


class RateLimiter:
    """``take(key)`` spends one request from ``key``'s bucket, or says how long to wait."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = float(rate.count)
        self._per_second = rate.count / rate.per
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._mutex = threading.Lock()
        self._swept = clock()

    def take(self, key: str) -> int:
        """0 when allowed; else the whole seconds until a request would be (``Retry-After``)."""
        now = self._clock()
        with self._mutex:
            self._sweep(now)
            bucket = self._buckets.setdefault(key, _Bucket(self._capacity, now))
            elapsed = max(0.0, now - bucket.updated)
            bucket.level = min(self._capacity, bucket.level + elapsed * self._per_second)
            bucket.updated = now
            if bucket.level >= 1.0:
                bucket.level -= 1.0
                return 0
            return max(1, math.ceil((1.0 - bucket.level) / self._per_second))

    def _sweep(self, now: float) -> None:
        if now - self._swept < _IDLE:
            return
        self._swept = now
        idle = [k for k, b in self._buckets.items() if now - b.updated > _IDLE]
        for key in idle:
            del self._buckets[key]


def spend(limiter: RateLimiter | None, key: str, what: str) -> None:
    """Spend one request of ``key`` on ``limiter``; 429 ``rate-limited`` when none is left."""
    if limiter is None:
        return
    wait = limiter.take(key)
    if wait:
        raise ProblemError(
            "rate-limited",
            f"this token made too many {what} requests; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
