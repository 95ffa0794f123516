"""The wheel users install holds every file the package reads at run time: the dashboard's
templates and static files, the SQL the stores load, and py.typed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from runce.stores.postgres import queries as postgres_queries
from runce.stores.sqlite import queries as sqlite_queries
from tests.services import ROOT

pytestmark = pytest.mark.slow

PACKAGE = ROOT / "src" / "runce"


def _build(into: Path) -> set[str]:
    """The names in the wheel pip builds from the checkout (its build backend from the
    package index, as any install from source gets it)."""
    made = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(into), ROOT],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    [wheel] = into.glob("nurv_runce-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_holds_the_templates_static_files_sql_and_py_typed(tmp_path: Path) -> None:
    names = _build(tmp_path)
    data = {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }
    assert data - names == set(), "files of src/runce missing from the wheel"
    ui = "runce/api/ui/"
    templates = {name for name in names if name.startswith(ui + "templates/")}
    assert {ui + "templates/base.html", ui + "templates/run.html"} <= templates
    assert all(name.endswith(".html") for name in templates)
    assert {ui + "static/app.js", ui + "static/app.css", "runce/py.typed"} <= names
    for store, loader in (("postgres", postgres_queries), ("sqlite", sqlite_queries)):
        folder = f"runce/stores/{store}/"
        assert {folder + name for name in loader._QUERY_FILES} <= names
        migrations = {folder + "migrations/" + name for name in loader.MIGRATIONS.names}
        assert migrations <= names
        assert any(name.endswith("0001_once_tasks.sql") for name in migrations)
