"""``python manage.py runce <command> [args]``: every runce command, with the configuration
taken from Django's settings."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand

from runce.cli.main import main


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no type information
    help = "Run a runce command (runce --help lists them) on the store of Django's DATABASES."

    def run_from_argv(self, argv: list[str]) -> None:
        # runce parses its own arguments: nothing of Django's options comes between.
        main(argv[2:], prog_name=f"{argv[0]} {argv[1]}")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("arguments", nargs=argparse.REMAINDER)

    def handle(self, *args: Any, **options: Any) -> None:
        main(list(options.get("arguments") or args), prog_name="manage.py runce")
