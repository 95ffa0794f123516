"""Running pending once tasks (docs/once-tasks.md#running).

The order of a run:

1. Find the task files and read the applied state (no lock, nothing imported).
2. Refuse drift and (optionally) out-of-order tasks; stop here when nothing is pending.
3. Import the tasks that will run, so a broken file fails before anything is recorded.
4. Take the lock (bounded wait), start renewing it, and read the applied state again:
   another runner may have finished tasks meanwhile.
5. Close attempts whose runner died as ``interrupted``, then run the tasks in id order,
   up to ``concurrency`` at once, starting none after a failure unless ``keep_going``.
"""

from __future__ import annotations

import inspect
import os
import secrets
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from runce import tracing
from runce._version import __version__
from runce.config import Config, ServiceFactory
from runce.domain.locks import Lease, LockHolder, Owner
from runce.domain.tasks import AppliedRecord, Attempt, AttemptStatus
from runce.errors import DriftError, LockLost, OutOfOrderError, UnsupportedFeature, UsageError
from runce.errortext import cap, clean, describe, message_of
from runce.stores.base import RangeClaims, Store
from runce.stores.liveness import current_owner
from runce.tasks.backfill import Backfill
from runce.tasks.backfilling import BackfillDriver, BackfillOutcome, dry_run_note
from runce.tasks.claiming import claimer_of
from runce.tasks.discovery import TaskFile, discover, skip_variable
from runce.tasks.lease import LeaseKeeper, holding
from runce.tasks.loader import load_task
from runce.tasks.model import Task, TaskContext, task_logger
from runce.tasks.report import Outcome, RunReport, TaskResult
from runce.tasks.states import RUNNABLE, TaskState, TaskStatus, compute_statuses
from runce.timeutil import utcnow
from runce.transaction import TaskConnection, session_guarded

if TYPE_CHECKING:
    from concurrent.futures import Future

PROGRESS_WRITE_INTERVAL = 1.0
_CI_VARIABLES = ("GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "JENKINS_URL", "TF_BUILD")


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    only: Sequence[str] | None = None  # None: every task; never empty (see chosen_ids)
    since: str | None = None
    until: str | None = None
    concurrency: int = 1
    wait: float = 0.0
    keep_going: bool = False
    applied_by: str = "cli"


class Reporter(Protocol):
    """Receives a run's events as they happen (the CLI prints them)."""

    def started(self, task_id: str, title: str, note: str | None) -> None: ...

    def progress(self, task_id: str, done: int, total: int | None) -> None: ...

    def finished(self, result: TaskResult) -> None: ...

    def notice(self, text: str) -> None: ...

    def waiting(self, holder: LockHolder | None) -> None: ...


class SilentReporter:
    def started(self, task_id: str, title: str, note: str | None) -> None:
        pass

    def progress(self, task_id: str, done: int, total: int | None) -> None:
        pass

    def finished(self, result: TaskResult) -> None:
        pass

    def notice(self, text: str) -> None:
        pass

    def waiting(self, holder: LockHolder | None) -> None:
        pass


def applied_by_for(requested: str, env: dict[str, str] | None = None) -> str:
    """``ci`` when a command-line run happens inside a CI system."""
    env = dict(os.environ) if env is None else env
    in_ci = env.get("CI", "").lower() in {"1", "true", "yes"} or any(
        v in env for v in _CI_VARIABLES
    )
    return "ci" if requested == "cli" and in_ci else requested


def chosen_ids(value: Sequence[str] | str | None, name: str) -> tuple[str, ...] | None:
    """The ids of a selection (a list, or comma-separated text); None selects everything.

    A selection that names nothing is refused rather than read as "everything": a deploy
    script whose list of ids came out empty must not apply every pending task.
    """
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(part, str) for part in parts):
        raise UsageError(f"{name} must be task ids (strings), got {value!r}")
    ids = tuple(part.strip() for part in parts if part.strip())
    if not ids:
        raise UsageError(f"{name} names no task id ({value!r}); leave it out to select every task")
    return ids


