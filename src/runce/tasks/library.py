"""The programmatic API for once tasks (docs/once-tasks.md#from-python). The CLI is a thin
layer over these functions.

Every function takes ``config``: a :class:`~runce.config.Config`, a path to a config file,
the result of :func:`runce.define_config` or a dict of keys, or None to find the
configuration from the current directory; or a :class:`~runce.runtime.Runtime` whose store
the call uses (a command's, so that its calls share one store). Given a configuration, a
call opens its store for its length and closes it at the end.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypedDict, Unpack

from runce._version import __version__
from runce.config import MAX_CONCURRENCY, MAX_WAIT, Config, bounded
from runce.domain.locks import LockHolder
from runce.domain.schema import SchemaStatus
from runce.domain.tasks import AppliedRecord, Attempt, AttemptStatus
from runce.errors import (
    DriftError,
    LockHeld,
    OutOfOrderError,
    TasksFailed,
    UnknownTask,
    UsageError,
)
from runce.runtime import Runtime, RuntimeArg, using
from runce.stores.base import Store
from runce.stores.liveness import current_owner
from runce.tasks.discovery import TaskFile, discover
from runce.tasks.lease import holding
from runce.tasks.report import RunReport
from runce.tasks.runner import (
    Reporter,
    Runner,
    RunOptions,
    applied_by_for,
    bound_of,
    chosen_ids,
)
from runce.tasks.states import RUNNABLE, TaskState, TaskStatus, compute_statuses
from runce.timeutil import json_time, utcnow

# -- running -------------------------------------------------------------------------------


def run_tasks(
    config: RuntimeArg = None,
    *,
    dry_run: bool | None = None,
    only: Sequence[str] | str | None = None,
    since: str | None = None,
    until: str | None = None,
    concurrency: int = 1,
    wait: float = 0.0,
    keep_going: bool = False,
    applied_by: str = "api",
    reporter: Reporter | None = None,
) -> RunReport:
    """Run pending tasks in id order and return what happened.

    ``only`` (ids, or comma-separated text) selects tasks; None selects every one, and a
    selection naming nothing is a :class:`~runce.errors.UsageError`, as is an empty
    ``since`` or ``until``. A task failure is in the report (``report.ok`` is false); drift,
    a held or lost lock and bad task files raise :class:`~runce.errors.RunceError` subclasses.
    """
    bounded("concurrency", concurrency, 1, MAX_CONCURRENCY, duration=False)
    bounded("wait", wait, 0, MAX_WAIT)
    selection = (chosen_ids(only, "only"), bound_of(since, "since"), bound_of(until, "until"))
    with using(config) as runtime:
        cfg = runtime.config
        options = RunOptions(
            dry_run=cfg.dry_run if dry_run is None else dry_run,
            only=selection[0],
            since=selection[1],
            until=selection[2],
            concurrency=concurrency,
            wait=wait,
            keep_going=keep_going,
            applied_by=applied_by,
        )
        return Runner(cfg, runtime.store, options, reporter).run()


def run_pending_on_boot(
    config: RuntimeArg = None, *, wait: float = 300.0, reporter: Reporter | None = None
) -> RunReport:
    """Apply pending tasks when an application starts; raise if any fails.

    Waits up to ``wait`` seconds for another instance holding the lock, so replicas
    starting together apply each task once and all start only when it is done. A missing
    tasks folder is nothing to do. Reports through ``logging`` (the ``runce.boot`` logger)
    unless given a ``reporter``; a failure raises :class:`~runce.errors.TasksFailed`
    saying which task failed and how many were not attempted. A lock still held after
    ``wait`` (:class:`~runce.errors.LockHeld`), or a drifted or out-of-order task refused
    by ``on_drift`` or ``on_out_of_order``, raises before any task runs; the summary line
    is logged all the same, and the error carries the count as ``not_attempted`` and in a
    note on its traceback.
    """
    from runce.tasks import boot

    with using(config) as runtime:
        return _run_on_boot(runtime, wait, reporter or boot.BootLog())


def _run_on_boot(runtime: Runtime, wait: float, reporter: Reporter) -> RunReport:
    from runce.tasks import boot

    cfg = runtime.config
    if not cfg.tasks_dir.is_dir():
        boot.no_tasks_folder(cfg)
        return RunReport(store=runtime.description)
    statuses = task_status(runtime).tasks
    pending = sum(s.state in RUNNABLE for s in statuses)
    boot.pending(pending, len(statuses))
    try:
        report = run_tasks(runtime, wait=wait, applied_by="boot", reporter=reporter)
    except (LockHeld, DriftError, OutOfOrderError) as refused:  # before any task ran
        boot.refused(refused, pending)
        refused.not_attempted = pending
        refused.add_note(f"{pending} once task(s) not attempted on boot")
        raise
    boot.finished(report)
    if not report.ok:
        failed = ", ".join(r.id for r in report.failed) or "the lock was lost"
        skipped = report.counts["not-run"]
        raise TasksFailed(
            f"once tasks did not complete on boot: {failed}; {skipped} task(s) not attempted",
            report,
        )
    return report


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusReport:
    store: str
    tasks: list[TaskStatus]
    holder: LockHolder | None

    @property
    def would_run(self) -> list[TaskStatus]:
        return [s for s in self.tasks if s.state in RUNNABLE]

    @property
    def drifted(self) -> list[TaskStatus]:
        return [s for s in self.tasks if s.state is TaskState.DRIFTED]

    def to_dict(self) -> dict[str, object]:
        holder = self.holder
        return {
            "store": self.store,
            "lock": None
            if holder is None
            else {
                "owner": holder.owner,
                "host": holder.host,
                "pid": holder.pid,
                "since": json_time(holder.since) if holder.since else None,
                "state": holder.state,
            },
            "tasks": [s.to_dict() for s in self.tasks],
        }


def task_status(config: RuntimeArg = None) -> StatusReport:
    """Every task file joined with the store: its state, and the lock's holder."""
    with using(config) as runtime:
        files = discover(runtime.config.tasks_dir)
        return status_of(runtime.store, files)


