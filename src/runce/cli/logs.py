"""How runce's commands write log lines on stderr: ``--log-format text|json``
(docs/observability.md).

Text lines read ``TIME LEVEL WHO: message``, WHO being the task's id for a task's own log
and the logger's name otherwise. JSON lines are one object each, with ``time``, ``level``,
``logger`` and ``message``, the fields of the run or task a record is about (``run_id``,
``kind``, ``attempt``, ``duration_ms``, ``task_id``) and ``exception`` when it carries
one. Either way a record's message was already masked by the redaction filters of
runce's loggers (:mod:`runce.runs.redact`), and an exception's text is masked here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = ("text", "json")
# The attributes of a record copied into a JSON line when present (docs/observability.md).
FIELDS = ("run_id", "kind", "attempt", "duration_ms", "task_id")


def log_format_option(fn: F) -> F:
    """``--log-format`` (``RUNCE_LOG_FORMAT``), on the commands that log as they work."""
    return click.option(
        "--log-format",
        type=click.Choice(FORMATS),
        default="text",
        show_default=True,
        envvar="RUNCE_LOG_FORMAT",
        show_envvar=True,
        help="Log lines as text, or as one JSON object per line.",
    )(fn)


def use_format(name: str) -> None:
    """Format every line of the root logger's handlers (set up by ``runce``'s main) so."""
    formatter = JsonFormatter() if name == "json" else TextFormatter()
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def _iso(record: logging.LogRecord) -> str:
    global _second
    whole = int(record.created)
    last, text = _second
    if whole != last:  # a worker writes hundreds of lines a second: format each second once
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, text)
    return f"{text}.{int(record.msecs):03d}Z"


def _masked(text: str) -> str:
    from runce.runs.redact import scrub

    return scrub(text)


class TextFormatter(logging.Formatter):
    """``2026-01-31T09:00:00.123Z INFO runce.worker: run.succeeded id=...``."""

    def format(self, record: logging.LogRecord) -> str:
        who = getattr(record, "task_id", None) or record.name
        line = f"{_iso(record)} {record.levelname} {who}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + _masked(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _iso(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["exception"] = _masked(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False, default=str)
