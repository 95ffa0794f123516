"""A throw-away project per test: a tasks folder and a configuration on a fresh store."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import runce
from runce.config import Config, load_config
from runce.stores import memory


class Project:
    def __init__(self, root: Path, store: str) -> None:
        self.root = root
        self.tasks = root / "tasks"
        self.tasks.mkdir(parents=True, exist_ok=True)
        self.store = store
        self.values: dict[str, object] = {"store": store}

    def task(self, task_id: str, body: str) -> Path:
        """Write ``tasks/<task_id>.py``; ``body`` is dedented, ``import runce`` added."""
        path = self.tasks / f"{task_id}.py"
        path.write_text("import runce\n" + textwrap.dedent(body))
        return path

    def simple(self, task_id: str, action: str = "pass", **flags: object) -> Path:
        options = "".join(f", {k}={v!r}" for k, v in flags.items())
        return self.task(
            task_id,
            f"""
            @runce.task(title={task_id!r}{options})
            def run(ctx):
                {action}
            """,
        )

    def config(self, **values: object) -> Config:
        return load_config(values={**self.values, **values}, start=self.root, env={})

    def run(self, **options: object) -> runce.RunReport:
        config = options.pop("config", None) or self.config()
        return runce.run_tasks(config, **options)  # type: ignore[arg-type]

    def outcomes(self, report: runce.RunReport) -> dict[str, str]:
        return {r.id: r.outcome for r in report.results}

    def states(self) -> dict[str, str]:
        return {s.id: s.state.value for s in runce.task_status(self.config()).tasks}


STORES = {
    "memory": lambda root: f"memory://{uuid.uuid4().hex}",
    "sqlite": lambda root: "sqlite:///runce.db",
    "file": lambda root: f"file://{root / 'applied.jsonl'}",
}


@pytest.fixture(params=sorted(STORES))
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    yield Project(tmp_path, STORES[request.param](tmp_path))
    memory.reset()


@pytest.fixture(autouse=True)
def _forget_task_modules() -> Iterator[None]:
    """Task modules are cached by id; tests reuse ids in different folders."""
    yield
    for name in [n for n in sys.modules if n.startswith("runce_tasks.")]:
        del sys.modules[name]
