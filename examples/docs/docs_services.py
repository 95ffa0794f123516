"""The services the documentation's examples get as ``ctx.services``: a mailer, a report
renderer, a payment gateway and message queues that keep what they are given in memory."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field


@dataclass
class Mailer:
    """Sends an email and returns its message id."""

    sent: list[tuple[str, str]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def send(self, to: str, subject: str) -> str:
        self.sent.append((to, subject))
        return f"msg-{next(self._ids)}"


@dataclass
class Reports:
    """Renders one part of a report."""

    parts: list[str] = field(default_factory=list)

    async def render(self, part: str) -> None:
        await asyncio.sleep(0)
        self.parts.append(part)


@dataclass
class Gateway:
    """Charges an amount with an API key."""

    charges: list[int] = field(default_factory=list)

    def charge(self, amount: int, *, key: str) -> None:
        if not key:
            raise ValueError("no API key")
        self.charges.append(amount)


@dataclass
class Queues:
    """Message queues by name."""

    names: set[str] = field(default_factory=set)

    def exists(self, name: str) -> bool:
        return name in self.names

    def create(self, name: str, *, exist_ok: bool = False) -> None:
        if name in self.names and not exist_ok:
            raise ValueError(f"queue {name!r} exists")
        self.names.add(name)


@dataclass
class Services:
    mailer: Mailer = field(default_factory=Mailer)
    reports: Reports = field(default_factory=Reports)
    gateway: Gateway = field(default_factory=Gateway)
    queues: Queues = field(default_factory=Queues)


def make_services() -> Services:
    return Services()
