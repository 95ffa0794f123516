"""Importing a task file and finding its one Task (T-1)."""

from __future__ import annotations

import asyncio
import inspect
import re
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import runce
from runce.errors import TaskLoadError
from runce.tasks.discovery import TaskFile, checksum_of
from runce.tasks.loader import MODULE_PREFIX, load_task
from runce.tasks.model import Task, task


@pytest.fixture(autouse=True)
def _forget_task_modules() -> Iterator[None]:
    yield
    for name in [n for n in sys.modules if n.startswith(MODULE_PREFIX)]:
        del sys.modules[name]


def unique_id(name: str = "task") -> str:
    return f"2025-01-01T000000.{name}-{uuid.uuid4().hex[:12]}"


def write_task(tasks: Path, body: str, task_id: str | None = None) -> TaskFile:
    task_id = task_id or unique_id()
    path = tasks / f"{task_id}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body).lstrip("\n"))
    return TaskFile(task_id, path, checksum_of(path.read_bytes()))


def call(fn: Callable[..., Any]) -> Any:
    """Call a task's function with no context, for functions that do not use it."""
    return fn(None)


def module_name_of(task_file: TaskFile) -> str:
    return MODULE_PREFIX + re.sub(r"\W", "_", task_file.id)


# ---------------------------------------------------------------------------------------
# The forms a task file may take
# ---------------------------------------------------------------------------------------


def test_the_decorator_form_loads(tmp_path: Path) -> None:
    task_file = write_task(
        tmp_path,
        """
        import runce

        def check(ctx):
            return True

        @runce.task(title="Create queues", already_done=check, skippable=True)
        def run(ctx):
            return "ran"
        """,
    )
    loaded = load_task(task_file)
    assert isinstance(loaded, Task)
    assert loaded.title == "Create queues"
    assert loaded.skippable is True
    assert loaded.transactional is False
    assert call(loaded.run) == "ran"
    assert loaded.already_done is not None
    assert call(loaded.already_done) is True


def test_the_task_object_form_loads(tmp_path: Path) -> None:
    task_file = write_task(
        tmp_path,
        """
        import runce

        def go(ctx):
            return "went"

        task = runce.Task(title="Seed data", run=go, transactional=True)
        """,
    )
    loaded = load_task(task_file)
    assert loaded.title == "Seed data"
    assert loaded.transactional is True
    assert loaded.already_done is None
    assert call(loaded.run) == "went"


def test_the_bare_decorator_loads(tmp_path: Path) -> None:
    task_file = write_task(
        tmp_path,
        """
        import runce

        @runce.task
        def run(ctx):
            return 42
        """,
    )
    loaded = load_task(task_file)
    assert loaded.title is None
    assert loaded.skippable is False
    assert loaded.run.__name__ == "run"
    assert call(loaded.run) == 42


def test_an_async_run_function_is_accepted(tmp_path: Path) -> None:
    task_file = write_task(
        tmp_path,
        """
        import asyncio
        import runce

        @runce.task(title="Async")
        async def run(ctx):
            await asyncio.sleep(0)
            return "awaited"
        """,
    )
    loaded = load_task(task_file)
    assert inspect.iscoroutinefunction(loaded.run)
    assert asyncio.run(call(loaded.run)) == "awaited"


def test_a_task_file_is_imported_once_per_process(tmp_path: Path) -> None:
    counter = tmp_path / "imports.txt"
    task_file = write_task(
        tmp_path / "tasks",
        f"""
        import runce
        open({str(counter)!r}, "a").write("x")

        @runce.task(title="Once")
        def run(ctx):
            pass
        """,
    )
    assert load_task(task_file) is load_task(task_file)
    assert counter.read_text() == "x"


def test_a_task_module_lives_under_the_runce_tasks_prefix(tmp_path: Path) -> None:
    task_file = write_task(tmp_path, "import runce\ntask = runce.Task(run=print)\n")
    load_task(task_file)
    assert module_name_of(task_file) in sys.modules


def test_two_ids_that_differ_only_in_punctuation_load_their_own_tasks(tmp_path: Path) -> None:
    stem = unique_id("fix")
    dashed = write_task(
        tmp_path, "import runce\ntask = runce.Task(title='dash', run=print)\n", f"{stem}-roles"
    )
    underscored = write_task(
        tmp_path,
        "import runce\ntask = runce.Task(title='underscore', run=print)\n",
        f"{stem}_roles",
    )
    assert load_task(dashed).title == "dash"
    assert load_task(underscored).title == "underscore"
    assert load_task(dashed).title == "dash"


def test_a_changed_file_is_imported_again(tmp_path: Path) -> None:
    before = write_task(tmp_path, "import runce\ntask = runce.Task(title='before', run=print)\n")
    assert load_task(before).title == "before"
    before.path.write_text("import runce\ntask = runce.Task(title='after', run=print)\n")
    after = TaskFile(before.id, before.path, checksum_of(before.path.read_bytes()))
    assert load_task(after).title == "after"


# ---------------------------------------------------------------------------------------
# Errors name the file and the line
# ---------------------------------------------------------------------------------------


