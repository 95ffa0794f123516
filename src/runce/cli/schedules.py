"""``runce schedules list|enable|disable``: the cron schedules workers keep in the store.

Each takes ``--remote [URL]`` (:mod:`runce.cli.remote`) and then works on a runce server
instead of the store, with the same output.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from runce.cli import output
from runce.cli.remote import Runs, open_runs, remote_options
from runce.cli.root import cli, config_options, load_cli_config


@cli.group()
def schedules() -> None:
    """Cron schedules: declared in code, stored by workers, switched on and off here."""


@schedules.command(name="list")
@config_options
@remote_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def schedules_list(
    config_path: Path | None,
    tasks_dir: Path | None,
    remote: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Every stored schedule, its next tick and its last run."""
    found = _target(config_path, tasks_dir, remote, token).list_schedules()
    if as_json:
        output.echo_json([asdict(s) for s in found])
        return
    rows = [
        [
            "on" if s.enabled else "OFF",
            s.name,
            s.kind,
            s.expression,
            s.timezone,
            output.when(s.next_run_at) if s.enabled else "-",
            output.when(s.last_run_at) if s.last_run_at else "-",
            s.last_run_id or "-",
        ]
        for s in found
    ]
    headers = ["ON", "NAME", "KIND", "CRON", "TIMEZONE", "NEXT (UTC)", "LAST (UTC)", "LAST RUN"]
    output.table(rows, headers)
    if not found:
        click.echo("no schedule is stored yet: a worker stores those its code declares")


@schedules.command(name="enable")
@config_options
@remote_options
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the schedule as JSON.")
def schedules_enable(
    config_path: Path | None,
    tasks_dir: Path | None,
    remote: str | None,
    token: str | None,
    name: str,
    as_json: bool,
) -> None:
    """Switch a schedule on; it next runs at its first tick from now."""
    found = _target(config_path, tasks_dir, remote, token).enable_schedule(name)
    if as_json:
        output.echo_json(asdict(found))
        return
    click.echo(f"enabled {found.name}: next run at {output.when(found.next_run_at)} UTC")


@schedules.command(name="disable")
@config_options
@remote_options
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the schedule as JSON.")
def schedules_disable(
    config_path: Path | None,
    tasks_dir: Path | None,
    remote: str | None,
    token: str | None,
    name: str,
    as_json: bool,
) -> None:
    """Switch a schedule off; no worker enqueues its ticks until it is enabled again."""
    found = _target(config_path, tasks_dir, remote, token).disable_schedule(name)
    if as_json:
        output.echo_json(asdict(found))
        return
    click.echo(f"disabled {found.name}")


def _target(
    config_path: Path | None, tasks_dir: Path | None, remote: str | None, token: str | None
) -> Runs:
    """The store's schedules, or the server's with ``--remote`` (noted on stderr)."""
    return open_runs(load_cli_config(config_path, tasks_dir), remote, token)