def bound_of(value: str | None, name: str) -> str | None:
    """A ``--since``/``--until`` bound; an empty one is refused, as it would bound nothing."""
    if value is not None and not value.strip():
        raise UsageError(f"{name} is empty; give an id prefix, or leave it out")
    return value


def select(files: Sequence[TaskFile], options: RunOptions) -> set[str]:
    """Ids chosen by ``--only``, ``--since`` and ``--until`` (inclusive prefix bounds)."""
    ids = {f.id for f in files}
    chosen = set(ids)
    if options.only is not None:
        unknown = sorted(set(options.only) - ids)
        if unknown:
            raise UsageError(f"--only names tasks with no file: {', '.join(unknown)}")
        chosen &= set(options.only)
    if options.since:
        chosen = {i for i in chosen if i >= options.since}
    if options.until:
        until = options.until
        chosen = {i for i in chosen if i[: len(until)] <= until}
    return chosen


@dataclass
class Plan:
    files: list[TaskFile]
    statuses: dict[str, TaskStatus]
    chosen: set[str]

    @property
    def to_run(self) -> list[TaskFile]:
        wanted = RUNNABLE | {TaskState.RUNNING}  # running elsewhere: still needs the lock
        paused = self.paused
        return [
            f
            for f in self.files
            if f.id in self.chosen
            and self.statuses[f.id].state in wanted
            and (paused is None or f.id < paused)
        ]

    @property
    def paused(self) -> str | None:
        """The first chosen task that is paused: tasks after it wait for it."""
        return next(
            (
                f.id
                for f in self.files
                if f.id in self.chosen and self.statuses[f.id].state is TaskState.PAUSED
            ),
            None,
        )

    @property
    def drifted(self) -> list[TaskStatus]:
        return [s for s in self.statuses.values() if s.state is TaskState.DRIFTED]


