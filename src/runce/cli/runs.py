"""``runce worker``, ``runce runs …``, ``runce workers`` and ``runce healthcheck``.

Every command but ``healthcheck`` takes ``--remote [URL]`` (:mod:`runce.cli.remote`) and
then works on a runce server instead of the store, with the same output.
"""

from __future__ import annotations

import gc
import json
import logging
import signal
import socket
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from runce.cli import output
from runce.cli.logs import log_format_option, use_format
from runce.cli.remote import Runs, open_runs, remote_options, remote_queue
from runce.cli.root import cli, config_options, load_cli_config, runs_options
from runce.config import MAX_CONCURRENCY, MAX_RUN_TIME, Config
from runce.errors import InvalidInput, UsageError
from runce.runs.limits import (
    FIRST_YEAR,
    LAST_YEAR,
    MAX_ATTEMPTS,
    MAX_DEPTH,
    MAX_PRIORITY,
    MIN_PRIORITY,
    check_time,
)

if TYPE_CHECKING:
    from runce.domain.runs import Run

# The states of runce.domain.runs.RUN_STATES (a test keeps them equal): spelled out here
# so that `runce run` does not import the job queue's records at start-up.
STATES = ("queued", "running", "succeeded", "failed", "canceled")

# `runce runs tail` exit codes, from the run's final state
TAIL_EXIT = {"succeeded": 0, "failed": 1, "canceled": 4}
TAIL_TIMEOUT_EXIT = 3


def _library() -> Any:
    from runce.runs import library

    return library


def _when(text: str | None, flag: str) -> datetime | None:
    """An ISO-8601 time (UTC when no offset is given), or a delay like ``+10m``."""
    if text is None:
        return None
    if text.startswith("+"):
        from runce.config import parse_duration

        try:
            delay = parse_duration(text[1:])
        except ValueError:
            raise UsageError(f"{flag} {text!r}: expected a delay like +90s or +10m") from None
        try:
            return check_time(datetime.now(UTC) + timedelta(seconds=delay), flag)
        except OverflowError:
            raise UsageError(
                f"{flag} {text!r} is out of range (times lie within the UTC years "
                f"{FIRST_YEAR} to {LAST_YEAR})"
            ) from None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not an ISO-8601 time like 2026-01-31T09:00") from None
    return check_time(moment if moment.tzinfo else moment.replace(tzinfo=UTC), flag)


def _kinds(text: str | None) -> list[str] | None:
    """``--kinds``: None for every job; a list that names nothing is refused, not "every"."""
    if text is None:
        return None
    chosen = [k.strip() for k in text.split(",") if k.strip()]
    if not chosen:
        raise UsageError(f"--kinds names no job kind ({text!r}); leave it out to run every job")
    return chosen


def _run_dict(run: Run) -> dict[str, Any]:
    return asdict(run)


# -- the worker -------------------------------------------------------------------------------


