"""What a job function gets as ``ctx`` (docs/runs.md#defining-jobs, docs/runs.md#the-worker)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from runce.errors import UsageError


@dataclass(frozen=True, slots=True)
class RunInfo:
    id: str
    kind: str
    attempt: int
    max_attempts: int


class CancelFlag(Protocol):
    """Whether a cancel was asked (a :class:`threading.Event` is one)."""

    def is_set(self) -> bool: ...


class _NeverCancelled:
    def is_set(self) -> bool:
        return False


ProgressWriter = Callable[[int, "str | None"], None]
PROGRESS_INTERVAL = 0.5  # seconds between stored progress updates of one run
_NEVER = _NeverCancelled()


def _no_services() -> Any:
    return None


def _no_progress(percent: int, message: str | None) -> None:
    return None


class JobContext:
    """A job's view of its run: ``log``, ``run``, ``progress()``, ``cancelled``, ``services``.

    One is made for every run the worker starts, and most jobs never look at it: ``run``
    and ``log`` are built on first use, from ``source`` (anything with the run's id, kind,
    attempt and max_attempts, such as the run itself) unless given.
    """

    __slots__ = (
        "_cancel",
        "_db",
        "_info",
        "_last_progress",
        "_log",
        "_noticed",
        "_services",
        "_source",
        "_write_progress",
    )

    def __init__(
        self,
        run: RunInfo | None = None,
        log: logging.LoggerAdapter[logging.Logger] | None = None,
        _services: Callable[[], Any] = _no_services,
        _write_progress: ProgressWriter = _no_progress,
        _cancel: CancelFlag = _NEVER,
        *,
        source: Any = None,
    ) -> None:
        if run is None and source is None:
            raise TypeError("JobContext needs the run (run= or source=)")
        self._info = run
        self._source = source
        self._log = log
        self._services = _services
        self._write_progress = _write_progress
        self._cancel = _cancel
        self._last_progress = 0.0
        self._noticed = False  # the job saw the cancel
        self._db: Any = None  # set for a transactional job only

    @property
    def run(self) -> RunInfo:
        info = self._info
        if info is None:
            source = self._source
            info = self._info = RunInfo(source.id, source.kind, source.attempt, source.max_attempts)
        return info

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        adapter = self._log
        if adapter is None:
            adapter = self._log = run_logger(self.run.id, self.run.kind)
        return adapter

    @property
    def services(self) -> Any:
        return self._services()

    @property
    def db(self) -> Any:
        """A transactional job's connection (``sqlite3`` or ``psycopg``) in the transaction
        in which its success is recorded; ``commit()`` and ``rollback()`` are refused."""
        if self._db is None:
            raise UsageError(
                f"ctx.db is given only to jobs declared with transactional=True "
                f"(job {self.run.kind!r} is not)"
            )
        return self._db

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

    def __repr__(self) -> str:
        return f"JobContext(run={self.run!r})"


def run_logger(run_id: str, kind: str) -> logging.LoggerAdapter[logging.Logger]:
    return logging.LoggerAdapter(logging.getLogger("runce.job"), {"run_id": run_id, "kind": kind})
