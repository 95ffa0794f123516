"""The ``runce`` command: parse, call the library, print. Nothing else lives here."""

from __future__ import annotations

from runce.cli import (  # noqa: F401 - each registers its commands
    runs,
    schedules,
    serve,
    tokens,
)
from runce.cli.main import main

__all__ = ["main"]
