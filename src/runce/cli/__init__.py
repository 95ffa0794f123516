"""The ``runce`` command: parse, call the library, print. Nothing else lives here.

``main`` first lets :mod:`runce.cli.quick` answer a ``runce run`` that has nothing to do
(standard library only); everything else loads the full command line (:mod:`.main`), whose
job-queue commands (:mod:`.runs`) load only when one of them runs or the list is shown.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    from runce.cli import quick

    if quick.run_if_nothing_to_do(argv):
        return
    from runce.cli.main import main as full

    full(argv)