def status_on(store: Store, config: Config) -> StatusReport:
    """:func:`task_status` on a store the caller keeps open (``runce serve``'s, shared by its
    requests), rather than one opened and closed for the call."""
    return status_of(store, discover(config.tasks_dir))


def status_of(store: Store, files: list[TaskFile]) -> StatusReport:
    """The states of the tasks of ``files`` on an open store, and the lock's holder."""
    holder = store.lock.holder()
    tracker = store.tracker
    statuses = compute_statuses(
        files,
        tracker.applied(),
        tracker.open_attempts(),
        holder,
        tracker.controls(),
        tracker.all_checkpoints(),
    )
    return StatusReport(store.description, statuses, holder)


def list_applied(config: RuntimeArg = None) -> list[AppliedRecord]:
    """The store's last outcome per task id, in id order (reads only the store)."""
    with using(config) as runtime:
        store = runtime.store
        return sorted(store.tracker.applied().values(), key=lambda record: record.id)


def task_history(config: RuntimeArg = None, task_id: str | None = None) -> list[Attempt]:
    """Every attempt (oldest first), or one task's."""
    with using(config) as runtime:
        store = runtime.store
        return store.tracker.history(task_id)


def latest_attempts(
    store: Store, task_ids: Sequence[str], per_task: int
) -> dict[str, list[Attempt]]:
    """The last ``per_task`` attempts of each task (oldest first), by task id, read from
    the end of each task's history only, on a store the caller keeps open."""
    return store.tracker.latest_attempts(task_ids, per_task)


def store_description(config: RuntimeArg = None) -> str:
    with using(config) as runtime:
        store = runtime.store
        return store.description


# -- changing records without running ------------------------------------------------------


def repair(
    config: RuntimeArg = None,
    ids: Sequence[str] = (),
    *,
    all_drifted: bool = False,
    wait: float = 0.0,
) -> list[Attempt]:
    """Accept the current file of drifted tasks by appending a ``repaired`` record."""
    with using(config) as runtime:
        return _append_records(runtime, ids, "repaired", wait, everything=all_drifted)


def baseline(
    config: RuntimeArg = None,
    ids: Sequence[str] = (),
    *,
    all_pending: bool = False,
    until: str | None = None,
    wait: float = 0.0,
) -> list[Attempt]:
    """Record pending tasks as applied without running them (adopting runce late)."""
    with using(config) as runtime:
        return _append_records(runtime, ids, "baselined", wait, everything=all_pending, until=until)


def _append_records(
    runtime: Runtime,
    ids: Sequence[str],
    status: AttemptStatus,
    wait: float,
    everything: bool,
    until: str | None = None,
) -> list[Attempt]:
    bounded("wait", wait, 0, MAX_WAIT)
    bound_of(until, "until")
    if not ids and not everything:
        raise UsageError("name the tasks, or pass --all")
    cfg = runtime.config
    files = {f.id: f for f in discover(cfg.tasks_dir)}
    owner = current_owner(cfg.lock.owner)
    store = runtime.store
    with holding(store.lock, owner, cfg.lock.ttl, wait) as keeper:
        tracker = store.tracker
        statuses = compute_statuses(
            files.values(), tracker.applied(), tracker.open_attempts(), store.lock.holder()
        )
        targets = _targets(statuses, ids, status, everything, until)
        rows = []
        for target in targets:
            row, record = _appended(
                files[target.id], target, status, owner.label, keeper.lease.token
            )
            tracker.record(row, record, keeper.lease)
            rows.append(row)
        return rows


