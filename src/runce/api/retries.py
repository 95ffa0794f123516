"""When the HTTP clients send a request again: idempotent calls, after a network failure or
a 429/503 answer, honouring ``Retry-After``, within a number of attempts and a total time."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from runce.api.idempotency import HEADER

RETRY_STATUSES = frozenset({429, 503})
# POST routes that change nothing more when sent twice: asking again gives the same state.
_NATURALLY_IDEMPOTENT = (":cancel", ":enable", ":disable")
_FIRST_PAUSE = 0.2
_LONGEST_PAUSE = 5.0


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts``: tries in all (1: never again); ``total``: seconds from the first try
    after which no new try starts."""

    attempts: int = 4
    total: float = 30.0

    def start(self, method: str, path: str, headers: Mapping[str, str]) -> Retrying:
        tries = self.attempts if is_idempotent(method, path, headers) else 1
        return Retrying(max(1, tries), time.monotonic() + max(0.0, self.total))


def is_idempotent(method: str, path: str, headers: Mapping[str, str]) -> bool:
    """GET, a POST that carries an idempotency key, and the naturally idempotent POSTs."""
    if method.upper() in ("GET", "HEAD"):
        return True
    if any(name.lower() == HEADER.lower() for name in headers):
        return True
    return method.upper() == "POST" and path.endswith(_NATURALLY_IDEMPOTENT)


class Retrying:
    """The retries left for one call."""

    def __init__(self, attempts: int, deadline: float) -> None:
        self._left = attempts - 1
        self._deadline = deadline
        self._backoff = _FIRST_PAUSE

    def pause(self, response: httpx.Response | None) -> float | None:
        """Seconds to wait before trying again, or None to give up. ``response`` is the
        answer (429 or 503), or None after a network failure."""
        if self._left <= 0:
            return None
        wanted = retry_after(response) if response is not None else None
        if wanted is None:
            wanted = self._backoff * (0.5 + random.random())  # spread clients out
            self._backoff = min(self._backoff * 2, _LONGEST_PAUSE)
        if time.monotonic() + wanted > self._deadline:
            return None
        self._left -= 1
        return wanted


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (a number or an HTTP date); None without one."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
