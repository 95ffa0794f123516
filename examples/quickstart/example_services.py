"""The example's services: what tasks get as ``ctx.services``.

A real service would hand over its database client, HTTP session or queue client here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Services:
    data_dir: Path


def make_services() -> Services:
    data_dir = Path(__file__).parent / "var"
    data_dir.mkdir(exist_ok=True)
    return Services(data_dir=data_dir)
