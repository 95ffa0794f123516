"""What a job function gets as ``ctx`` (R-4, R-5)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RunInfo:
    id: str
    kind: str
    attempt: int
    max_attempts: int


ProgressWriter = Callable[[int, "str | None"], None]
PROGRESS_INTERVAL = 0.5  # seconds between stored progress updates of one run


@dataclass
class JobContext:
    """A job's view of its run: ``log``, ``run``, ``progress()``, ``cancelled``, ``services``."""

    run: RunInfo
    log: logging.LoggerAdapter[logging.Logger]
    _services: Callable[[], Any] = field(default=lambda: None, repr=False)
    _write_progress: ProgressWriter = field(default=lambda pct, message: None, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _last_progress: float = field(default=0.0, repr=False)
    _noticed: bool = field(default=False, repr=False)  # the job saw the cancel

    @property
    def services(self) -> Any:
        return self._services()

    @property
    def cancelled(self) -> bool:
        """True once a cancel was asked: stop soon, and the run ends ``canceled``.

        A job that never looks and returns normally ends ``succeeded`` (with
        ``cancel_requested`` shown): only a job that saw the cancel is counted as stopped.
        """
        if self._cancel.is_set():
            self._noticed = True
            return True
        return False

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report progress (0-100), shown by ``runce runs status`` and ``tail``."""
        value = max(0, min(100, round(percent)))
        now = time.monotonic()
        if value < 100 and now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        self._write_progress(value, message)


def run_logger(run_id: str, kind: str) -> logging.LoggerAdapter[logging.Logger]:
    return logging.LoggerAdapter(logging.getLogger("runce.job"), {"run_id": run_id, "kind": kind})
