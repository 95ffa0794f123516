"""The HTTP/1.1 connections of ``runce serve``: uvicorn's h11 protocol with a deadline on
each request head (``api.header_timeout``) and a bound on open connections
(``api.max_connections``).

uvicorn closes an idle keep-alive connection, but waits forever for a head that is never
finished (or never started), so a few thousand slow clients would hold the server's
sockets. Here the head's clock starts when the connection opens, or with the first byte of
the next request on a kept-alive one; when it runs out the connection is closed, with a 408
when part of a head came. A connection opened past the bound gets 503 ``server-busy`` as
soon as its head arrives, and is closed after that answer. The body has its own deadline,
kept by :class:`runce.api.bodytimeout.BodyTimeout` inside the app.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import h11
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from runce.api.problems import STATUS, TITLES, problem_document, problem_response

log = logging.getLogger("runce.api")

# Say that the bound is reached at most this often (seconds), not once per connection.
_WARN_EVERY = 10.0


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    max_connections: int


def protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """The protocol class ``uvicorn.Config(http=...)`` takes, keeping ``limits``."""

    class Bounded(GuardedH11Protocol):
        LIMITS = limits

    return Bounded


class GuardedH11Protocol(H11Protocol):
    LIMITS = ConnectionLimits(header_timeout=10.0, max_connections=1000)
    _last_warned = float("-inf")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False
        self._cycle_seen: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.LIMITS.max_connections:
            self.app = _busy(self.LIMITS.max_connections)
            self._warn_busy()
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head():
            self._head_started = True
            if self._head_timer is None:  # the first byte of a kept-alive connection's next head
                self._arm()
        super().data_received(data)
        self._note_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._note_head()  # uvicorn may have parsed a pipelined head from its buffer

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _awaiting_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _note_head(self) -> None:
        if self.cycle is not self._cycle_seen:  # uvicorn made a new cycle: a head is complete
            self._cycle_seen = self.cycle
            self._head_started = False
            self._disarm()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.LIMITS.header_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._awaiting_head():
            return
        # A client that sent nothing (a socket opened ahead) gets no answer, nor one still
        # sending the body of a request already answered.
        idle = self.conn.our_state is h11.IDLE and self.conn.their_state is h11.IDLE
        if self._head_started and idle:
            self.transport.write(_timeout_answer(self.LIMITS.header_timeout))
        self.transport.close()

    def _warn_busy(self) -> None:
        now = time.monotonic()
        if now - GuardedH11Protocol._last_warned >= _WARN_EVERY:
            GuardedH11Protocol._last_warned = now
            log.warning(
                "%d connections are open (api.max_connections is %d): answering 503 to new ones",
                len(self.connections),
                self.LIMITS.max_connections,
            )


def _timeout_answer(seconds: float) -> bytes:
    body = problem_document(
        "request-timeout",
        f"the request head did not arrive within {seconds:g} s (api.header_timeout)",
    )
    status = STATUS["request-timeout"]
    head = (
        f"HTTP/1.1 {status} {TITLES['request-timeout']}\r\n"
        "content-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


def _busy(bound: int) -> Any:
    """The app a connection past the bound is answered by."""

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            "server-busy",
            f"the server has {bound} connections open (api.max_connections); try again shortly",
            instance=scope.get("path"),
            headers={"Retry-After": "1", "Connection": "close"},
        )
        await response(scope, receive, send)

    return answer
