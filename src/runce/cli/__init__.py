"""The ``runce`` command: parse, call the library, print. Nothing else lives here.

The job queue's commands (``runce.cli.runs``) load when one of them runs or when the command
list is shown, so ``runce run`` and ``runce status`` do not pay for them.
"""

from __future__ import annotations

from runce.cli.main import cli, main

cli.lazy_modules.append("runce.cli.runs")

__all__ = ["main"]