class Runner:
    """One ``runce run``: owns the lease and the report while it lasts."""

    def __init__(
        self,
        config: Config,
        store: Store,
        options: RunOptions,
        reporter: Reporter | None = None,
        owner: Owner | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.options = options
        self.reporter: Reporter = reporter or SilentReporter()
        self.owner = owner or current_owner(config.lock.owner)
        self.applied_by = applied_by_for(options.applied_by)
        self.services = ServiceFactory(config)
        self.report = RunReport(store=store.description, dry_run=options.dry_run)
        self._lease: Lease | None = None
        self._keeper: LeaseKeeper | None = None
        self._stop = threading.Event()
        self._paused: str | None = None  # a backfill paused during this run holds later tasks

    # -- the run -------------------------------------------------------------------------

    def run(self) -> RunReport:
        started = time.perf_counter()
        files = discover(self.config.tasks_dir)
        plan = self._plan(files, select(files, self.options), holder=None)
        self._refuse(plan)
        if self.options.dry_run:
            self._dry_run(plan)
        elif plan.to_run:
            tasks = self._load(plan.to_run)
            self._run_locked(plan, tasks)
        else:
            self._report_idle(plan, [])
        self.report.duration_ms = round((time.perf_counter() - started) * 1000)
        return self.report

    def _plan(self, files: list[TaskFile], chosen: set[str], holder: LockHolder | None) -> Plan:
        tracker = self.store.tracker
        statuses = compute_statuses(
            files, tracker.applied(), tracker.open_attempts(), holder, tracker.controls()
        )
        by_id = {s.id: s for s in statuses if s.state is not TaskState.MISSING}
        return Plan(files, by_id, chosen)

    def _refuse(self, plan: Plan, warn: bool = True) -> None:
        if plan.drifted and self.config.on_drift == "fail":
            first = plan.drifted[0]
            more = f" (and {len(plan.drifted) - 1} more)" if len(plan.drifted) > 1 else ""
            raise DriftError(
                f"{first.path} changed after it was applied{more}; undo the change, put the new "
                "work in a new task, or accept it with `runce repair "
                f"{first.id}`"
            )
        for status in plan.drifted if warn else ():
            self.reporter.notice(
                f"warning: {status.path} changed after it was applied (on_drift = warn)"
            )
        late = [f for f in plan.to_run if plan.statuses[f.id].out_of_order]
        if late and self.config.on_out_of_order == "fail":
            raise OutOfOrderError(
                f"{late[0].path} is pending but sorts before tasks already applied "
                '(on_out_of_order = fail); rename it to sort last, or set on_out_of_order = "run"'
            )

    def _load(self, to_run: list[TaskFile]) -> dict[str, Task]:
        tasks = {f.id: load_task(f) for f in to_run}
        if not self.store.supports_transactions:
            for task_id, task in tasks.items():
                if task.transactional:
                    raise UnsupportedFeature(
                        f"task {task_id} is transactional, but {self.store.description} "
                        "cannot run transactional tasks; "
                        "use the sqlite, postgresql or mongodb store"
                    )
        return tasks

    def _run_locked(self, plan: Plan, tasks: dict[str, Task]) -> None:
        if not self.config.lock.enabled:
            self._run_planned(plan, tasks)
            return
        lock = self.store.lock
        with holding(
            lock, self.owner, self.config.lock.ttl, self.options.wait, self.reporter.waiting
        ) as keeper:
            self._lease, self._keeper = keeper.lease, keeper
            self._run_planned(plan, tasks, lock.holder())
            if keeper.reason is not None and self.report.lock_lost is None:
                # Lost while the last task ran: its outcome may be recorded, but the run
                # did not hold the lock throughout, and must say so.
                self.report.lock_lost = keeper.reason
                self.reporter.notice(f"lock lost: {keeper.reason}")

    def _run_planned(
        self, plan: Plan, tasks: dict[str, Task], holder: LockHolder | None = None
    ) -> None:
        plan = self._plan(plan.files, plan.chosen, holder)  # again, now that we hold the lock
        self._refuse(plan, warn=False)
        notes = self._close_interrupted(plan)
        if plan.paused is not None:
            self.reporter.notice(
                f"{plan.paused} is paused; the tasks after it wait for it "
                f"(`runce resume {plan.paused}`, then run again)"
            )
        for task_file in plan.to_run:
            tasks.setdefault(task_file.id, load_task(task_file))
        self._report_idle(plan, self._execute(plan, tasks, notes))

    def _report_idle(self, plan: Plan, ran: list[TaskResult]) -> None:
        """Merge what ran with the tasks that did not need to, in id order."""
        by_id = {r.id: r for r in ran}
        for task_file in plan.files:
            status = plan.statuses[task_file.id]
            result = by_id.get(task_file.id) or _idle_result(status, task_file.id in plan.chosen)
            self.report.results.append(result)

    # -- interrupted attempts --------------------------------------------------------------

    def _close_interrupted(self, plan: Plan) -> dict[str, str]:
        """Finish the dead runners' open attempts as ``interrupted``; return a note per task."""
        notes: dict[str, str] = {}
        for task_file in plan.to_run:
            status = plan.statuses[task_file.id]
            if status.attempt is None or status.state is not TaskState.INTERRUPTED:
                continue
            dead = status.attempt
            closed = replace(
                dead,
                status="interrupted",
                finished_at=utcnow(),
                duration_ms=_ms_since(dead),
                note="its runner died or lost the lock",
            )
            self.store.tracker.finish(closed, None, self._lease)
            notes[task_file.id] = (
                f"re-run: the attempt started {dead.started_at:%Y-%m-%d %H:%M:%S} UTC by "
                f"{dead.host} pid {dead.pid} was interrupted"
            )
        for task_file in plan.to_run:
            if plan.statuses[task_file.id].out_of_order:
                notes[task_file.id] = _join(notes.get(task_file.id), "out of order")
        return notes

    # -- executing ---------------------------------------------------------------------------

    def _execute(
        self, plan: Plan, tasks: dict[str, Task], notes: dict[str, str]
    ) -> list[TaskResult]:
        to_run = [f for f in plan.to_run if plan.statuses[f.id].state is not TaskState.RUNNING]
        running_elsewhere = [f for f in plan.to_run if f not in to_run]
        for task_file in running_elsewhere:
            self.reporter.notice(f"{task_file.id} is running in another process; not started here")
        if self.options.concurrency <= 1:
            return self._execute_in_order(to_run, tasks, notes)
        return self._execute_concurrently(to_run, tasks, notes)

    def _execute_in_order(
        self, to_run: list[TaskFile], tasks: dict[str, Task], notes: dict[str, str]
    ) -> list[TaskResult]:
        results: list[TaskResult] = []
        for task_file in to_run:
            if self._stop.is_set():
                results.append(self._not_run(task_file))
                continue
            results.append(self._guarded(task_file, tasks[task_file.id], notes.get(task_file.id)))
        return results

    def _execute_concurrently(
        self, to_run: list[TaskFile], tasks: dict[str, Task], notes: dict[str, str]
    ) -> list[TaskResult]:
        waiting = list(to_run)
        results: list[TaskResult] = []
        running: dict[Future[TaskResult], Task] = {}
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        with ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="runce-task") as pool:
            while waiting or running:
                while (
                    waiting
                    and not self._stop.is_set()
                    and self._may_start(tasks[waiting[0].id], running)
                ):
                    task_file = waiting.pop(0)
                    task = tasks[task_file.id]
                    running[
                        pool.submit(self._guarded, task_file, task, notes.get(task_file.id))
                    ] = task
                if self._stop.is_set():
                    results.extend(self._not_run(f) for f in waiting)
                    waiting.clear()
                if running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        del running[future]
                        results.append(future.result())
        return results

    def _may_start(self, task: Task, running: dict[Future[TaskResult], Task]) -> bool:
        """Up to ``concurrency`` at once; a transactional task always runs alone."""
        if not running:
            return True
        if task.transactional or any(t.transactional for t in running.values()):
            return False
        return len(running) < self.options.concurrency

    def _guarded(self, task_file: TaskFile, task: Task, note: str | None) -> TaskResult:
        """Run one task; a lost lock stops the whole run."""
        try:
            if self._keeper is not None:
                self._keeper.check()
            with tracing.task_span(task_file.id) as span:
                result = self._run_one(task_file, task, note)
                tracing.task_ended(span, result.outcome, result.error)
        except LockLost as exc:
            self._stop.set()
            self.report.lock_lost = str(exc)
            self.reporter.notice(f"lock lost: {exc}")
            return TaskResult(
                task_file.id,
                "failed",
                task.title,
                error=f"lock lost: {exc}",
                note="its outcome was not recorded",
            )
        if result.outcome == "failed" and not self.options.keep_going:
            self._stop.set()
        if result.outcome == "paused":
            self._paused = result.id
            self._stop.set()
        return result

    def _run_one(self, task_file: TaskFile, task: Task, note: str | None) -> TaskResult:
        title = task.title or task_file.id
        variable = skip_variable(task_file.id)
        if task.skippable and os.environ.get(variable) == "1":
            self._record(task_file, title, "skipped-by-env", None, note=f"{variable}=1")
            return self._finished(
                TaskResult(task_file.id, "skipped-by-env", title, note=f"{variable}=1")
            )
        attempt_id = secrets.token_hex(16)
        ctx = self._context(task_file, title, attempt_id)
        try:
            done_already = task.already_done is not None and call(task.already_done, ctx)
        except LockLost:
            raise
        except BaseException as exc:
            # already_done() is the task's code: its failure is the task's, recorded as such.
            self.reporter.started(task_file.id, title, note)
            attempt = self._attempt(task_file, title, "started", attempt_id)
            self.store.tracker.begin(attempt, self._lease)
            return self._failed(attempt, exc, _join(note, "already_done() raised"))
        if done_already:
            self._record(
                task_file, title, "skipped", "skipped", note="already_done() returned true"
            )
            return self._finished(
                TaskResult(task_file.id, "skipped", title, 0, note="already done")
            )
        self.reporter.started(task_file.id, title, note)
        attempt = self._attempt(task_file, title, "started", attempt_id)
        self.store.tracker.begin(attempt, self._lease)
        if isinstance(task, Backfill):
            return self._run_backfill(task, ctx, attempt, note)
        if task.transactional:
            return self._run_transactional(task, ctx, attempt, note)
        try:
            call(task.run, ctx)
        except LockLost:
            raise
        except BaseException as exc:
            return self._failed(attempt, exc, note)
        return self._succeed(
            attempt,
            note,
            lambda done, applied: self.store.tracker.finish(done, applied, self._lease),
        )

    def _run_transactional(
        self, task: Task, ctx: TaskContext, attempt: Attempt, note: str | None
    ) -> TaskResult:
        try:
            with self.store.tracker.transaction(self._lease) as tx:
                if self.config.store.type.startswith("mongo"):
                    ctx.session = tx.handle
                    with session_guarded(tx.handle):
                        call(task.run, ctx)
                else:
                    ctx.db = TaskConnection(tx.handle)
                    call(task.run, ctx)
                result = self._succeed(attempt, note, tx.finish)
        except LockLost:
            raise
        except BaseException as exc:
            return self._failed(attempt, exc, note)
        return result

    def _run_backfill(
        self, task: Backfill, ctx: TaskContext, attempt: Attempt, note: str | None
    ) -> TaskResult:
        """Batch by batch, from the last checkpoint (see :mod:`runce.tasks.backfilling`)."""
        tracker = self.store.tracker
        driver = BackfillDriver(
            task,
            ctx,
            attempt,
            tracker,
            self._lease,
            self._keeper,
            self.reporter.notice,
            handle_name="session" if self.config.store.type.startswith("mongo") else "db",
            claims=tracker if isinstance(tracker, RangeClaims) else None,
            claim_ttl=self.config.lock.ttl,
            claimer=claimer_of(self.owner),
        )
        try:
            outcome = driver.run()
        except LockLost:
            raise
        except BaseException as exc:
            return self._failed(attempt, exc, note)
        if outcome.stopped is None:
            finish = self.store.tracker.finish
            return self._succeed(
                attempt,
                _join(note, outcome.summary),
                lambda done, applied: finish(done, applied, self._lease),
            )
        return self._stopped(attempt, outcome, note)

    def _stopped(self, attempt: Attempt, outcome: BackfillOutcome, note: str | None) -> TaskResult:
        """Paused or canceled at a batch boundary: the attempt ends, the checkpoint stays."""
        verb: Outcome = "paused" if outcome.stopped == "pause" else "canceled"
        said = f"{verb} by {outcome.requested_by} at a batch boundary, {outcome.summary}"
        done = _finish(attempt, "interrupted", note=said)
        self.store.tracker.finish(done, None, self._lease)
        return self._finished(
            TaskResult(
                attempt.task_id, verb, attempt.title, done.duration_ms, note=_join(note, said)
            )
        )

    def _succeed(
        self,
        attempt: Attempt,
        note: str | None,
        write: Callable[[Attempt, AppliedRecord], None],
    ) -> TaskResult:
        done = _finish(attempt, "succeeded")
        write(done, _applied(done, "success"))
        return self._finished(
            TaskResult(attempt.task_id, "ok", attempt.title, done.duration_ms, note=note)
        )

    def _failed(self, attempt: Attempt, exc: BaseException, note: str | None) -> TaskResult:
        """Record whatever the task's code raised as its failure.

        ``SystemExit`` is the task's failure like any exception, and stops the run (no later
        task starts, whatever ``keep_going`` says); Ctrl-C (``KeyboardInterrupt``) is
        recorded the same way, then goes on up to stop the runner.
        """
        result = self._fail(attempt, exc, note)
        if isinstance(exc, SystemExit):
            self._stop.set()
        elif not isinstance(exc, Exception):
            raise exc
        return result

    def _fail(self, attempt: Attempt, exc: BaseException, note: str | None) -> TaskResult:
        name = clean(type(exc).__name__)
        message = cap(_failure_message(exc) or name)
        done = _finish(
            attempt,
            "failed",
            error_type=name,
            error_message=message,
            traceback=cap(clean("".join(traceback.format_exception(exc))), keep_end=True),
        )
        self.store.tracker.finish(done, _applied(done, "failed"), self._lease)
        error = f"{name}: {message}"
        return self._finished(
            TaskResult(
                attempt.task_id, "failed", attempt.title, done.duration_ms, error=error, note=note
            )
        )

    def _record(
        self, task_file: TaskFile, title: str, status: AttemptStatus, applied: str | None, note: str
    ) -> None:
        row = _finish(self._attempt(task_file, title, "started"), status, note=note)
        record = _applied(row, applied) if applied else None
        self.store.tracker.record(row, record, self._lease)

    def _finished(self, result: TaskResult) -> TaskResult:
        self.reporter.finished(result)
        return result

    def _not_run(self, task_file: TaskFile) -> TaskResult:
        reason = "the lock was lost" if self.report.lock_lost else "an earlier task failed"
        if self._paused is not None and not self.report.lock_lost:
            reason = f"it waits for {self._paused}, which was paused"
        return TaskResult(task_file.id, "not-run", note=f"not attempted: {reason}")

    # -- dry run -------------------------------------------------------------------------------

    def _dry_run(self, plan: Plan) -> None:
        """Take no lock and record nothing; only ``already_done`` runs."""
        tasks = self._load(plan.to_run)
        results: list[TaskResult] = []
        for task_file in plan.to_run:
            task = tasks[task_file.id]
            title = task.title or task_file.id
            ctx = self._context(task_file, title, "dry-run", dry_run=True)
            try:
                done_already = task.already_done is not None and call(task.already_done, ctx)
            except (Exception, SystemExit) as exc:  # a dry run records nothing: reported only
                error = f"{describe(exc)} (in already_done)"
                results.append(TaskResult(task_file.id, "failed", title, error=error))
            else:
                if done_already:
                    results.append(TaskResult(task_file.id, "skipped", title, note="already done"))
                elif isinstance(task, Backfill):
                    results.append(self._dry_run_backfill(plan, task_file, task, ctx))
                else:
                    results.append(
                        TaskResult(task_file.id, "dry-run", title, note=_dry_note(plan, task_file))
                    )
            self.reporter.finished(results[-1])
        self._report_idle(plan, results)

    def _dry_run_backfill(
        self, plan: Plan, task_file: TaskFile, task: Backfill, ctx: TaskContext
    ) -> TaskResult:
        """Fetch the first batch once; a fetch that fails fails the dry run."""
        title = task.title or task_file.id
        handle = "session" if self.config.store.type.startswith("mongo") else "db"
        try:
            first = dry_run_note(task, ctx, self.store.tracker, handle)
        except Exception as exc:
            error = describe(exc)
            return TaskResult(task_file.id, "failed", title, error=f"fetch failed: {error}")
        return TaskResult(
            task_file.id, "dry-run", title, note=_join(_dry_note(plan, task_file), first)
        )

    # -- building blocks -------------------------------------------------------------------------

    def _context(
        self, task_file: TaskFile, title: str, attempt_id: str, dry_run: bool = False
    ) -> TaskContext:
        return TaskContext(
            id=task_file.id,
            title=title,
            config=self.config,
            log=task_logger(task_file.id),
            dry_run=dry_run or self.options.dry_run,
            _services=self.services.get,
            _progress=self._progress_writer(task_file.id, attempt_id),
        )

    def _progress_writer(self, task_id: str, attempt_id: str) -> Callable[[int, int | None], None]:
        last_write = 0.0

        def progress(done: int, total: int | None) -> None:
            nonlocal last_write
            self.reporter.progress(task_id, done, total)
            now = time.monotonic()
            finished = total is not None and done >= total
            if not self.options.dry_run and (
                finished or now - last_write >= PROGRESS_WRITE_INTERVAL
            ):
                last_write = now
                self.store.tracker.progress(attempt_id, done, total, self._lease)

        return progress

    def _attempt(
        self, task_file: TaskFile, title: str, status: AttemptStatus, attempt_id: str | None = None
    ) -> Attempt:
        owner = self.owner
        return Attempt(
            attempt_id=attempt_id or secrets.token_hex(16),
            task_id=task_file.id,
            title=title,
            checksum=task_file.checksum,
            status=status,
            started_at=utcnow(),
            applied_by=self.applied_by,
            owner=owner.label,
            host=owner.host,
            pid=owner.pid,
            machine=owner.machine,
            runce_version=__version__,
            lock_token=self._lease.token if self._lease else None,
        )


