"""Every option of every ``runce`` command that reads an environment variable says so in
its ``--help``."""

from __future__ import annotations

from collections.abc import Iterator

import click
from click.testing import CliRunner

from runce.cli.main import cli


def _commands(
    group: click.Group, ctx: click.Context, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, click.Context(command, parent=ctx), (*path, name))


def _env_options() -> list[tuple[tuple[str, ...], click.Option]]:
    found = []
    for path, command in _commands(cli, click.Context(cli)):
        for param in command.params:
            if isinstance(param, click.Option) and param.envvar:
                found.append((path, param))
    return found


def test_every_option_with_an_environment_variable_shows_it_in_help() -> None:
    options = _env_options()
    assert len(options) >= 20  # the walk reached the lazily loaded commands too
    runner = CliRunner()
    for path, option in options:
        assert option.show_envvar, f"runce {' '.join(path)} {option.opts[0]}: show_envvar"
        shown = runner.invoke(cli, [*path, "--help"], terminal_width=200).output
        names = [option.envvar] if isinstance(option.envvar, str) else list(option.envvar or [])
        for name in names:
            assert f"env var: {name}" in shown, f"runce {' '.join(path)} --help lacks {name}"


def test_the_help_points_to_the_exit_codes() -> None:
    shown = CliRunner().invoke(cli, ["--help"], terminal_width=200).output
    assert "exit codes" in shown.lower()
    assert "5" in shown
