"""The ``runce`` command: parse, call the library, print. Nothing else lives here.

``main`` first lets :mod:`runce.cli.quick` answer ``runce run`` and ``runce status`` when
every task is applied (standard library only); everything else loads the full command
line (:mod:`.main`, with the once-task commands of :mod:`.tasks`), whose job-queue commands
(:mod:`.runs`) load only when one of them runs or the list is shown.
"""

from __future__ import annotations

__all__ = ["main"]


def _main(argv: list[str] | None = None) -> None:
    from runce.cli import quick

    if quick.answer(argv):
        return
    from runce.cli.main import main as full

    # Importing the submodule runce.cli.main made it the package's `main`: the entry point
    # is this function still.
    globals()["main"] = _main
    full(argv)


main = _main