# -- helpers ---------------------------------------------------------------------------------


def call(fn: Callable[[TaskContext], Any], ctx: TaskContext) -> Any:
    """Call a sync or async task function and return its result."""
    result = fn(ctx)
    if not inspect.isawaitable(result):
        return result
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    awaitable = result

    async def settle() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(settle())
    # Called from inside a running event loop (sync API in async code): use a fresh thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, settle()).result()


def _finish(attempt: Attempt, status: AttemptStatus, **changes: Any) -> Attempt:
    return replace(
        attempt, status=status, finished_at=utcnow(), duration_ms=_ms_since(attempt), **changes
    )


def _ms_since(attempt: Attempt) -> int:
    return max(0, round((utcnow() - attempt.started_at).total_seconds() * 1000))


def _applied(attempt: Attempt, status: str) -> AppliedRecord:
    return AppliedRecord(
        id=attempt.task_id,
        name=attempt.title,
        checksum=attempt.checksum,
        applied_at=attempt.finished_at or utcnow(),
        duration_ms=attempt.duration_ms or 0,
        status=status,  # type: ignore[arg-type]
        attempt_id=attempt.attempt_id,
        error=attempt.error_message,
    )


def _failure_message(exc: BaseException) -> str:
    """The message of what a task raised, saying what a bare exit or Ctrl-C means."""
    if isinstance(exc, SystemExit):
        return f"the task called sys.exit({message_of(exc)})"
    if isinstance(exc, KeyboardInterrupt):
        return message_of(exc) or "interrupted by Ctrl-C"
    return message_of(exc)


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second


def _dry_note(plan: Plan, task_file: TaskFile) -> str | None:
    state = plan.statuses[task_file.id].state
    return None if state is TaskState.PENDING else f"{state.value.lower()}: would run again"


def _idle_result(status: TaskStatus, chosen: bool) -> TaskResult:
    outcome: Outcome
    if status.state is TaskState.DRIFTED:
        outcome = "drifted"
    elif status.state in (TaskState.APPLIED, TaskState.SKIPPED):
        outcome = "applied"
    elif status.state in (TaskState.PAUSED, TaskState.CANCELED) and chosen:
        outcome = "paused" if status.state is TaskState.PAUSED else "canceled"
    elif not chosen:
        outcome = "not-selected"
    else:
        outcome = "not-run"
    return TaskResult(status.id, outcome, status.title)
