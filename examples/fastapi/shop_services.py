"""What the shop's once tasks and jobs get as ``ctx.services``, and its endpoints through
``Depends(asgi.services)``: made once per process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Services:
    ledger: Path  # one line per thing the shop did: opened, shipped

    def record(self, line: str) -> None:
        with self.ledger.open("a") as handle:  # one short append: whole lines, any process
            handle.write(line + "\n")


def make_services() -> Services:
    return Services(Path(os.environ.get("SHOP_LEDGER", "ledger.txt")))
