"""A selection that names nothing is a usage error, never "everything"."""

from __future__ import annotations

from pathlib import Path

import pytest

import runce
from runce.errors import UsageError
from runce.tasks.library import baseline
from tests.unit.conftest import Project


@pytest.mark.parametrize("only", [[], [""], "", ",", " , ", ()])
def test_an_empty_only_is_refused_and_runs_nothing(project: Project, only: object) -> None:
    project.simple("1.one")
    project.simple("2.two")
    with pytest.raises(UsageError, match="only names no task id"):
        project.run(only=only)
    assert project.states() == {"1.one": "PENDING", "2.two": "PENDING"}


def test_only_as_comma_separated_text_selects_those_ids(project: Project) -> None:
    project.simple("1.one")
    project.simple("2.two")
    project.simple("3.three")
    report = project.run(only="1.one, 3.three,")
    assert project.outcomes(report) == {"1.one": "ok", "2.two": "not-selected", "3.three": "ok"}


@pytest.mark.parametrize("bound", ["since", "until"])
def test_an_empty_bound_is_refused(project: Project, bound: str) -> None:
    project.simple("1.one")
    with pytest.raises(UsageError, match=f"{bound} is empty"):
        project.run(**{bound: ""})
    assert project.states() == {"1.one": "PENDING"}


def test_baseline_all_with_an_empty_until_is_refused(project: Project) -> None:
    project.simple("1.one")
    with pytest.raises(UsageError, match="until is empty"):
        baseline(project.config(), all_pending=True, until="")
    assert project.states() == {"1.one": "PENDING"}


@pytest.mark.parametrize("kinds", [[], [""], "", ","])
def test_a_worker_with_no_kinds_is_refused(tmp_path: Path, kinds: object) -> None:
    config = {"store": f"sqlite:///{tmp_path / 'runce.db'}"}
    with pytest.raises(UsageError, match="kinds names no job kind"):
        runce.worker(config, kinds=kinds)  # type: ignore[arg-type]
