"""Where a job's ``.later``, ``.now`` and ``.batch`` send their work.

Job definitions (:mod:`runce.runs.jobs`) sit below the library's entry points
(:mod:`runce.runs.library`), which import them, so a job does not import the entry points: it
asks this seam for them. :mod:`runce.runs.library` installs them here when it is imported. A
job used before anything imported it (a script that defines a job and calls ``.later`` on
it) has the seam import it by name, once: the one way up from a job to the entry points.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from runce.domain.runs import Run
    from runce.runs.inline import InlineCall, JobResult
    from runce.runs.jobs import Job


class InlineCalls(Protocol):
    def __call__(self, job: Job[Any, Any], *, persist: bool, config: Any) -> InlineCall:
        """What ``job.now()`` and ``job.batch()`` run with."""


class BatchRunner(Protocol):
    def __call__(
        self,
        call: Callable[[Any], Any],
        items: Sequence[Any],
        concurrency: int,
        stop_on_error: bool,
    ) -> list[JobResult[Any, Any]]:
        """Call ``call`` on every item, ``concurrency`` at a time, in the items' order."""


@dataclass(frozen=True, slots=True)
class Dispatch:
    """The entry points a job dispatches to."""

    enqueue: Callable[..., Run]  # runce.enqueue
    aenqueue: Callable[..., Awaitable[Run]]  # runce.aenqueue
    inline_call: InlineCalls
    run_batch: BatchRunner


_installed: list[Dispatch] = []


def install(dispatch: Dispatch) -> None:
    """Make ``dispatch`` what every job sends its work to (called by :mod:`runce.runs.library`)."""
    _installed[:] = [dispatch]


def dispatch() -> Dispatch:
    """The installed entry points, importing :mod:`runce.runs.library` first if nothing has."""
    if not _installed:
        importlib.import_module("runce.runs.library")  # installs its entry points on import
    return _installed[0]
