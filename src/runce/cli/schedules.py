"""``runce schedules list|enable|disable``: the cron schedules workers keep in the store."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runce.cli import output
from runce.cli.main import cli, config_options, load_cli_config

if TYPE_CHECKING:
    from runce.stores.schedules import Schedule


def _api() -> Any:
    from runce.runs import api

    return api


def _store_note(description: str) -> None:
    click.echo(click.style(f"store: {description}", dim=True), err=True)


@cli.group()
def schedules() -> None:
    """Cron schedules: declared in code, stored by workers, switched on and off here."""


@schedules.command(name="list")
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def schedules_list(config_path: Path | None, tasks_dir: Path | None, as_json: bool) -> None:
    """Every stored schedule, its next tick and its last run."""
    cfg = load_cli_config(config_path, tasks_dir)
    api = _api()
    _store_note(api.shared_store(cfg.store).description)
    found: list[Schedule] = api.list_schedules(config=cfg)
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
@click.argument("name")
def schedules_enable(config_path: Path | None, tasks_dir: Path | None, name: str) -> None:
    """Switch a schedule on; it next runs at its first tick from now."""
    found = _switch(config_path, tasks_dir, name, "enable_schedule")
    click.echo(f"enabled {found.name}: next run at {output.when(found.next_run_at)} UTC")


@schedules.command(name="disable")
@config_options
@click.argument("name")
def schedules_disable(config_path: Path | None, tasks_dir: Path | None, name: str) -> None:
    """Switch a schedule off; no worker enqueues its ticks until it is enabled again."""
    found = _switch(config_path, tasks_dir, name, "disable_schedule")
    click.echo(f"disabled {found.name}")


def _switch(config_path: Path | None, tasks_dir: Path | None, name: str, how: str) -> Schedule:
    cfg = load_cli_config(config_path, tasks_dir)
    api = _api()
    _store_note(api.shared_store(cfg.store).description)
    found: Schedule = getattr(api, how)(name, config=cfg)
    return found
