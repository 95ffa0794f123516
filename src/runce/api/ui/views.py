"""What the dashboard's pages show, gathered through the library: the queue's bounded
counts, workers with their liveness, once tasks with their history, runs filtered and found.

Every figure comes from :mod:`runce.runs` and :mod:`runce.tasks`, the calls the CLI and
the HTTP API make, on the store the app keeps open for every request (``ctx.store``): a
page view opens no store of its own, and reads no table whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from runce.api.appstate import AppState
from runce.api.ui.render import progress_percent, progress_text
from runce.domain.locks import LockHolder
from runce.domain.runs import STATS_CAP, RunStats, WorkerInfo
from runce.domain.schedules import Schedule
from runce.domain.tasks import Attempt
from runce.errors import RunceError
from runce.runs import library as runs_library
from runce.tasks import library as tasks_library
from runce.tasks.states import TaskState, TaskStatus

# What to do about a once task in a state that needs a person (shown beside it).
ADVICE: dict[TaskState, str] = {
    TaskState.INTERRUPTED: (
        "The process running it died. `runce run` closes the open attempt and runs the task "
        "again; make sure the task is safe to re-run first (or `runce baseline` it)."
    ),
    TaskState.DRIFTED: (
        "Its file changed after it was applied. Restore the file, or accept the change "
        "with `runce repair <id>` (the task does not run again)."
    ),
    TaskState.FAILED: "It failed: fix the cause and `runce run` tries it again.",
    TaskState.MISSING: (
        "It was applied and its file is gone: restore the file if that was a mistake."
    ),
}


@dataclass(frozen=True)
class WorkerRow:
    info: WorkerInfo
    status: str  # live, stale or stopped
    seen_ago: timedelta


@dataclass(frozen=True)
class Overview:
    stats: RunStats
    kinds: list[str]
    workers: list[WorkerRow]
    tasks: TaskBoard | None

    def active(self, state: str, kind: str | None = None) -> int:
        return sum(n for (s, k), n in self.stats.active.items() if s == state and kind in (None, k))

    def finished(self, state: str, kind: str | None = None) -> int:
        return sum(
            n for (s, k), n in self.stats.finished.items() if s == state and kind in (None, k)
        )

    @property
    def throughput(self) -> int:
        return sum(self.stats.finished.values())

    @property
    def oldest_age(self) -> timedelta | None:
        oldest = self.stats.oldest_queued
        return None if oldest is None else self.stats.now - oldest

    @property
    def live_workers(self) -> int:
        return sum(1 for w in self.workers if w.status == "live")

    def at_least(self, state: str) -> str:
        return "≥ " if state in self.stats.capped else ""


# The states in which a task may be asked to pause or cancel: it runs now, or would run
# next (a task not started yet is then not started while the request stands).
CONTROLLABLE = frozenset(
    {TaskState.PENDING, TaskState.RUNNING, TaskState.FAILED, TaskState.INTERRUPTED}
)


@dataclass(frozen=True)
class TaskRow:
    status: TaskStatus
    history: list[Attempt]
    advice: str | None

    @property
    def last(self) -> Attempt | None:
        return self.history[-1] if self.history else None

    @property
    def actions(self) -> tuple[str, ...]:
        """What a writer may ask of this task now: pause and cancel, or resume."""
        return task_actions(self.status)


def task_actions(status: TaskStatus) -> tuple[str, ...]:
    if status.control is not None:
        return ("resume",)
    return ("pause", "cancel") if status.state in CONTROLLABLE else ()


def live_task(status: TaskStatus) -> dict[str, object]:
    """What the once tasks page polls for one task: its state, progress and actions."""
    progress = status.backfill
    return {
        "id": status.id,
        "state": status.state.value,
        "requested": None if status.control is None else status.control.command,
        "progress": None if progress is None else progress.to_dict(),
        "progress_text": None if progress is None else progress_text(progress),
        "percent": None if progress is None else progress_percent(progress),
        "actions": list(task_actions(status)),
    }


@dataclass(frozen=True)
class TaskBoard:
    rows: list[TaskRow] = field(default_factory=list)
    holder: LockHolder | None = None
    error: str | None = None

    def count(self, state: str) -> int:
        return sum(1 for row in self.rows if row.status.state == state)


WINDOW = 3600.0  # seconds of "the last hour"
HISTORY_SHOWN = 20  # attempts shown per once task, the latest
CAP = STATS_CAP  # runs counted at most: queued ones per kind, the others in all


def workers(ctx: AppState) -> list[WorkerRow]:
    """The workers not stopped, live or stale (no heartbeat for two leases), and the last
    :data:`~runce.domain.runs.STOPPED_SHOWN` stopped ones (the store's bounded listing)."""
    now = ctx.queue.now()
    stale_after = timedelta(seconds=2 * ctx.config.worker.lease)
    rows = []
    for info in ctx.queue.workers():
        seen = now - info.last_seen
        status = "stopped" if info.state == "stopped" else "stale" if seen > stale_after else "live"
        rows.append(WorkerRow(info, status, seen))
    return rows


def overview(ctx: AppState, with_tasks: bool) -> Overview:
    stats = ctx.runs.stats(WINDOW, cap=CAP)
    kinds = sorted({kind for _, kind in (*stats.active, *stats.finished)})
    board = task_board(ctx, history_per_task=0) if with_tasks else None  # counts only
    return Overview(stats, kinds, workers(ctx), board)


def task_statuses(ctx: AppState) -> list[TaskStatus]:
    """Every once task's status, for the page's live view (none when they cannot be read)."""
    try:
        return tasks_library.status_on(ctx.store, ctx.config).tasks
    except RunceError:
        return []


def task_board(ctx: AppState, history_per_task: int = HISTORY_SHOWN) -> TaskBoard:
    """Every once task with its state and its latest attempts; a broken task directory or
    an unreachable store is told, not raised (the rest of the dashboard still works)."""
    try:
        report = tasks_library.status_on(ctx.store, ctx.config)
        ids = [s.id for s in report.tasks]
        history = (
            tasks_library.latest_attempts(ctx.store, ids, history_per_task)
            if history_per_task
            else {}
        )
    except RunceError as exc:
        return TaskBoard(error=str(exc))
    rows = [TaskRow(s, history.get(s.id, []), ADVICE.get(s.state)) for s in report.tasks]
    return TaskBoard(rows, report.holder)


def schedules(ctx: AppState) -> list[Schedule]:
    return runs_library.list_schedules(config=ctx.config)


def parse_moment(text: str | None, what: str) -> datetime | None:
    """A ``datetime-local`` field's value (or ISO 8601), read as UTC when it has no zone."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a date and time (YYYY-MM-DDTHH:MM)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
