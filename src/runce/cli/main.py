"""The ``runce`` command's entry point: the root group with the once-task commands
(:mod:`.tasks`) loaded, the others loaded when used, and runce's errors turned into one
sentence and an exit code."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import click

from runce import interrupts
from runce.cli import tasks as _tasks  # noqa: F401  (registers the once-task commands)
from runce.cli.logs import use_format
from runce.cli.root import EXIT_USAGE, cli, fail, interrupted
from runce.errors import RunceError
from runce.logformat import StderrHandler

__all__ = ["cli", "main"]

# Their commands register on cli when imported: see LazyGroup.
cli.lazy_modules.extend(
    ["runce.cli.runs", "runce.cli.schedules", "runce.cli.serve", "runce.cli.tokens"]
)


# -- entry point --------------------------------------------------------------------------------


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def main(argv: list[str] | None = None, prog_name: str = "runce") -> None:
    """Run the CLI; runce's errors become one sentence and their exit code (under
    ``--json``, one JSON object on stderr, with the same exit code)."""
    logging.basicConfig(level=logging.INFO, handlers=[StderrHandler()])
    use_format("text")
    signal.signal(signal.SIGTERM, _on_sigterm)
    interrupts.watch()
    as_json = _wants_json(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except RunceError as exc:
        fail(type(exc).__name__, str(exc), exc.exit_code, as_json)
    except click.exceptions.Abort as exc:
        # click turns KeyboardInterrupt (and our SIGTERM) into Abort; keep the shell's code
        if isinstance(exc.__cause__, KeyboardInterrupt):
            interrupted(exc.__cause__, as_json)
        if as_json:
            fail("Aborted", "aborted", 1, as_json)
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        if as_json:
            fail("UsageError", exc.format_message(), EXIT_USAGE, as_json)
        exc.show()
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt as exc:
        interrupted(exc, as_json)


def _wants_json(args: list[str]) -> bool:
    """Whether the command line asks for ``--json`` (before a ``--``, if any)."""
    return "--json" in (args[: args.index("--")] if "--" in args else args)
