"""The example's services: what tasks and jobs get as ``ctx.services``.

A real service would hand over its database client, HTTP session or queue client here; the
example keeps its "message queues" as folders under ``var/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Queues:
    """Message queues, one folder each."""

    root: Path

    def exists(self, name: str) -> bool:
        return (self.root / name).is_dir()

    def create(self, name: str, *, exist_ok: bool = False) -> None:
        (self.root / name).mkdir(parents=True, exist_ok=exist_ok)


@dataclass
class Services:
    data_dir: Path
    queues: Queues


def make_services() -> Services:
    data_dir = Path(__file__).parent / "var"
    data_dir.mkdir(exist_ok=True)
    return Services(data_dir=data_dir, queues=Queues(data_dir / "queues"))
