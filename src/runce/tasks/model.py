"""What a task file defines (docs/once-tasks.md#writing-a-task) and what a task gets to work
with (docs/once-tasks.md#the-context)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from runce.errors import UsageError
from runce.transaction import TaskConnection

if TYPE_CHECKING:
    from runce.config import Config

TaskFunction = Callable[["TaskContext"], Awaitable[None] | None]
CheckFunction = Callable[["TaskContext"], bool | Awaitable[bool]]


@dataclass(frozen=True)
class Task:
    """One once task. A task file defines exactly one, as ``task = runce.Task(...)`` or with
    ``@runce.task(...)`` on its ``run(ctx)`` function.

    ``already_done(ctx)`` returning true records the task as skipped and applied;
    ``skippable`` lets ``RUNCE_SKIP_<ID>=1`` skip it for now; ``transactional`` runs it in a
    transaction on the store's database, committed together with its applied record.
    """

    run: TaskFunction
    title: str | None = None
    already_done: CheckFunction | None = None
    skippable: bool = False
    transactional: bool = False

    def __post_init__(self) -> None:
        if not callable(self.run):
            raise TypeError("runce.Task(run=...) must be a function taking ctx")
        if self.already_done is not None and not callable(self.already_done):
            raise TypeError("runce.Task(already_done=...) must be a function taking ctx")


@overload
def task(fn: TaskFunction, /) -> Task: ...


@overload
def task(
    *,
    title: str | None = None,
    already_done: CheckFunction | None = None,
    skippable: bool = False,
    transactional: bool = False,
) -> Callable[[TaskFunction], Task]: ...


def task(
    fn: TaskFunction | None = None,
    /,
    *,
    title: str | None = None,
    already_done: CheckFunction | None = None,
    skippable: bool = False,
    transactional: bool = False,
) -> Task | Callable[[TaskFunction], Task]:
    """Make the decorated ``run(ctx)`` function (sync or ``async``) the file's task."""

    def wrap(run: TaskFunction) -> Task:
        return Task(run, title, already_done, skippable, transactional)

    return wrap(fn) if fn is not None else wrap


ProgressCallback = Callable[[int, int | None], None]


@dataclass
class TaskContext:
    """What ``run(ctx)`` and ``already_done(ctx)`` receive."""

    id: str
    title: str
    config: Config
    log: logging.LoggerAdapter[logging.Logger]
    dry_run: bool = False
    session: Any = None  # MongoDB: pymongo's ClientSession inside runce's transaction
    _services: Callable[[], Any] = field(default=lambda: None, repr=False)
    _progress: ProgressCallback = field(default=lambda done, total: None, repr=False)
    _db: TaskConnection | None = field(default=None, repr=False)

    @property
    def db(self) -> TaskConnection:
        """A transactional task's connection (SQLite, PostgreSQL), inside runce's transaction;
        it refuses ``commit()``, ``rollback()`` and whatever else would end that transaction."""
        if self._db is None:
            raise UsageError(
                f"task {self.id}: ctx.db is there only in a transactional task "
                "(@runce.task(transactional=True)) on the sqlite or postgresql store; "
                "on MongoDB, use ctx.session"
            )
        return self._db

    @db.setter
    def db(self, connection: TaskConnection) -> None:
        self._db = connection

    @property
    def services(self) -> Any:
        """The result of the configured ``services`` factory (made once per run)."""
        return self._services()

    def progress(self, done: int, total: int | None = None) -> None:
        """Report progress of a long task; stored with the attempt and shown by ``status``."""
        self._progress(int(done), None if total is None else int(total))


def task_logger(task_id: str) -> logging.LoggerAdapter[logging.Logger]:
    return logging.LoggerAdapter(logging.getLogger("runce.task"), {"task_id": task_id})
