"""Where a store's schema stands against the migrations this runce ships (see docs/stores.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where a store's schema stands against the migrations this runce ships."""

    current: int
    latest: int
    applied: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()

    @property
    def up_to_date(self) -> bool:
        return self.current == self.latest
