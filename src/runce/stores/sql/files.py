"""A SQL backend's ``.sql`` files: named statements and numbered migrations.

A query file holds statements, each started by a ``-- name: foo`` line (other comment
lines are dropped). A backend's ``migrations/`` folder holds ``NNNN_description.sql``
files, applied in the order of their number, which is the schema version each brings the
database to.

The files are read from the folder of the backend's module, as plain files: runce runs
from files on disk (its lazy loader reads its own source), and ``importlib.resources``
would cost the command line's fast path (:mod:`runce.stores.sqlite.glance`) about 20 ms
of imports before it reads anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from functools import cached_property

_NAME_MARK = "-- name:"


def parse_named_queries(text: str) -> dict[str, str]:
    """Split a file of ``-- name: foo`` sections; comment lines are dropped."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(_NAME_MARK):
            current = found.setdefault(stripped.removeprefix(_NAME_MARK).strip(), [])
        elif current is not None and stripped and not stripped.startswith("--"):
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in found.items()}


def read(folder: str, *names: str) -> str:
    """The text of the file ``names`` leads to from ``folder``."""
    with open(os.path.join(folder, *names), encoding="utf-8") as handle:
        return handle.read()


def load_named_queries(folder: str, file_names: Sequence[str]) -> dict[str, str]:
    """The statements of every named file in ``folder``; a name defined twice is an error."""
    found: dict[str, str] = {}
    for file_name in file_names:
        named = parse_named_queries(read(folder, file_name))
        twice = sorted(set(found) & set(named))
        if twice:
            raise RuntimeError(f"query names defined twice ({file_name}): {', '.join(twice)}")
        found.update(named)
    return found


def iter_migration_names(names: Iterable[str]) -> list[str]:
    """Sort migration file names ``NNNN_description.sql`` by their number."""
    return sorted((name for name in names if name.endswith(".sql")), key=migration_version)


def migration_names(folder: str) -> tuple[str, ...]:
    """Every migration file in ``folder``, oldest first."""
    return tuple(iter_migration_names(os.listdir(folder)))


def migration_version(name: str) -> int:
    """The schema version a migration brings the database to: its file number."""
    return int(name[:4])


def latest_version(names: Sequence[str]) -> int:
    """The version the last of ``names`` brings the database to (0 for none)."""
    return migration_version(names[-1]) if names else 0


class Migrations:
    """A backend's numbered migrations: the ``NNNN_description.sql`` files of ``folder``,
    listed once and each read once."""

    def __init__(self, folder: str) -> None:
        self._folder = folder
        self._texts: dict[str, str] = {}

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Every migration file name, oldest first."""
        return migration_names(self._folder)

    @cached_property
    def latest(self) -> int:
        """The schema version the newest migration brings a database to (read on every
        PostgreSQL read: worked out once)."""
        return latest_version(self.names)

    def text(self, name: str) -> str:
        """The SQL of the migration file ``name``."""
        found = self._texts.get(name)
        if found is None:
            found = self._texts[name] = read(self._folder, name)
        return found
