"""A companion: a thread beside a worker that synchronises once, then keeps ticking until
the worker stops it (the scheduler and retention are two). A failure is said once per run
of failures, not on every try of an outage; each still fires a ``worker.error`` event, and
the companion tries again after a pause that grows with the failures."""

from __future__ import annotations

import logging
import threading

from runce.errors import RunceError
from runce.runs.events import Event, EventBus


class CompanionLoop:
    """The loop a companion runs; a subclass says how it synchronises, ticks, drains and
    backs off."""

    name = "runce-companion"  # the thread's name
    failed = "the companion failed"  # what went wrong, in the log line

    def __init__(self, log: logging.Logger, bus: EventBus) -> None:
        self.log = log
        self.bus = bus
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> None:
        """Bring the store in line with this worker's configuration; once, before ticking."""

    def tick(self) -> float:
        """Do what is due; the seconds until the next look."""
        raise NotImplementedError

    def backoff(self, failures: int) -> float:
        """The seconds to wait after ``failures`` failures in a row."""
        raise NotImplementedError

    def drain(self) -> None:
        """One look before the worker claims (``drain``), in place of the thread."""
        self.sync()
        self.tick()

    def start(self, drain: bool) -> None:
        if drain:
            self.drain()
            return
        self._thread = threading.Thread(target=self._forever, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def stopping(self) -> bool:
        return self._stop.is_set()

    def _forever(self) -> None:
        synced = False
        failures = 0
        while not self._stop.is_set():
            try:
                if not synced:
                    self.sync()
                    synced = True
                wait = self.tick()
                failures = 0
            except RunceError as exc:
                failures += 1
                self.report(exc, first=failures == 1)
                wait = self.backoff(failures)
            self._stop.wait(wait)

    def report(self, exc: RunceError, *, first: bool = True) -> None:
        self.log.log(
            logging.ERROR if first else logging.DEBUG,
            "worker.error: %s: %s (retrying)",
            self.failed,
            exc,
        )
        if self.bus.wants("worker.error"):
            self.bus.publish(Event("worker.error", error=exc))