@cli.command()
@config_options
@remote_options
@click.option(
    "--concurrency",
    type=click.IntRange(1, MAX_CONCURRENCY),
    envvar="RUNCE_WORKER_CONCURRENCY",
    show_envvar=True,
    help="Jobs run at once (default: worker.concurrency).",
)
@click.option("--kinds", metavar="KIND[,KIND…]", help="Only these kinds (default: every job).")
@click.option("--drain", is_flag=True, help="Run until nothing is due, then exit.")
@click.option(
    "--max-time",
    type=click.FloatRange(0, MAX_RUN_TIME),
    metavar="SECONDS",
    help="Stop after SECONDS (finishing or handing back what runs).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    envvar="RUNCE_LOG_LEVEL",
    show_envvar=True,
    help="One line per run transition at info.",
)
@log_format_option
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    envvar="RUNCE_WORKER_METRICS_PORT",
    show_envvar=True,
    help="Serve this worker's Prometheus metrics at :PORT/metrics (default: "
    "worker.metrics_port; none). Needs nurv-runce[metrics].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def worker(
    config_path: Path | None,
    tasks_dir: Path | None,
    remote: str | None,
    token: str | None,
    concurrency: int | None,
    kinds: str | None,
    drain: bool,
    max_time: float | None,
    log_level: str,
    log_format: str,
    metrics_port: int | None,
    as_json: bool,
) -> None:
    """Run jobs: claim due runs, execute them, record the outcomes.

    SIGTERM or Ctrl-C stops claiming, lets running jobs finish for up to
    worker.shutdown_timeout, hands the rest back to the queue and exits; a second signal
    hands everything back at once. With --remote, it works through the server's worker
    endpoints (a token with runs:work), running the jobs of the local worker.handlers.
    """
    cfg = load_cli_config(config_path, tasks_dir)
    logging.getLogger("runce").setLevel(log_level.upper())
    use_format(log_format)
    chosen = _kinds(kinds)
    queue = remote_queue(cfg, remote, token, drain) if remote is not None else None
    running = _library().worker(
        cfg, concurrency=concurrency, kinds=chosen, drain=drain, max_time=max_time, queue=queue
    )
    port = metrics_port or cfg.worker.metrics_port
    if port is not None:
        _serve_metrics(running, port)

    def stop(signum: int, frame: FrameType | None) -> None:
        click.echo(f"runce worker: stopping ({signal.Signals(signum).name})", err=True)
        running.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if not as_json:
        if queue is None:
            _store_note(cfg)
        click.echo(
            f"worker {running.id}: {', '.join(running.kinds)} "
            f"(concurrency {running.options.concurrency})",
            err=True,
        )
    # What starting made (modules, configuration, the jobs) lives as long as the process:
    # set aside from garbage collection, so that the collections the work itself sets off
    # (every run allocates) do not walk it again and again.
    gc.freeze()
    summary = running.run()
    if as_json:
        output.echo_json(summary.to_dict())
    else:
        click.echo(
            f"worker {running.id} stopped: {summary.succeeded} succeeded, "
            f"{summary.failed} failed, {summary.retried} to retry, {summary.canceled} "
            f"canceled, {summary.released} handed back in {summary.seconds:g}s",
            err=True,
        )


def _serve_metrics(running: Any, port: int) -> None:
    try:
        from runce.runs.metrics import WorkerMetrics, serve_metrics
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] != "prometheus_client":
            raise
        raise UsageError(
            "runce worker --metrics-port needs prometheus_client: pip install 'nurv-runce[metrics]'"
        ) from None
    serve_metrics(WorkerMetrics(running), port)
    click.echo(f"worker metrics: http://0.0.0.0:{port}/metrics", err=True)


@cli.command()
@runs_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def workers(
    target: Callable[[], Runs],
    as_json: bool,
) -> None:
    """Workers that recently reported to the store, with their last heartbeat."""
    source = target()
    found = source.workers()
    limits = source.limits()
    if as_json:
        output.echo_json(
            [{**asdict(w), "limits": {k: limits[k] for k in w.kinds if k in limits}} for w in found]
        )
        return
    rows = [
        [w.state.upper(), w.id, output.when(w.last_seen), str(w.concurrency), ",".join(w.kinds)]
        for w in found
    ]
    output.table(rows, ["STATE", "WORKER", "LAST SEEN (UTC)", "CONC", "KINDS"])
    if not found:
        click.echo("no worker has reported yet")
    for kind, text in sorted(limits.items()):
        click.echo(f"limit of {kind}: {text} (across every worker)")


@cli.command()
@config_options
def healthcheck(config_path: Path | None, tasks_dir: Path | None) -> None:
    """Exit 0 when a worker on this host heartbeats on time, 1 otherwise (for probes)."""
    cfg = load_cli_config(config_path, tasks_dir)
    queue = _queue(cfg)
    host = socket.gethostname()
    mine = [w for w in queue.workers() if w.host == host and w.state != "stopped"]
    stale_after = timedelta(seconds=2 * cfg.worker.lease)
    now = queue.now()
    fresh = [w for w in mine if now - w.last_seen <= stale_after]
    if fresh:
        click.echo(f"ok: {len(fresh)} worker(s) on {host}")
        return
    reason = "none is running" if not mine else f"the last heartbeat is older than {stale_after}"
    click.echo(f"runce: no healthy worker on {host}: {reason}", err=True)
    sys.exit(1)


