"""examples/django, a real Django project, on SQLite and PostgreSQL (Django's default
psycopg 3 backend, client-side cursors): the store is the project's database, an enqueue on
Django's connection inside ``transaction.atomic()`` commits or rolls back with it, the
on-commit helper enqueues only after a commit, and ``manage.py runce`` runs runce's
commands, each in a real subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services
from tests.acceptance.conftest import clean_env

EXAMPLE = Path(__file__).parents[2] / "examples" / "django"

pytestmark = pytest.mark.slow


class Project:
    def __init__(self, root: Path, postgres_url: str | None) -> None:
        self.root = root
        self.ledger = root / "ledger.txt"
        self.env = clean_env(DJSHOP_LEDGER=str(self.ledger))
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.store = f"sqlite:///{root / 'db.sqlite3'}"
        if postgres_url:
            self.env["DJSHOP_POSTGRES_URL"] = postgres_url
            self.store = postgres_url

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def lines(self) -> list[str]:
        return self.ledger.read_text().splitlines() if self.ledger.exists() else []


@pytest.fixture(params=["sqlite", "postgres"])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    root = tmp_path / "site"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    if request.param == "sqlite":
        yield Project(root, None)
        return
    server = request.getfixturevalue("postgres_server")
    database = services.create_database(server)
    yield Project(root, database)
    services.drop_database(server, database)


def test_a_django_project_uses_its_database_as_the_store(project: Project) -> None:
    applied = project.manage("runce", "run")
    assert applied.returncode == 0, applied.stderr
    assert "OK       2025-07-01T090000.open-the-shop" in applied.stdout
    assert project.lines() == ["opened"]

    script = textwrap.dedent(
        """
        import json
        import runce
        from django.db import connection
        from djshop.orders import PaymentDeclined, place_order, place_order_then_enqueue

        kept = place_order("kept@example.com")
        for place in (place_order, place_order_then_enqueue):
            try:
                place("declined@example.com", declined=True)
            except PaymentDeclined:
                pass
        place_order_then_enqueue("later@example.com")
        try:
            runce.enqueue("djshop.welcome", {"email": "x"}, connection=connection)
        except runce.UsageError as exc:
            print("REFUSED " + str(exc))
        print("RESULT " + json.dumps({"kept": kept}))
        """
    )
    shell = project.manage("shell", "-c", script)
    assert shell.returncode == 0, shell.stderr
    [result] = [line for line in shell.stdout.splitlines() if line.startswith("RESULT ")]
    kept = json.loads(result.removeprefix("RESULT "))["kept"]
    assert "REFUSED connection= is Django's connection outside a transaction" in shell.stdout

    listed = project.manage("runce", "runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)["runs"]
    emails = sorted(run["input"]["email"] for run in runs)
    assert emails == ["kept@example.com", "later@example.com"], "rolled back: no run"
    assert kept in {run["id"] for run in runs}

    worked = project.manage("runce", "worker", "--drain")
    assert worked.returncode == 0, worked.stderr
    assert sorted(project.lines()[1:]) == [
        "welcomed kept@example.com",
        "welcomed later@example.com",
    ]

    status = project.manage("runce", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    store_line = status.stdout.splitlines()[0]
    assert store_line.startswith(f"store: {project.store}"), store_line


def test_a_bad_runce_command_exits_2_with_runce_s_usage(project: Project) -> None:
    done = project.manage("runce", "no-such-command")
    assert done.returncode == 2
    assert "manage.py runce" in done.stderr


def test_django_s_test_runner_gives_runce_the_test_database(project: Project) -> None:
    """``manage.py test`` runs the shop's tests on Django's test database, and runce's
    store is that database: an enqueue on Django's connection is accepted there, a
    rollback leaves no run, and the project's own database gets none of the tests' runs."""
    tested = project.manage("test", "--noinput", "-v", "2")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "Ran 3 tests" in tested.stderr, tested.stderr
    assert "\nOK" in tested.stderr, tested.stderr
    listed = project.manage("runce", "runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["runs"] == []
