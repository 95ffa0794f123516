"""How runce's commands write log lines on stderr, as text or as JSON (docs/observability.md),
and a quicker road for the worker's line per run transition.

Text lines read ``TIME LEVEL WHO: message``, WHO being the task's id for a task's own log
and the logger's name otherwise. JSON lines are one object each, with ``time``, ``level``,
``logger`` and ``message``, the fields of the run or task a record is about (``run_id``,
``kind``, ``attempt``, ``duration_ms``, ``task_id``) and ``exception`` when it carries
one. Either way a record's message was already masked by the redaction filters of
runce's loggers (:mod:`runce.runs.redact`), and an exception's text is masked here.

A worker writes a line for every run it finishes, hundreds a second. Where those lines go
only to runce's own handler (:class:`StderrHandler`, with one of the formatters here), as
they do under ``runce worker``, the worker formats them itself, through the same code as
the formatters, and writes each batch in one call (:func:`direct_handler`): no
:class:`logging.LogRecord` is made for them, and the text is the same.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

# The attributes of a record copied into a JSON line when present (docs/observability.md).
FIELDS = ("run_id", "kind", "attempt", "duration_ms", "task_id")

_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text
_last: tuple[float, str] = (-1.0, "")  # the last time formatted, and its text


def _iso(created: float) -> str:
    global _second, _last
    last_created, stamp = _last
    if created == last_created:  # the lines of one batch of a worker's
        return stamp
    whole = int(created)
    last, text = _second
    if whole != last:  # a worker writes hundreds of lines a second: format each second once
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, text)
    stamp = f"{text}.{int((created - whole) * 1000):03d}Z"
    _last = (created, stamp)
    return stamp


def _masked(text: str) -> str:
    from runce.runs.redact import scrub

    return scrub(text)


class LineFormatter(logging.Formatter):
    """A formatter that also makes a line without a record (:meth:`line`), through the
    same code."""

    def format(self, record: logging.LogRecord) -> str:
        exception = _masked(self.formatException(record.exc_info)) if record.exc_info else None
        message = record.getMessage()
        return self.line(record.created, record.levelname, record.name, message, record, exception)

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        fields: Any,
        exception: str | None = None,
    ) -> str:
        """The line of a record made at ``created`` (``time.time()``), whose fields
        (:data:`FIELDS`) are read as attributes of ``fields`` (a record, or any object that
        has them); ``exception``: the masked text of the exception it carries."""
        raise NotImplementedError

    def lines(self, created: float, logger: str, entries: list[tuple[str, str, Any]]) -> list[str]:
        """``line()`` of each ``(level, message, fields)`` of ``logger`` at ``created``."""
        return [
            self.line(created, level, logger, message, fields) for level, message, fields in entries
        ]


class TextFormatter(LineFormatter):
    """``2026-01-31T09:00:00.123Z INFO runce.worker: run.succeeded id=...``."""

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        fields: Any,
        exception: str | None = None,
    ) -> str:
        who = getattr(fields, "task_id", None) or logger
        text = f"{_iso(created)} {level} {who}: {message}"
        return text if exception is None else f"{text}\n{exception}"

    def lines(self, created: float, logger: str, entries: list[tuple[str, str, Any]]) -> list[str]:
        stamp = _iso(created)  # line()'s text, the time formatted once
        return [
            f"{stamp} {level} {getattr(fields, 'task_id', None) or logger}: {message}"
            for level, message, fields in entries
        ]


class JsonFormatter(LineFormatter):
    """One JSON object per record."""

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        fields: Any,
        exception: str | None = None,
    ) -> str:
        data: dict[str, Any] = {
            "time": _iso(created),
            "level": level,
            "logger": logger,
            "message": message,
        }
        for name in FIELDS:
            value = getattr(fields, name, None)
            if value is not None:
                data[name] = value
        if exception is not None:
            data["exception"] = exception
        return json.dumps(data, ensure_ascii=False, default=str)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """runce's own handler: lines on ``sys.stderr`` as it is when each is written (on a
    terminal, the live display of ``runce run`` redirects stderr above itself)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)

    def write_lines(self, lines: list[str]) -> None:
        """Lines already formatted, in one write and one flush."""
        text = self.terminator.join(lines) + self.terminator
        self.acquire()
        try:
            self.stream = sys.stderr
            self.stream.write(text)
            self.flush()
        except Exception:  # as emit() does: a failing stream does not stop the worker
            self.handleError(logging.makeLogRecord({"msg": text}))
        finally:
            self.release()


class Fields:
    """The fields of a line written without a record (see :meth:`LineFormatter.line`)."""

    __slots__ = ("attempt", "duration_ms", "kind", "run_id", "task_id")

    def __init__(self, run_id: str, kind: str, attempt: int, duration_ms: float) -> None:
        self.run_id = run_id
        self.kind = kind
        self.attempt = attempt
        self.duration_ms = duration_ms
        self.task_id = None


def direct_handler(
    logger: logging.Logger, filters_ok: Callable[[Any], bool]
) -> tuple[StderrHandler, LineFormatter] | None:
    """runce's handler and its formatter, when every record of ``logger`` goes there and
    nowhere else: the logger is enabled, its filters pass ``filters_ok`` (the caller applies
    them to the message itself), no record factory of the application's is set, and the
    handlers found up the hierarchy are one :class:`StderrHandler` with a formatter of this
    module and no filter. None otherwise: records go through :mod:`logging` as usual."""
    if logger.disabled or logging.getLogRecordFactory() is not logging.LogRecord:
        return None
    if not all(filters_ok(f) for f in logger.filters):
        return None
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        found.extend(current.handlers)
        if not current.propagate:
            break
        current = current.parent
    if len(found) != 1:
        return None
    [handler] = found
    formatter = handler.formatter
    if (
        type(handler) is not StderrHandler
        or handler.filters
        or type(formatter) not in (TextFormatter, JsonFormatter)
    ):
        return None
    assert isinstance(formatter, LineFormatter)
    return handler, formatter
