"""The docs stay true: the configuration table is made from the keys runce accepts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import runce

ROOT = Path(__file__).parents[2]


def test_the_configuration_table_matches_the_keys() -> None:
    spec = importlib.util.spec_from_file_location(
        "config_table", ROOT / "scripts" / "config_table.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.table() in (ROOT / "docs" / "configuration.md").read_text(), (
        "docs/configuration.md is out of date: python scripts/config_table.py prints the table"
    )


def test_the_public_names_are_exactly_the_curated_ones() -> None:
    modules = {"api", "cli", "config", "contrib", "domain", "errors", "errortext", "runs"}
    modules |= {"logformat", "stores", "tasks", "timeutil", "tracing", "transaction"}
    modules |= {"defaults", "interrupts", "runtime"}
    for name in runce.__all__:
        assert getattr(runce, name) is not None, name
    exported = {name for name in dir(runce) if not name.startswith("_")}
    assert exported - modules == set(runce.__all__) - {"__version__"}


def test_the_cli_state_choices_are_the_run_states() -> None:
    from runce.cli.runs import STATES
    from runce.domain.runs import RUN_STATES

    assert STATES == RUN_STATES
