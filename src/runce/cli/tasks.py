"""``runce``'s commands for once tasks, backfills and the schema (``run``, ``status``,
``list``, ``history``, ``make``, ``repair``, ``baseline``, ``unlock``, ``pause``, ``resume``,
``cancel``, ``backfill``, ``db``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import click

from runce.cli import output
from runce.cli.logs import log_format_option, use_format
from runce.cli.root import (
    EXIT_INTERRUPTED,
    EXIT_PENDING,
    F,
    cli,
    config_options,
    fail,
    load_cli_config,
    open_runtime,
    store_line,
)
from runce.config import MAX_CONCURRENCY, MAX_WAIT
from runce.errors import LockHeld
from runce.errortext import message_of
from runce.runtime import Runtime
from runce.tasks import library
from runce.tasks.report import RunReport, TaskResult
from runce.tasks.runner import bound_of, chosen_ids
from runce.tasks.states import FOREIGN_CHECKSUM_NOTE

MAX_SKIP_LINES = 10
IDLE_OUTCOMES = ("applied", "not-selected", "drifted", "not-run")


# -- run ------------------------------------------------------------------------------------


def wait_option(until: str, envvar: str | None = None) -> Callable[[F], F]:
    """``--wait SECONDS`` (``wait_seconds``, 0 by default): how long to wait for ``until``."""
    return click.option(
        "--wait",
        "wait_seconds",
        type=click.FloatRange(0, MAX_WAIT),
        default=0,
        show_default=True,
        metavar="SECONDS",
        envvar=envvar,
        show_envvar=envvar is not None,
        help=f"Wait up to SECONDS for {until}.",
    )


@cli.command()
@config_options
@click.option(
    "--dry-run",
    is_flag=True,
    default=None,
    help="Take no lock, record nothing; run only already_done() and show what would run.",
)
@click.option("--only", metavar="ID[,ID…]", help="Run only these task ids (comma-separated).")
@click.option("--since", metavar="X", help="Only ids >= X (inclusive prefix bound).")
@click.option(
    "--until", metavar="Y", help="Only ids whose prefix is <= Y (inclusive prefix bound)."
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, MAX_CONCURRENCY),
    default=1,
    show_default=True,
    envvar="RUNCE_CONCURRENCY",
    show_envvar=True,
    help="Run up to N tasks at once, in id order; none start after a failure.",
)
@wait_option("the lock instead of failing at once", envvar="RUNCE_WAIT")
@click.option("--keep-going", is_flag=True, help="Go on with later tasks after a failure.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@log_format_option
def run(
    config_path: Path | None,
    tasks_dir: Path | None,
    dry_run: bool | None,
    only: str | None,
    since: str | None,
    until: str | None,
    concurrency: int,
    wait_seconds: float,
    keep_going: bool,
    as_json: bool,
    log_format: str,
) -> None:
    """Apply pending tasks in id order, once (exit 1 if one fails or the lock is held)."""
    selected = chosen_ids(only, "--only")  # before anything is read: a usage error first
    use_format(log_format)
    runtime = open_runtime(config_path, tasks_dir)
    live = output.is_terminal() and not as_json
    reporter = output.LiveReporter() if live else output.PlainReporter()
    if not as_json:
        store_line(runtime.description)
    with reporter if isinstance(reporter, output.LiveReporter) else nullcontext():
        report = library.run_tasks(
            runtime,
            dry_run=dry_run,
            only=selected,
            since=bound_of(since, "--since"),
            until=bound_of(until, "--until"),
            concurrency=concurrency,
            wait=wait_seconds,
            keep_going=keep_going,
            applied_by="cli",
            reporter=None if as_json else reporter,
        )
    _print_run(report, as_json)
    sys.exit(report.exit_code)


def _print_run(report: RunReport, as_json: bool) -> None:
    if as_json:
        output.echo_json(report.to_dict())
        return
    idle = [r for r in report.results if r.outcome in IDLE_OUTCOMES or _held(r)]
    applied = [r for r in idle if r.outcome == "applied"]
    if len(applied) > MAX_SKIP_LINES:  # a long-lived project: one line, not hundreds
        click.echo(
            f"{output.styled('SKIP', 8)} {len(applied)} tasks already applied "
            f"({applied[0].id} … {applied[-1].id})"
        )
        idle = [r for r in idle if r.outcome != "applied"]
    for result in idle:
        click.echo(output.result_line(result))
    if report.lock_lost:
        click.echo(click.style(f"lock lost: {report.lock_lost}", fg="red"), err=True)
    failed = report.counts["failed"]
    not_run = report.counts["not-run"]
    if failed and not_run:
        click.echo(
            f"{not_run} later task{'s' if not_run != 1 else ''} not attempted "
            "(--keep-going runs them anyway)"
        )
    click.echo(output.summary_line(report))


def _held(result: TaskResult) -> bool:
    """A backfill left paused or canceled from before: it did not run, so no line was shown."""
    return result.outcome in ("paused", "canceled") and result.duration_ms is None


# -- status, list, history ------------------------------------------------------------------


@cli.command()
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--fail-if-pending",
    is_flag=True,
    help="Exit 3 when the next run would run anything, 1 when a task drifted.",
)
def status(
    config_path: Path | None, tasks_dir: Path | None, as_json: bool, fail_if_pending: bool
) -> None:
    """Every task with its state: files joined with the store (reads only)."""
    report = library.task_status(open_runtime(config_path, tasks_dir))
    if as_json:
        output.echo_json(report.to_dict())
    else:
        _print_status(report)
    if fail_if_pending and report.drifted:
        sys.exit(1)
    if fail_if_pending and report.would_run:
        sys.exit(EXIT_PENDING)


def _print_status(report: library.StatusReport) -> None:
    store_line(report.store)
    rows = [[s.state.value, s.id, _status_detail(s), s.title or ""] for s in report.tasks]
    output.table(rows, ["STATE", "ID", "DETAIL", "TITLE"])
    if not rows:
        click.echo('no tasks yet: `runce make "name"` writes the first one')
    click.echo(output.holder_line(report.holder))


def _status_detail(status: Any) -> str:
    record, attempt = status.applied, status.attempt
    parts = []
    progress = status.backfill if status.state.value not in ("APPLIED", "SKIPPED") else None
    if progress is not None:
        parts.append(output.backfill_progress(progress))
    if status.control is not None:
        verb = "paused" if status.control.command == "pause" else "canceled"
        if status.state.value == "RUNNING":
            verb = f"{status.control.command} requested"
        parts.append(f"{verb} by {status.control.requested_by}")
    if attempt is not None:
        if attempt.progress_done is not None and progress is None:
            total = attempt.progress_total
            parts.append(
                f"{attempt.progress_done}/{total}" if total else f"{attempt.progress_done}"
            )
        parts.append(
            f"started {output.when(attempt.started_at)} by {attempt.host} pid {attempt.pid}"
        )
    elif record is not None:
        parts.append(f"{output.when(record.applied_at)} {output.seconds(record.duration_ms)}")
        if record.status == "failed" and record.error:
            parts.append(record.error.splitlines()[0][:80])
    if status.out_of_order:
        parts.append("out of order")
    if status.adopted:
        parts.append(FOREIGN_CHECKSUM_NOTE)
    return "  ".join(parts)


@cli.command(name="list")
@config_options
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON in the TypeScript tracker's record shape: id, name, checksum, "
    "appliedAt, durationMs, status (success, skipped: already_done said the work was "
    "there, or failed), error. The one --json output not in snake_case, kept so that "
    "tools reading that tracker's records read these.",
)
def list_(config_path: Path | None, tasks_dir: Path | None, as_json: bool) -> None:
    """The store's last outcome per task id (reads only the store)."""
    runtime = open_runtime(config_path, tasks_dir)
    records = library.list_applied(runtime)
    if as_json:
        output.echo_json([_record_dict(r) for r in records])
        return
    store_line(runtime.description)
    rows = [
        [r.status.upper(), r.id, output.when(r.applied_at), output.seconds(r.duration_ms), r.name]
        for r in records
    ]
    output.table(rows, ["STATUS", "ID", "APPLIED AT (UTC)", "TOOK", "NAME"])
    if not records:
        click.echo("nothing applied yet")


