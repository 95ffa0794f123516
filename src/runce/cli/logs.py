"""``--log-format text|json`` on the commands that log as they work (docs/observability.md);
the formatters themselves are in :mod:`runce.logformat`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import click

from runce.logformat import FIELDS, JsonFormatter, TextFormatter

__all__ = ["FIELDS", "FORMATS", "JsonFormatter", "TextFormatter", "log_format_option", "use_format"]

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = ("text", "json")


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
