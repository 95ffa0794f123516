"""Schedules stored as a starting worker stores them: the library's scheduler synchronises
the declarations to the configured store (for the server's and the client's tests)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from runce.config import Config
from runce.runs import library as runs_library
from runce.runs.scheduler import Scheduler
from runce.runs.schedules import ScheduleSpec
from runce.runtime import shared_store


def scheduler(
    config: Config, *specs: ScheduleSpec, clock: Callable[[], datetime] | None = None
) -> Scheduler:
    """The scheduler of ``specs`` on ``config``'s store, with them stored; ``tick()`` it to
    enqueue what is due by ``clock``."""
    store = shared_store(config.store)
    made = Scheduler(
        runs_library.schedules_of(store), runs_library.service(config), specs, clock=clock
    )
    made.sync()
    return made
