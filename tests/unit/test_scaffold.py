"""``runce make``: naming a new task file and writing it from the template (T-9)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runce.config import Config
from runce.errors import UsageError
from runce.stores.base import StoreSpec
from runce.tasks.discovery import discover
from runce.tasks.loader import MODULE_PREFIX, load_task
from runce.tasks.model import TaskContext, task_logger
from runce.tasks.scaffold import slugify, task_file_name, write_task

NOON = datetime(2025, 10, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _forget_task_modules() -> Iterator[None]:
    yield
    for name in [n for n in sys.modules if n.startswith(MODULE_PREFIX)]:
        del sys.modules[name]


def context_for(tmp_path: Path, task_id: str, title: str) -> TaskContext:
    config = Config(
        base_dir=tmp_path,
        tasks_dir=tmp_path / "tasks",
        store=StoreSpec(type="memory", url="memory://scaffold", base_dir=tmp_path),
    )
    return TaskContext(id=task_id, title=title, config=config, log=task_logger(task_id))


# ---------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------


def test_task_file_name() -> None:
    assert task_file_name("Init Queues", NOON) == "2025-10-01T120000.init-queues.py"


def test_task_file_name_keeps_seconds() -> None:
    moment = datetime(2024, 2, 29, 23, 59, 7, 999_999, tzinfo=UTC)
    assert task_file_name("x", moment) == "2024-02-29T235907.x.py"


def test_task_file_name_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    name = task_file_name("Now")
    after = datetime.now(UTC)
    stamp = datetime.strptime(name.split(".")[0], "%Y-%m-%dT%H%M%S").replace(tzinfo=UTC)
    assert before <= stamp <= after
    assert name.endswith(".now.py")


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Init Queues", "init-queues"),
        ("Crème Brûlée für Ärzte", "creme-brulee-fur-arzte"),
        ("Fix roles: admin/users (v2)!", "fix-roles-admin-users-v2"),
        ("  --Backfill__orders--  ", "backfill-orders"),
        ("warm   the\tcache\n", "warm-the-cache"),
        ("ÀÉÎÕÜ ñ ç", "aeiou-n-c"),
        ("2025 Q3 report", "2025-q3-report"),
        ("日本 queues", "queues"),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


@pytest.mark.parametrize("name", ["", "   ", "!!!", "---", "日本語", "🚀"])
def test_a_name_with_no_slug_is_a_usage_error(name: str) -> None:
    with pytest.raises(UsageError, match="cannot make a task file name"):
        task_file_name(name, NOON)


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def test_write_task_creates_the_folder_and_the_file(tmp_path: Path) -> None:
    tasks = tmp_path / "deep" / "tasks"
    path = write_task(tasks, "Init Queues", NOON)
    assert path == tasks / "2025-10-01T120000.init-queues.py"
    assert path.is_file()
    assert path.read_text(encoding="utf-8").startswith('"""Init Queues\n')


def test_write_task_refuses_to_overwrite(tmp_path: Path) -> None:
    path = write_task(tmp_path, "Init Queues", NOON)
    path.write_text("# my edits\n")
    with pytest.raises(UsageError, match="already exists") as excinfo:
        write_task(tmp_path, "init   queues!", NOON)
    assert str(path) in str(excinfo.value)
    assert path.read_text() == "# my edits\n"


def test_write_task_with_no_slug_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        write_task(tmp_path / "tasks", "???", NOON)
    assert not (tmp_path / "tasks").exists()


def test_the_template_loads_and_runs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tasks = tmp_path / "tasks"
    write_task(tasks, "  Init Queues ", NOON)
    (task_file,) = discover(tasks)
    assert task_file.id == "2025-10-01T120000.init-queues"

    loaded = load_task(task_file)
    assert loaded.title == "Init Queues"
    assert loaded.skippable is False
    assert loaded.transactional is False
    assert loaded.already_done is not None

    ctx = context_for(tmp_path, task_file.id, "Init Queues")
    assert loaded.already_done(ctx) is False
    with caplog.at_level(logging.INFO, logger="runce.task"):
        assert loaded.run(ctx) is None
    assert [r.getMessage() for r in caplog.records if r.name == "runce.task"] == [
        "nothing to do yet: write the one-time work here"
    ]
    assert caplog.records[-1].task_id == task_file.id  # type: ignore[attr-defined]


def test_the_template_explains_re_runs_and_already_done(tmp_path: Path) -> None:
    text = write_task(tmp_path, "Explain", NOON).read_text()
    assert "safe to re-run" in text
    assert "already_done" in text
    assert "ctx.progress(done, total)" in text
    assert "ctx.services" in text


@pytest.mark.parametrize(
    "title",
    ['Fix "roles" for O\'Brien', "Café ✓ {braces} %s", "100% done"],
)
def test_titles_with_quotes_and_braces_load(tmp_path: Path, title: str) -> None:
    write_task(tmp_path, title, NOON)
    (task_file,) = discover(tmp_path)
    assert load_task(task_file).title == title


@pytest.mark.parametrize("title", [r"Import C:\Users\data", 'Say """hi"""'])
def test_any_title_makes_an_importable_file(tmp_path: Path, title: str) -> None:
    write_task(tmp_path, title, NOON)
    (task_file,) = discover(tmp_path)
    assert load_task(task_file).title == title