def test_a_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    task_file = write_task(
        tmp_path,
        """
        import runce


        def run(ctx)
            pass
        """,
    )
    with pytest.raises(TaskLoadError, match="syntax error") as excinfo:
        load_task(task_file)
    assert str(excinfo.value).startswith(f"{task_file.path}, line 4:")


def test_an_exception_on_import_names_the_file_type_and_line(tmp_path: Path) -> None:
    task_file = write_task(
        tmp_path,
        """
        import runce

        SETTINGS = {}
        REGION = SETTINGS["region"]
        """,
    )
    with pytest.raises(TaskLoadError) as excinfo:
        load_task(task_file)
    text = str(excinfo.value)
    assert text.startswith(f"{task_file.path}, line 4 raised KeyError on import")
    assert "'region'" in text
    assert isinstance(excinfo.value.__cause__, KeyError)


def test_the_line_is_the_deepest_one_inside_the_task_file(tmp_path: Path) -> None:
    task_file = write_task(
        tmp_path,
        """
        import runce

        def connect():
            raise ConnectionError("no route to queue broker")

        CLIENT = connect()
        """,
    )
    with pytest.raises(TaskLoadError) as excinfo:
        load_task(task_file)
    text = str(excinfo.value)
    assert f"{task_file.path}, line 4 raised ConnectionError" in text
    assert "no route to queue broker" in text


def test_an_import_error_in_a_task_names_the_file(tmp_path: Path) -> None:
    task_file = write_task(tmp_path, "import runce\nimport runce_no_such_module_qq\n")
    with pytest.raises(TaskLoadError, match="ModuleNotFoundError") as excinfo:
        load_task(task_file)
    assert str(excinfo.value).startswith(f"{task_file.path}, line 2 raised")


def test_a_syntax_error_in_an_imported_module_names_that_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper_name = f"runce_test_helper_{uuid.uuid4().hex}"
    helper = tmp_path / "lib" / f"{helper_name}.py"
    helper.parent.mkdir()
    helper.write_text("A = 1\nB = 2\nC = 3\ndef broken(:\n    pass\n")
    monkeypatch.syspath_prepend(str(helper.parent))
    task_file = write_task(tmp_path / "tasks", f"import runce\nimport {helper_name}\n")
    with pytest.raises(TaskLoadError) as excinfo:
        load_task(task_file)
    assert str(helper) in str(excinfo.value)


def test_a_file_without_a_task_is_an_error_naming_it(tmp_path: Path) -> None:
    task_file = write_task(
        tmp_path,
        """
        import runce
        from runce import Task

        def run(ctx):
            pass
        """,
    )
    with pytest.raises(TaskLoadError, match=r"defines no runce\.Task") as excinfo:
        load_task(task_file)
    assert str(task_file.path) in str(excinfo.value)


def test_a_file_with_two_tasks_is_an_error_naming_them(tmp_path: Path) -> None:
    task_file = write_task(
        tmp_path,
        """
        import runce

        def go(ctx):
            pass

        first = runce.Task(title="one", run=go)
        second = runce.Task(title="two", run=go)
        """,
    )
    with pytest.raises(TaskLoadError, match=r"several runce\.Task objects") as excinfo:
        load_task(task_file)
    text = str(excinfo.value)
    assert str(task_file.path) in text
    assert "first, second" in text


@pytest.mark.parametrize(
    "broken",
    [
        "import runce\ndef run(ctx)\n    pass\n",
        "import runce\nraise RuntimeError('not yet')\n",
    ],
)
def test_a_failed_import_leaves_no_module_behind(tmp_path: Path, broken: str) -> None:
    task_file = write_task(tmp_path, broken)
    with pytest.raises(TaskLoadError):
        load_task(task_file)
    assert module_name_of(task_file) not in sys.modules

    task_file.path.write_text(
        "import runce\n\n@runce.task(title='fixed')\ndef run(ctx):\n    pass\n"
    )
    assert load_task(task_file).title == "fixed"


def test_a_task_exiting_on_import_leaves_no_module_behind(tmp_path: Path) -> None:
    task_file = write_task(tmp_path, "import sys\nsys.exit(3)\n")
    with pytest.raises((SystemExit, TaskLoadError)):
        load_task(task_file)
    assert module_name_of(task_file) not in sys.modules


# ---------------------------------------------------------------------------------------
# Task itself
# ---------------------------------------------------------------------------------------


def test_task_run_must_be_callable() -> None:
    with pytest.raises(TypeError, match="run"):
        Task(run="not callable")  # type: ignore[arg-type]


def test_task_already_done_must_be_callable() -> None:
    with pytest.raises(TypeError, match="already_done"):
        Task(run=print, already_done=True)  # type: ignore[arg-type]


def test_the_decorator_checks_already_done_too() -> None:
    with pytest.raises(TypeError, match="already_done"):
        task(already_done="yes")(print)  # type: ignore[call-overload]


def test_public_names() -> None:
    assert runce.Task is Task
    assert runce.task is task