def _queue(cfg: Config) -> Any:
    library = _library()
    return library.queue_of(library.runtime(cfg).store)


def _store_note(cfg: Config) -> None:
    """Which store a command uses (password masked), on stderr so stdout stays scriptable."""
    description = _library().runtime(cfg).description
    click.echo(click.style(f"store: {description}", dim=True), err=True)


# -- runs -------------------------------------------------------------------------------------


@cli.group()
def runs() -> None:
    """Runs of the job queue: enqueue, inspect, cancel, retry, prune."""


@runs.command(name="enqueue")
@config_options
@remote_options
@click.argument("kind")
@click.option("--input", "input_text", metavar="JSON", help="The run's input as JSON.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the input JSON from stdin.")
@click.option("--project", help="Project id the run belongs to.")
@click.option(
    "--idempotency-key", metavar="KEY", help="Enqueueing the same key again returns the same run."
)
@click.option(
    "--max-attempts",
    type=click.IntRange(1, MAX_ATTEMPTS),
    help=f"Attempts before it fails (1 to {MAX_ATTEMPTS:,}).",
)
@click.option(
    "--run-at", metavar="TIME", help="Not before TIME (ISO-8601, or +10m; UTC years 1970-9999)."
)
@click.option(
    "--priority",
    type=click.IntRange(MIN_PRIORITY, MAX_PRIORITY),
    default=0,
    show_default=True,
    help="Higher runs first (-1,000,000 to 1,000,000).",
)
@click.option(
    "--concurrency-key",
    metavar="KEY",
    help="The run's key for its job's flow-control limits (instead of its job's).",
)
@click.option("--any-kind", is_flag=True, help="Enqueue a kind no job in worker.handlers has.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def runs_enqueue(
    config_path: Path | None,
    tasks_dir: Path | None,
    remote: str | None,
    token: str | None,
    kind: str,
    input_text: str | None,
    from_stdin: bool,
    project: str | None,
    idempotency_key: str | None,
    max_attempts: int | None,
    run_at: str | None,
    priority: int,
    concurrency_key: str | None,
    any_kind: bool,
    as_json: bool,
) -> None:
    """Enqueue a run of KIND (a kind a job in worker.handlers defines, unless --any-kind)."""
    cfg = load_cli_config(config_path, tasks_dir)
    target = open_runs(cfg, remote, token)
    value = _input(input_text, from_stdin)
    if not any_kind:
        _check_kind(cfg, kind)
    run = target.enqueue(
        kind,
        value,
        idempotency_key=idempotency_key,
        run_at=_when(run_at, "--run-at"),
        max_attempts=max_attempts,
        priority=priority,
        project_id=project,
        concurrency_key=concurrency_key,
    )
    if as_json:
        output.echo_json(_run_dict(run))
    else:
        click.echo(run.id)


def _input(text: str | None, from_stdin: bool) -> Any:
    if text is not None and from_stdin:
        raise UsageError("give the input with --input or --stdin, not both")
    source, raw = ("--stdin", sys.stdin.read()) if from_stdin else ("--input", text)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidInput(f"{source} is nested deeper than {MAX_DEPTH} levels") from None


def _check_kind(cfg: Config, kind: str) -> None:
    from runce.runs.jobs import load_handlers, registry

    load_handlers(cfg.worker.handlers, f"{cfg.source}: worker.handlers")
    if registry.get(kind) is None:
        known = ", ".join(registry.kinds()) or "none: worker.handlers names no job module"
        raise UsageError(
            f"no job is registered for {kind!r} (known: {known}); "
            "pass --any-kind to enqueue it anyway"
        )


