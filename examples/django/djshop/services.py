"""What the shop's once tasks and jobs get as ``ctx.services``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Services:
    ledger: Path  # one line per thing the shop did

    def record(self, line: str) -> None:
        with self.ledger.open("a") as handle:
            handle.write(line + "\n")


def make_services() -> Services:
    return Services(Path(os.environ.get("DJSHOP_LEDGER", "ledger.txt")))
