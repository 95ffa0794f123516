"""The ``runce`` command's root group and what every command module shares: the
``--config``/``--tasks-dir`` options, the exit codes, and saying why a command failed.
Command modules (:mod:`.tasks`, :mod:`.runs`, ...) register their commands on :data:`cli`."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from runce._version import __version__
from runce.cli.remote import Command, Runs, open_runs, remote_options
from runce.config import Config, resolve_config
from runce.errortext import message_of

if TYPE_CHECKING:
    from runce.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USAGE = 2
EXIT_PENDING = 3
EXIT_INTERRUPTED = 130


def config_options(fn: F) -> F:
    """``--config`` and ``--tasks-dir``, on every command that reads configuration."""
    fn = click.option(
        "--tasks-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Folder of task files (default: tasks_dir from the configuration).",
        envvar="RUNCE_TASKS_DIR",
        show_envvar=True,
    )(fn)
    fn = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Config file (default: runce.toml, pyproject.toml or runce_config.py here or above).",
        envvar="RUNCE_CONFIG",
        show_envvar=True,
    )(fn)
    return fn


def runs_options(fn: Callable[..., None]) -> Callable[..., None]:
    """``--config``, ``--tasks-dir``, ``--remote`` and ``--token``, for a command on runs or
    schedules: the command gets them as one ``target``, which opens the store's runs (or
    the server's, with ``--remote``) when the command first calls it."""

    @functools.wraps(fn)
    def command(
        config_path: Path | None,
        tasks_dir: Path | None,
        remote: str | None,
        token: str | None,
        **arguments: Any,
    ) -> None:
        def target() -> Runs:
            return open_runs(load_cli_config(config_path, tasks_dir), remote, token)

        fn(target=target, **arguments)

    return config_options(remote_options(command))


def load_cli_config(config_path: Path | None, tasks_dir: Path | None) -> Config:
    overrides = {"tasks_dir": str(tasks_dir.resolve())} if tasks_dir else {}
    return resolve_config(config_path, **overrides)


def open_runtime(config_path: Path | None, tasks_dir: Path | None) -> Runtime:
    """The command's runtime: its configuration and one store for all it does, opened when
    first needed and closed when the command ends."""
    from runce.runtime import Runtime

    runtime = Runtime(load_cli_config(config_path, tasks_dir))
    click.get_current_context().call_on_close(runtime.close)
    return runtime


def store_line(description: str) -> None:
    click.echo(click.style(f"store: {description}", dim=True))


class LazyGroup(click.Group):
    """A group whose other modules of commands are imported only when needed: to run a
    command not defined yet, or to list them all (``--help``). Importing a module registers
    its commands on this group, as its decorators do."""

    command_class = Command
    group_class = type  # sub-groups (runs, db, ...) are lazy groups of such commands too

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_modules: list[str] = []

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            self._load()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def _load(self) -> None:
        import importlib

        while self.lazy_modules:
            importlib.import_module(self.lazy_modules.pop(0))


EXIT_CODES_HELP = """\b
Exit codes (docs/cli.md):
  0    done
  1    failed: a task or run failed, the lock is held, the queue refused the change
  2    bad usage, configuration, input or store (nothing was written)
  3    pending work (status --fail-if-pending), or runs tail timed out
  4    runs tail: the run was canceled
  5    not found: no run, schedule or task has that id or name
  130  interrupted (Ctrl-C, SIGTERM)

With --json, output is snake_case keys and UTC times ending in Z (except `runce list
--json`, which keeps the field names of the tracker it adopts); an error is one JSON object
on stderr, {"error": {"type", "message", "exit_code"}}, with the same exit code."""


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(__version__, "--version", prog_name="runce")
def cli() -> None:
    """runce runs code once, durably, on the database your service already has.

    Once tasks are Python files in a tasks/ folder, applied once per environment:
    `runce make "name"` writes one, `runce run` applies what is pending, `runce status`
    shows every task's state.
    """


def fail(kind: str, message: str, code: int, as_json: bool) -> NoReturn:
    """Exit with ``code`` after saying why: one sentence, or one JSON object under --json."""
    if as_json:
        error = {"type": kind, "message": message, "exit_code": code}
        click.echo(json.dumps({"error": error}), err=True)
    else:
        click.echo(f"runce: {message}", err=True)
    sys.exit(code)


def interrupted(exc: KeyboardInterrupt, as_json: bool = False) -> NoReturn:
    """Ctrl-C (or SIGTERM) stopped the command: say so, with the shell's code (130)."""
    reason = message_of(exc) or "interrupted by Ctrl-C"
    message = (
        f"{reason}; the run stopped, and a task it interrupted is recorded as failed "
        "with that reason"
    )
    fail("Interrupted", message, EXIT_INTERRUPTED, as_json)
