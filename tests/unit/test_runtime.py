"""One runtime object (configuration, store, the parts made on them) per owner: a command's
calls share one store, which it closes at its end; a call given a configuration opens its
store for its length; the library's default and the HTTP app borrow the process's shared
store and never close it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runce import runtime as runtime_module
from runce.config import Config, load_config
from runce.runs import library as runs_library
from runce.runtime import Runtime, shared_store
from runce.stores.base import Store
from runce.tasks import library as tasks_library


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "runce.toml").write_text(f'store = "sqlite:///{tmp_path / "runce.db"}"\n')
    return load_config(tmp_path / "runce.toml", env={})


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Each store the runtimes open, as [opened, closed?] (real SQLite stores, counted)."""
    seen: list[list[str]] = []
    real = runtime_module.open_store

    def counting(spec: Any) -> Store:
        store = real(spec)
        entry = ["opened"]
        seen.append(entry)
        close = store.close

        def closing() -> None:
            entry.append("closed")
            close()

        store.close = closing  # type: ignore[method-assign]
        return store

    monkeypatch.setattr(runtime_module, "open_store", counting)
    return seen


def test_calls_given_a_runtime_share_its_one_store_until_it_closes(
    config: Config, opened: list[list[str]]
) -> None:
    with Runtime(config) as runtime:
        tasks_library.task_status(runtime)
        tasks_library.list_applied(runtime)
        tasks_library.schema_status(runtime)
        assert runtime.description == runtime.store.description
        assert opened == [["opened"]]
    assert opened == [["opened", "closed"]]


def test_a_call_given_a_configuration_opens_and_closes_its_own(
    config: Config, opened: list[list[str]]
) -> None:
    tasks_library.task_status(config)
    tasks_library.run_tasks(config)
    assert opened == [["opened", "closed"], ["opened", "closed"]]


def test_a_call_that_needs_no_store_opens_none(config: Config, opened: list[list[str]]) -> None:
    path = tasks_library.make_task(config, "warm caches")
    assert path.exists()
    assert opened == []


def test_boot_reads_the_states_and_runs_on_one_store(
    config: Config, opened: list[list[str]]
) -> None:
    (config.tasks_dir / "2025-01-01.one.py").write_text(
        "import runce\n\n@runce.task\ndef run(ctx):\n    pass\n"
    )
    report = tasks_library.run_pending_on_boot(config, wait=0)
    assert report.ok
    assert [r.id for r in report.results] == ["2025-01-01.one"]
    assert opened == [["opened", "closed"]]


def test_a_part_is_made_once_per_runtime(config: Config) -> None:
    made: list[Runtime] = []

    def make(runtime: Runtime) -> str:
        made.append(runtime)
        return runtime.description

    with Runtime(config) as runtime:
        assert runtime.part(make) == runtime.part(make)
        assert made == [runtime]


def test_a_shared_runtime_borrows_the_process_store_and_leaves_it_open(config: Config) -> None:
    runtime = Runtime.shared(config)
    store = runtime.store
    assert store is shared_store(config.store)
    runtime.close()
    assert shared_store(config.store) is store
    assert runs_library.runtime(config).store is store
    store.schema_status()  # still open
