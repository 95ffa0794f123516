"""Pausing, resuming and cancelling a backfill from any machine (docs/backfills.md).

A request is a row in the store, not a signal: the runner reads it at its next batch
boundary, saves its checkpoint, finishes its attempt and releases the lock. A task that is
not running yet is simply not started while the request stands. ``resume`` withdraws the
request; the next ``runce run`` goes on from the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runce.domain.tasks import ControlCommand
from runce.errors import UnknownTask, UsageError
from runce.runtime import Runtime, RuntimeArg, using
from runce.stores.base import Store
from runce.stores.liveness import current_owner
from runce.tasks.discovery import discover
from runce.tasks.states import TaskState, TaskStatus, compute_statuses


@dataclass(frozen=True)
class ControlResult:
    """What a pause, resume or cancel did, in one sentence for people."""

    task_id: str
    command: ControlCommand | None  # None: resumed
    state: str  # the task's state before the request
    message: str

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.task_id,
            "requested": self.command or "resume",
            "state_before": self.state,
            "message": self.message,
        }


def pause_task(task_id: str, config: RuntimeArg = None) -> ControlResult:
    """Ask a task to pause at its next batch boundary (or not to start, if not running)."""
    return _request(task_id, "pause", config)


def cancel_task(task_id: str, config: RuntimeArg = None) -> ControlResult:
    """Ask a task to stop at its next batch boundary and stay stopped; later tasks go on."""
    return _request(task_id, "cancel", config)


def resume_task(task_id: str, config: RuntimeArg = None) -> ControlResult:
    """Withdraw a pause or cancel request; the next run goes on from the checkpoint."""
    return _request(task_id, None, config)


def _request(task_id: str, command: ControlCommand | None, config: RuntimeArg) -> ControlResult:
    with using(config) as runtime:
        return _requested(task_id, command, runtime)


def _requested(task_id: str, command: ControlCommand | None, runtime: Runtime) -> ControlResult:
    cfg, store = runtime.config, runtime.store
    status = _status_of(task_id, store, cfg.tasks_dir)
    before = status.state.value
    if command is not None and status.state in (TaskState.APPLIED, TaskState.SKIPPED):
        raise UsageError(f"{task_id} is already applied; there is nothing to {command}")
    if command is None and status.control is None:
        message = f"{task_id} is {before}: it was not paused or canceled; nothing to resume"
        return ControlResult(task_id, None, before, message)
    requested_by = current_owner(cfg.lock.owner).label
    store.tracker.set_control(task_id, command, requested_by)
    return ControlResult(task_id, command, before, _said(task_id, command, status))


def _status_of(task_id: str, store: Store, tasks_dir: Path) -> TaskStatus:
    tracker = store.tracker
    files = [f for f in discover(tasks_dir) if f.id == task_id]
    statuses = compute_statuses(
        files, tracker.applied(), tracker.open_attempts(), store.lock.holder(), tracker.controls()
    )
    found = [s for s in statuses if s.id == task_id]
    if not found:
        raise UnknownTask(f"no task {task_id!r} in {tasks_dir}; give a task file's id")
    return found[0]


def _said(task_id: str, command: ControlCommand | None, status: TaskStatus) -> str:
    running = status.state is TaskState.RUNNING
    if command is None:
        return f"{task_id} resumed; the next `runce run` goes on from its checkpoint"
    if running:
        return f"{task_id} will {command} at its next batch boundary, keeping its checkpoint"
    return f"{task_id} is {'paused' if command == 'pause' else 'canceled'}; it will not start"
