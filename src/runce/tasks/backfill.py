"""What a backfill task file defines (docs/backfills.md): a once task that works through its data in
batches, checkpointing a cursor after each, so it can be paused, resumed and survive a kill.

``fetch(ctx, cursor, size)`` returns ``(batch, next_cursor)``, with ``next_cursor`` None after
the last batch; ``process(ctx, batch)`` does the work. Cursors are JSON values; the first
``fetch`` gets None (or, with ``parallel=N``, the cursor ``ranges(ctx, N)`` gave its range).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runce.config import parse_duration
from runce.tasks.model import CheckFunction, Task, TaskFunction

if TYPE_CHECKING:
    from runce.tasks.model import TaskContext

Cursor = Any  # a JSON value: None, a number, a string, a list or a dict of them
Batch = Sequence[Any]
FetchFunction = Callable[
    ["TaskContext", Cursor, int], "tuple[Batch, Cursor] | Awaitable[tuple[Batch, Cursor]]"
]
ProcessFunction = Callable[["TaskContext", Batch], Awaitable[None] | None]
TotalFunction = Callable[["TaskContext"], int | Awaitable[int]]
RangesFunction = Callable[["TaskContext", int], Sequence[Cursor]]
Duration = float | int | str


def _driven_by_the_runner(ctx: TaskContext) -> None:
    raise TypeError("a runce.Backfill is run by `runce run`, batch by batch, not called")


@dataclass(frozen=True, kw_only=True)
class Backfill(Task):
    """A once task run in batches, with a checkpoint after each (docs/backfills.md).

    ``batch_size`` items per ``fetch``; ``transactional`` commits each batch's work (done
    through ``ctx.db`` or ``ctx.session``) with its checkpoint, so every batch happens exactly
    once; ``throttle`` waits between batches (seconds, or ``"50ms"``); ``target_batch_time``
    grows or shrinks the batch size, within ``min_batch_size`` and ``max_batch_size``, toward
    batches of that duration; ``throttle_when(ctx)`` returning true waits before the next
    batch until it returns false; ``total(ctx)`` tells how many items there are, for progress
    and ETA; ``parallel=N`` with ``ranges(ctx, N)`` processes N key ranges at once, each
    from the cursor ``ranges`` gave it, with its own checkpoint; ``threads`` is how many of
    them one runner processes at once (default: all), leaving the others to the helpers
    that ``runce backfill join ID`` starts on other hosts.
    """

    run: TaskFunction = field(default=_driven_by_the_runner, repr=False)
    fetch: FetchFunction
    process: ProcessFunction
    batch_size: int = 1000
    throttle: Duration | None = None
    target_batch_time: Duration | None = None
    min_batch_size: int = 1
    max_batch_size: int | None = None
    throttle_when: CheckFunction | None = None
    total: TotalFunction | None = None
    parallel: int = 1
    ranges: RangesFunction | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("fetch", "process"):
            if not callable(getattr(self, name)):
                raise TypeError(f"runce.Backfill({name}=...) must be a function")
        for name in ("throttle_when", "total", "ranges"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"runce.Backfill({name}=...) must be a function")
        _positive("batch_size", self.batch_size)
        _positive("min_batch_size", self.min_batch_size)
        _positive("parallel", self.parallel)
        if self.threads is not None:
            _positive("threads", self.threads)
        if self.max_batch_size is not None:
            _positive("max_batch_size", self.max_batch_size)
            if self.max_batch_size < self.min_batch_size:
                raise ValueError("runce.Backfill(max_batch_size=...) is below min_batch_size")
        self.throttle_seconds  # noqa: B018 - a bad duration fails where the task is defined
        self.target_seconds  # noqa: B018
        if self.parallel > 1 and self.ranges is None:
            raise TypeError(
                "runce.Backfill(parallel=N) needs ranges=fn: fn(ctx, n) returns the first "
                "cursor of each of the n key ranges"
            )

    @property
    def throttle_seconds(self) -> float:
        return _seconds("throttle", self.throttle)

    @property
    def target_seconds(self) -> float | None:
        if self.target_batch_time is None:
            return None
        seconds = _seconds("target_batch_time", self.target_batch_time)
        if seconds <= 0:
            raise ValueError("runce.Backfill(target_batch_time=...) must be more than 0")
        return seconds

    @property
    def size_bounds(self) -> tuple[int, int]:
        """The smallest and largest batch size an adapting backfill may pick."""
        largest = self.max_batch_size or max(self.batch_size * 10, self.min_batch_size)
        return self.min_batch_size, largest


def backfill(
    *, fetch: FetchFunction, title: str | None = None, **options: Any
) -> Callable[[ProcessFunction], Backfill]:
    """Make the decorated ``process(ctx, batch)`` function the file's backfill.

    Takes ``fetch=`` and every other option of :class:`Backfill`.
    """

    def wrap(process: ProcessFunction) -> Backfill:
        return Backfill(title=title, fetch=fetch, process=process, **options)

    return wrap


def check_cursor(cursor: Cursor, where: str) -> Cursor:
    """A cursor must survive JSON unchanged, as it is stored between runs."""
    try:
        text = json.dumps(cursor, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{where} returned a cursor that is not a JSON value: {exc}") from exc
    if json.loads(text) != cursor:
        raise TypeError(
            f"{where} returned a cursor that JSON does not keep as it is ({cursor!r}); "
            "use strings, numbers, lists and dicts with string keys"
        )
    return cursor


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"runce.Backfill({name}=...) must be a whole number of at least 1")


def _seconds(name: str, value: Duration | None) -> float:
    if value is None:
        return 0.0
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"runce.Backfill({name}={value!r}): {exc}") from exc
