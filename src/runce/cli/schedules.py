"""``runce schedules list|enable|disable``: the cron schedules workers keep in the store.

Each takes ``--remote [URL]`` (:mod:`runce.cli.remote`) and then works on a runce server
instead of the store, with the same output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import click

from runce.cli import output
from runce.cli.remote import Runs
from runce.cli.root import cli, runs_options


@cli.group()
def schedules() -> None:
    """Cron schedules: declared in code, stored by workers, switched on and off here."""


@schedules.command(name="list")
@runs_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def schedules_list(
    target: Callable[[], Runs],
    as_json: bool,
) -> None:
    """Every stored schedule, its next tick and its last run."""
    found = target().list_schedules()
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
@runs_options
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the schedule as JSON.")
def schedules_enable(
    target: Callable[[], Runs],
    name: str,
    as_json: bool,
) -> None:
    """Switch a schedule on; it next runs at its first tick from now."""
    found = target().enable_schedule(name)
    if as_json:
        output.echo_json(asdict(found))
        return
    click.echo(f"enabled {found.name}: next run at {output.when(found.next_run_at)} UTC")


@schedules.command(name="disable")
@runs_options
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the schedule as JSON.")
def schedules_disable(
    target: Callable[[], Runs],
    name: str,
    as_json: bool,
) -> None:
    """Switch a schedule off; no worker enqueues its ticks until it is enabled again."""
    found = target().disable_schedule(name)
    if as_json:
        output.echo_json(asdict(found))
        return
    click.echo(f"disabled {found.name}")
