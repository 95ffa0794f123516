"""The dialect seam: what a SQL backend lends the code the SQL backends share.

Shared code names a statement of the backend's own query files and hands over its
parameters; the backend runs it on its connection, under its clock, and says how it
writes and reads the values whose form differs between databases (times, flags, lists of
text). Nothing here takes SQL text: MongoDB, which takes none, stays outside.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from runce.domain.locks import Lease

Row = Mapping[str, Any]
T = TypeVar("T")


class Codecs(Protocol):
    """How one SQL backend writes and reads the values whose form differs between databases."""

    def time(self, moment: datetime) -> Any:
        """A time as a statement's parameter."""

    def read_time(self, value: Any) -> datetime:
        """A time from a column (never NULL: the caller keeps NULL as None)."""

    def flag(self, value: bool) -> Any:
        """A boolean as a statement's parameter."""

    def texts(self, values: Sequence[str]) -> Any:
        """A list of text as a statement's parameter."""

    def read_texts(self, value: Any) -> tuple[str, ...]:
        """A list of text from a column."""

    def json(self, value: Any) -> Any:
        """A JSON value as a statement's parameter."""

    def read_json(self, value: Any) -> Any:
        """A JSON value from a column."""

    def seconds(self, seconds: float) -> Any:
        """A length of time as a statement's parameter, to add to the store's clock."""


class Steps(Protocol):
    """Named statements run on one connection, inside the transaction the backend opened."""

    def run(self, name: str, params: Mapping[str, Any]) -> int:
        """Run the statement ``name``; how many rows it changed."""

    def row(self, name: str, params: Mapping[str, Any]) -> Row | None:
        """Run the statement ``name``; its first row, if any."""


class Dialect(Codecs, Protocol):
    """One SQL backend's named statements and value codecs."""

    def read(self, name: str, params: Mapping[str, Any], *, needs: int, what: str) -> list[Row]:
        """The rows of the statement ``name``; none while the schema is older than version
        ``needs`` (the one that brings its tables): reads create nothing. ``what`` says
        what the read was for, in the error raised when it fails."""

    def write(self, name: str, params: Mapping[str, Any], *, what: str) -> int:
        """Run the statement ``name`` as a write, with ``now`` the store's clock where the
        statement asks for it; how many rows it changed."""

    def write_rows(self, name: str, params: Mapping[str, Any], *, what: str) -> list[Row]:
        """Run the statement ``name`` as a write, as :meth:`write`; the rows it returns."""


class FencedDialect(Dialect, Protocol):
    """A dialect for the once-task tracker: writes that hold only while a lease does."""

    @property
    def where(self) -> str:
        """The store in an error's words ("the SQLite store /path/runce.db")."""

    def fenced(
        self, lease: Lease | None, work: Callable[[Steps], T], *, what: str, single: bool = False
    ) -> T:
        """Run ``work`` in one transaction that holds only while ``lease`` is the lock's
        current one (any transaction without a lease); ``single``: ``work`` is one
        statement, so a backend may run it as that statement alone."""