def _record_dict(record: Any) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "checksum": record.checksum,
        "appliedAt": record.applied_at,
        "durationMs": record.duration_ms,
        "status": record.status,
        "error": record.error,
    }


@cli.command()
@config_options
@click.argument("task_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def history(
    config_path: Path | None, tasks_dir: Path | None, task_id: str | None, as_json: bool
) -> None:
    """Every attempt at a task (or at all tasks), oldest first; never changed, never deleted."""
    runtime = open_runtime(config_path, tasks_dir)
    rows = library.task_history(runtime, task_id)
    if as_json:
        output.echo_json([_attempt_dict(a) for a in rows])
        return
    store_line(runtime.description)
    table = [
        [
            a.status.upper(),
            output.when(a.started_at),
            a.task_id,
            output.seconds(a.duration_ms),
            a.applied_by,
            f"{a.host} pid {a.pid}",
            (a.error_message or a.note or "").splitlines()[0][:60]
            if (a.error_message or a.note)
            else "",
        ]
        for a in rows
    ]
    output.table(table, ["STATUS", "STARTED (UTC)", "ID", "TOOK", "BY", "WHERE", "NOTE"])
    if not rows:
        click.echo(f"no attempts at {task_id} yet" if task_id else "no attempts yet")


def _attempt_dict(attempt: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(attempt)


# -- make, repair, baseline, unlock ---------------------------------------------------------


@cli.command()
@config_options
@click.argument("name")
def make(config_path: Path | None, tasks_dir: Path | None, name: str) -> None:
    """Write tasks/<UTC yyyy-mm-ddTHHMMSS>.<slug>.py from the template."""
    path = library.make_task(load_cli_config(config_path, tasks_dir), name)
    click.echo(f"created {path}")


@cli.command()
@config_options
@click.argument("ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Repair every drifted task.")
@wait_option("the lock")
@click.option("--json", "as_json", is_flag=True, help="Print the records written, as JSON.")
def repair(
    config_path: Path | None,
    tasks_dir: Path | None,
    ids: tuple[str, ...],
    everything: bool,
    wait_seconds: float,
    as_json: bool,
) -> None:
    """Accept the changed file of an applied task (appends a `repaired` record)."""
    runtime = open_runtime(config_path, tasks_dir)
    rows = library.repair(runtime, ids, all_drifted=everything, wait=wait_seconds)
    if as_json:
        output.echo_json([_attempt_dict(a) for a in rows])
        return
    store_line(runtime.description)
    for row in rows:
        click.echo(f"{output.styled('REPAIRED', 9)}{row.task_id} now {row.checksum}")
    if not rows:
        click.echo("nothing drifted")


@cli.command()
@config_options
@click.argument("ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Baseline every task not yet applied.")
@click.option("--until", metavar="Y", help="With --all: only ids whose prefix is <= Y.")
@wait_option("the lock")
@click.option("--json", "as_json", is_flag=True, help="Print the records written, as JSON.")
def baseline(
    config_path: Path | None,
    tasks_dir: Path | None,
    ids: tuple[str, ...],
    everything: bool,
    until: str | None,
    wait_seconds: float,
    as_json: bool,
) -> None:
    """Record tasks as applied without running them (the work was done before runce)."""
    bound_of(until, "--until")
    runtime = open_runtime(config_path, tasks_dir)
    rows = library.baseline(runtime, ids, all_pending=everything, until=until, wait=wait_seconds)
    if as_json:
        output.echo_json([_attempt_dict(a) for a in rows])
        return
    store_line(runtime.description)
    for row in rows:
        click.echo(f"{output.styled('BASELINED', 10)}{row.task_id}")
    if not rows:
        click.echo("nothing to baseline")


@cli.command()
@config_options
@click.option(
    "--force",
    is_flag=True,
    help="Clear a live holder too (on PostgreSQL, ends the holder's session).",
)
@click.option("--yes", is_flag=True, help="Do not ask before --force.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the holder and cleared.")
def unlock(
    config_path: Path | None, tasks_dir: Path | None, force: bool, yes: bool, as_json: bool
) -> None:
    """Show the lock's holder and clear it if it expired or its process died."""
    runtime = open_runtime(config_path, tasks_dir)
    holder = library.lock_holder(runtime)
    if not as_json:
        store_line(runtime.description)
        click.echo(output.holder_line(holder))
    cleared = None
    if holder is not None:
        if holder.state == "live" and not force:
            raise LockHeld(
                f"the lock is held by {holder.describe()}, which is alive; wait for it to "
                "finish, or clear it with `runce unlock --force`"
            )
        if holder.state == "live" and not yes:
            # on stderr under --json, so that stdout stays one JSON document
            click.confirm("The holder looks alive. Clear its lock anyway?", abort=True, err=as_json)
        cleared = library.unlock(runtime, force=force)
    if as_json:
        output.echo_json({"lock": output.holder_dict(holder), "cleared": cleared is not None})
    elif holder is not None:
        click.echo("cleared" if cleared is not None else "nothing to clear")


# -- pause, resume, cancel (backfills) --------------------------------------------------------


@cli.command()
@config_options
@click.argument("task_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def pause(config_path: Path | None, tasks_dir: Path | None, task_id: str, as_json: bool) -> None:
    """Ask a backfill to stop at its next batch boundary, keeping its checkpoint.

    Works from any machine. A paused task is not started, and the tasks after it wait.
    """
    from runce.tasks.control import pause_task

    _print_control(open_runtime(config_path, tasks_dir), task_id, pause_task, as_json)


@cli.command()
@config_options
@click.argument("task_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def resume(config_path: Path | None, tasks_dir: Path | None, task_id: str, as_json: bool) -> None:
    """Withdraw a pause or cancel; the next `runce run` goes on from the checkpoint."""
    from runce.tasks.control import resume_task

    _print_control(open_runtime(config_path, tasks_dir), task_id, resume_task, as_json)


@cli.command()
@config_options
@click.argument("task_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cancel(config_path: Path | None, tasks_dir: Path | None, task_id: str, as_json: bool) -> None:
    """Ask a backfill to stop at its next batch boundary and stay stopped.

    The tasks after it go on; `runce resume ID` undoes it.
    """
    from runce.tasks.control import cancel_task

    _print_control(open_runtime(config_path, tasks_dir), task_id, cancel_task, as_json)


def _print_control(runtime: Runtime, task_id: str, act: Callable[..., Any], as_json: bool) -> None:
    result = act(task_id, runtime)
    if as_json:
        output.echo_json(result.to_dict())
        return
    store_line(runtime.description)
    click.echo(result.message)


# -- backfill join ---------------------------------------------------------------------------


@cli.group()
def backfill() -> None:
    """Parallel backfills shared by several processes or hosts."""


@backfill.command(name="join")
@config_options
@click.argument("task_id", metavar="ID")
@click.option(
    "--threads",
    type=click.IntRange(1, MAX_CONCURRENCY),
    default=None,
    help="Ranges this process works at once (default: the backfill's threads, or parallel).",
)
@wait_option("the backfill to be running instead of failing at once")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def backfill_join(
    config_path: Path | None,
    tasks_dir: Path | None,
    task_id: str,
    threads: int | None,
    wait_seconds: float,
    as_json: bool,
) -> None:
    """Help the running parallel backfill ID from this host: claim its key ranges.

    Takes no lock: it joins the attempt a `runce run` (holding the lock) is running, and
    stops when every range is finished, when the backfill is paused or canceled, or when
    that run ends. Exit 1 when the backfill is not running or a range failed here.
    """
    from runce.tasks.joining import join_backfill

    runtime = open_runtime(config_path, tasks_dir)
    if not as_json:
        store_line(runtime.description)
    try:
        report = join_backfill(
            task_id,
            runtime,
            threads=threads,
            wait=wait_seconds,
            notice=None if as_json else click.echo,
        )
    except KeyboardInterrupt as exc:
        reason = message_of(exc) or "interrupted by Ctrl-C"
        said = f"{reason}; this helper stopped at a batch boundary and released its ranges"
        fail("Interrupted", said, EXIT_INTERRUPTED, as_json)
    if as_json:
        output.echo_json(report.to_dict())
    else:
        click.echo(report.message)


# -- db ---------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """runce's own schema in the store: status, upgrade, the DDL."""


@db.command(name="status")
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def db_status(config_path: Path | None, tasks_dir: Path | None, as_json: bool) -> None:
    """The schema version against the latest this runce ships (reads only)."""
    runtime = open_runtime(config_path, tasks_dir)
    state = library.schema_status(runtime)
    if as_json:
        output.echo_json(
            {
                "current": state.current,
                "latest": state.latest,
                "applied": list(state.applied),
                "pending": list(state.pending),
            }
        )
        return
    store_line(runtime.description)
    verdict = "up to date" if state.up_to_date else f"{len(state.pending)} migration(s) pending"
    click.echo(f"schema version {state.current} of {state.latest}: {verdict}")
    for name in state.pending:
        click.echo(f"  pending: {name}")


@db.command(name="upgrade")
@config_options
def db_upgrade(config_path: Path | None, tasks_dir: Path | None) -> None:
    """Apply pending schema migrations (safe to run from many processes at once)."""
    runtime = open_runtime(config_path, tasks_dir)
    store_line(runtime.description)
    applied = library.upgrade_schema(runtime)
    for name in applied:
        click.echo(f"{output.styled('OK', 8)}{name}")
    click.echo("schema up to date" if not applied else f"applied {len(applied)} migration(s)")


@db.command(name="sql")
@config_options
def db_sql(config_path: Path | None, tasks_dir: Path | None) -> None:
    """Print the DDL of every migration, for DBAs who apply it themselves."""
    click.echo(library.schema_sql(load_cli_config(config_path, tasks_dir)), nl=False)