@runs.command(name="status")
@runs_options
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with the attempts).")
def runs_status(
    target: Callable[[], Runs],
    run_id: str,
    as_json: bool,
) -> None:
    """Show one run: state, attempts, progress, result or error."""
    source = target()
    run = source.get_run(run_id)
    attempts = source.attempts(run_id)
    flow = source.flow(run)
    if as_json:
        output.echo_json(
            {
                **_run_dict(run),
                "attempts": [asdict(a) for a in attempts],
                "limit": flow.limit,
                "waiting": flow.waiting,
            }
        )
        return
    _print_run(run)
    if flow.limit:
        click.echo(f"  {'limit:':<18}{flow.limit}")
    if flow.waiting:
        click.echo(f"  {flow.waiting}")
    for past in attempts:
        click.echo(
            f"  attempt {past.attempt} on {past.worker_id}: {past.outcome}"
            f"{' - ' + _first_line(past.error) if past.error else ''}"
        )
    failed = [past for past in attempts if past.traceback]
    if failed:
        last = failed[-1]
        click.echo(f"  traceback of attempt {last.attempt}:")
        click.echo(textwrap.indent((last.traceback or "").rstrip("\n"), "    ", lambda _: True))


def _print_run(run: Run) -> None:
    click.echo(f"{output.styled(run.state.upper(), 10)}{run.id}  {run.kind}")
    fields = {
        "attempt": f"{run.attempt} of {run.max_attempts}",
        "project": run.project_id,
        "idempotency key": run.idempotency_key,
        "created": output.when(run.created_at),
        "run at": output.when(run.run_at) if run.state == "queued" else None,
        "started": output.when(run.started_at) if run.started_at else None,
        "finished": output.when(run.finished_at) if run.finished_at else None,
        "worker": run.claimed_by,
        "progress": None
        if run.progress is None
        else f"{run.progress}%{' ' + run.progress_message if run.progress_message else ''}",
        "cancel requested": "yes" if run.cancel_requested else None,
        "result": None if run.result is None else json.dumps(run.result)[:500],
        "output": run.output_ref,
        "error": _first_line(run.error) if run.error else None,
    }
    for label, value in fields.items():
        if value:
            click.echo(f"  {label + ':':<18}{value}")


def _first_line(text: str | None) -> str:
    return (text or "").splitlines()[0][:200] if text else ""


