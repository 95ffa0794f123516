"""Where a SQL store's schema stands: its version against the migrations this runce ships."""

from __future__ import annotations

from collections.abc import Sequence

from runce.domain.schema import SchemaStatus
from runce.stores.sql.files import latest_version, migration_version


def status(version: int, names: Sequence[str]) -> SchemaStatus:
    """The status of a schema at ``version``, of the migrations ``names`` (oldest first)."""
    return SchemaStatus(
        current=version,
        latest=latest_version(names),
        applied=tuple(n for n in names if migration_version(n) <= version),
        pending=tuple(n for n in names if migration_version(n) > version),
    )