def _targets(
    statuses: list[TaskStatus],
    ids: Sequence[str],
    status: AttemptStatus,
    everything: bool,
    until: str | None,
) -> list[TaskStatus]:
    by_id = {s.id: s for s in statuses}
    wanted = TaskState.DRIFTED if status == "repaired" else None
    if everything:
        chosen = [
            s
            for s in statuses
            if (s.adopted or (s.state is wanted if wanted else s.state in RUNNABLE))
            and (until is None or s.id[: len(until)] <= until)
        ]
        return chosen
    targets = []
    for task_id in ids:
        found = by_id.get(task_id)
        if found is None or found.state is TaskState.MISSING:
            raise UnknownTask(f"no task file has the id {task_id!r}")
        if found.adopted:  # applied under another tool's checksum: record runce's own
            targets.append(found)
            continue
        if status == "repaired" and found.state is not TaskState.DRIFTED:
            raise UsageError(f"{task_id} is {found.state.value}, not DRIFTED; nothing to repair")
        if status == "baselined" and found.state not in RUNNABLE:
            raise UsageError(
                f"{task_id} is {found.state.value}; only tasks not yet applied can be baselined"
            )
        targets.append(found)
    return targets


def _appended(
    task_file: TaskFile, target: TaskStatus, status: AttemptStatus, owner_label: str, token: str
) -> tuple[Attempt, AppliedRecord]:
    owner = current_owner(owner_label)
    now = utcnow()
    title = target.title or task_file.id
    row = Attempt(
        attempt_id=secrets.token_hex(16),
        task_id=task_file.id,
        title=title,
        checksum=task_file.checksum,
        status=status,
        started_at=now,
        finished_at=now,
        duration_ms=0,
        applied_by=applied_by_for("cli"),
        owner=owner.label,
        host=owner.host,
        pid=owner.pid,
        machine=owner.machine,
        runce_version=__version__,
        lock_token=token,
        note=_note(target, status),
    )
    previous = target.applied
    if previous is not None and (status == "repaired" or target.adopted):
        record = replace(previous, checksum=task_file.checksum, attempt_id=row.attempt_id)
    else:
        record = AppliedRecord(
            id=task_file.id,
            name=title,
            checksum=task_file.checksum,
            applied_at=now,
            duration_ms=0,
            status="success",
            attempt_id=row.attempt_id,
        )
    return row, record


def _note(target: TaskStatus, status: AttemptStatus) -> str:
    if target.adopted and target.applied is not None:
        return f"recorded runce's checksum (was {target.applied.checksum}, written by another tool)"
    if status == "repaired" and target.applied is not None:
        return f"accepted a changed file (was {target.applied.checksum})"
    return "recorded as applied without running"


# -- the lock and the schema -----------------------------------------------------------------


def lock_holder(config: RuntimeArg = None) -> LockHolder | None:
    with using(config) as runtime:
        store = runtime.store
        return store.lock.holder()


def unlock(config: RuntimeArg = None, *, force: bool = False) -> LockHolder | None:
    """Clear an expired or dead lock (any lock with ``force``); return what was cleared."""
    with using(config) as runtime:
        store = runtime.store
        return store.lock.clear(force=force)


def schema_status(config: RuntimeArg = None) -> SchemaStatus:
    with using(config) as runtime:
        store = runtime.store
        return store.schema_status()


def upgrade_schema(config: RuntimeArg = None) -> list[str]:
    with using(config) as runtime:
        store = runtime.store
        return store.upgrade()


def schema_sql(config: RuntimeArg = None) -> str:
    with using(config) as runtime:
        store = runtime.store
        return store.schema_sql()


def make_task(config: RuntimeArg = None, name: str = "", tasks_dir: Path | None = None) -> Path:
    """Write a new task file from the template; return its path."""
    from runce.tasks.scaffold import write_task

    with using(config) as runtime:
        return write_task(tasks_dir or runtime.config.tasks_dir, name)


# -- async twins ----------------------------------------------------------------------------


class TaskRunOptions(TypedDict, total=False):
    """:func:`run_tasks`'s keywords, as :func:`arun_tasks` takes them."""

    dry_run: bool | None
    only: Sequence[str] | str | None
    since: str | None
    until: str | None
    concurrency: int
    wait: float
    keep_going: bool
    applied_by: str
    reporter: Reporter | None


async def arun_tasks(config: RuntimeArg = None, **options: Unpack[TaskRunOptions]) -> RunReport:
    """:func:`run_tasks` for async callers (runs on a worker thread)."""
    import asyncio

    return await asyncio.to_thread(lambda: run_tasks(config, **options))


async def arun_pending_on_boot(config: RuntimeArg = None, *, wait: float = 300.0) -> RunReport:
    import asyncio

    return await asyncio.to_thread(lambda: run_pending_on_boot(config, wait=wait))


async def atask_status(config: RuntimeArg = None) -> StatusReport:
    import asyncio

    return await asyncio.to_thread(task_status, config)


async def alist_applied(config: RuntimeArg = None) -> list[AppliedRecord]:
    import asyncio

    return await asyncio.to_thread(list_applied, config)
