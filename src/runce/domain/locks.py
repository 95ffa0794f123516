"""The global lock's records: who a process is (:class:`Owner`), the lease it holds the
lock by, and who holds it as far as a store can tell (see docs/once-tasks.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal


@dataclass(frozen=True, slots=True)
class Owner:
    """The identity a runner writes into locks and history rows."""

    label: str  # the configured ``lock.owner``: a label for people, never an identity
    host: str
    pid: int
    machine: str


@dataclass(frozen=True, slots=True)
class Lease:
    """One acquisition of the global lock. The token is its identity; ``owner`` is a label."""

    token: str
    owner: Owner
    acquired_at: datetime
    ttl: float


HolderState = Literal["live", "expired", "dead"]


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds (or last held) the lock, as far as the store can tell."""

    owner: str
    host: str | None
    pid: int | None
    since: datetime | None
    state: HolderState
    token: str | None = None
    machine: str | None = None
    lease_until: datetime | None = None

    def describe(self) -> str:
        where = f"{self.host} pid {self.pid}" if self.host and self.pid else "unknown process"
        since = f" since {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else ""
        if self.owner in (self.host, None):
            return f"{where}{since}"
        return f"{self.owner} ({where}){since}"