@runs.command(name="list")
@runs_options
@click.option("--project", help="Only this project's runs.")
@click.option("--state", type=click.Choice(STATES), help="Only runs in this state.")
@click.option("--kind", help="Only runs of this kind.")
@click.option("--since", metavar="TIME", help="Only runs created at or after TIME (ISO-8601).")
@click.option("--before", metavar="TIME", help="Only runs created before TIME (ISO-8601).")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option(
    "--order",
    type=click.Choice(["newest", "oldest"]),
    default="newest",
    show_default=True,
    help="Newest or oldest runs first (by creation).",
)
@click.option("--cursor", help="Continue after the page that printed this cursor (same --order).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: runs and next_cursor.")
def runs_list(
    target: Callable[[], Runs],
    project: str | None,
    state: Any,
    kind: str | None,
    since: str | None,
    before: str | None,
    limit: int,
    order: Any,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Runs, newest first (or oldest first with --order oldest)."""
    page = target().list_runs(
        project_id=project,
        state=state,
        kind=kind,
        since=_when(since, "--since"),
        before=_when(before, "--before"),
        cursor=cursor,
        limit=limit,
        order=order,
    )
    if as_json:
        output.echo_json(
            {"runs": [_run_dict(r) for r in page.runs], "next_cursor": page.next_cursor}
        )
        return
    rows = [
        [
            r.state.upper(),
            r.id,
            r.kind,
            output.when(r.created_at),
            f"{r.attempt}/{r.max_attempts}",
            "" if r.progress is None else f"{r.progress}%",
        ]
        for r in page.runs
    ]
    output.table(rows, ["STATE", "ID", "KIND", "CREATED (UTC)", "TRY", "PROGRESS"])
    if not page.runs:
        click.echo("no runs")
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}")


@runs.command(name="cancel")
@runs_options
@click.argument("run_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def runs_cancel(
    target: Callable[[], Runs],
    run_id: str,
    yes: bool,
    as_json: bool,
) -> None:
    """Cancel a run: a queued one at once, a running one cooperatively."""
    source = target()
    run = source.get_run(run_id)
    if not yes:
        # on stderr under --json, so that stdout stays one JSON document
        click.confirm(f"Cancel {run.state} run {run.id} ({run.kind})?", abort=True, err=as_json)
    after = source.cancel_run(run_id)
    if as_json:
        output.echo_json(_run_dict(after))
    elif after.state == "canceled":
        click.echo(f"canceled {after.id}")
    else:
        click.echo(f"cancel requested: {after.id} stops when its job next checks ctx.cancelled")


@runs.command(name="retry")
@runs_options
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def runs_retry(
    target: Callable[[], Runs],
    run_id: str,
    as_json: bool,
) -> None:
    """Queue a failed or canceled run again, for one more attempt."""
    run = target().retry_run(run_id)
    if as_json:
        output.echo_json(_run_dict(run))
        return
    click.echo(f"queued {run.id} again (attempt {run.attempt + 1} of {run.max_attempts})")


@runs.command(name="prune")
@runs_options
@click.option("--json", "as_json", is_flag=True, help='Print JSON: {"pruned": N}.')
def runs_prune(
    target: Callable[[], Runs],
    as_json: bool,
) -> None:
    """Delete finished runs older than runs.retention (succeeded 30d, failed 90d by default;
    with --remote, the server's runs.retention)."""
    count = target().prune_runs()
    if as_json:
        output.echo_json({"pruned": count})
        return
    click.echo(f"pruned {count} run{'s' if count != 1 else ''}")


@runs.command(name="tail")
@runs_options
@click.argument("run_id")
@click.option(
    "--timeout",
    type=click.FloatRange(0, MAX_RUN_TIME),
    metavar="SECONDS",
    help="Give up after SECONDS (exit 3).",
)
@click.option("--json", "as_json", is_flag=True, help="Print only the last state, as JSON.")
def runs_tail(
    target: Callable[[], Runs],
    run_id: str,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Follow a run to its end. Exit 0 succeeded, 1 failed, 4 canceled, 3 timed out,
    5 no such run."""
    source = target()
    deadline = None if timeout is None else time.monotonic() + timeout
    if as_json:
        run = _follow_plain(source, run_id, deadline, quiet=True)
        output.echo_json(_run_dict(run))
    else:
        run = (_follow_live if output.is_terminal() else _follow_plain)(source, run_id, deadline)
        _print_run(run)
    sys.exit(TAIL_EXIT.get(run.state, TAIL_TIMEOUT_EXIT))


def _follow_plain(target: Runs, run_id: str, deadline: float | None, *, quiet: bool = False) -> Run:
    last: tuple[str, int | None, str | None] | None = None
    while True:
        run = target.get_run(run_id)
        now = (run.state, run.progress, run.progress_message)
        if now != last and not quiet:
            progress = "" if run.progress is None else f" {run.progress}%"
            message = f" {run.progress_message}" if run.progress_message else ""
            click.echo(f"{run.state}{progress}{message}")
            last = now
        if run.finished or (deadline is not None and time.monotonic() >= deadline):
            return run
        time.sleep(0.2)


def _follow_live(target: Runs, run_id: str, deadline: float | None) -> Run:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[message]}"),
        TimeElapsedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(run_id, total=100, message="")
        while True:
            run = target.get_run(run_id)
            bar.update(
                task,
                completed=run.progress or 0,
                message=run.progress_message or "",
                description=f"{run.kind} {run.state}",
            )
            if run.finished or (deadline is not None and time.monotonic() >= deadline):
                return run
            time.sleep(0.2)
