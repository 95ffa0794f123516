"""The ``runce`` command: parse, call the library, print. Nothing else lives here."""

from __future__ import annotations

from runce.cli import (
    runs,  # noqa: F401 - registers the job-queue commands
    schedules,  # noqa: F401 - registers `runce schedules`
)
from runce.cli.main import main

__all__ = ["main"]
