"""In-process events (docs/runs.md#events): ``run.enqueued``, ``run.started``, ``run.progress``,
``run.retrying``, ``run.succeeded``, ``run.failed``, ``run.canceled`` and ``worker.error``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

EVENT_NAMES = (
    "run.enqueued",
    "run.started",
    "run.progress",
    "run.retrying",
    "run.succeeded",
    "run.failed",
    "run.canceled",
    "worker.error",
)

log = logging.getLogger("runce.events")


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    run: Any = None  # the Run, for run.* events
    error: BaseException | None = None  # for worker.error (and a failing run's exception)
    data: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[Event], None]


class EventBus:
    """Subscribers by event name (``"*"`` for all); a failing subscriber is logged, not raised."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._mutex = threading.Lock()

    def subscribe(self, name: str, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(event)`` for each event ``name``; returns an unsubscribe function."""
        if name != "*" and name not in EVENT_NAMES:
            raise ValueError(f"unknown event {name!r}; known: {', '.join(EVENT_NAMES)} or '*'")
        with self._mutex:
            self._subscribers.setdefault(name, []).append(subscriber)

        def unsubscribe() -> None:
            with self._mutex:
                self._subscribers[name].remove(subscriber)

        return unsubscribe

    def wants(self, name: str) -> bool:
        return bool(self._subscribers.get(name) or self._subscribers.get("*"))

    def publish(self, event: Event) -> None:
        with self._mutex:
            targets = [*self._subscribers.get(event.name, ()), *self._subscribers.get("*", ())]
        for subscriber in targets:
            try:
                subscriber(event)
            except Exception:
                log.exception("an event subscriber failed on %s", event.name)


events = EventBus()
"""The process-wide bus: ``runce.events.subscribe("run.failed", alert)``."""
