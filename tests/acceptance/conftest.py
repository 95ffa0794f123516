"""Acceptance tests run the installed ``runce`` command in a subprocess, as users do."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

RUNCE = str(Path(sys.executable).with_name("runce"))
PYTHON = str(Path(RUNCE).with_name("python"))
EXAMPLE = Path(__file__).parents[2] / "examples" / "quickstart"


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any RUNCE_* setting of the developer's or CI's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCE_")}
    env.update(extra)
    return env


class Workspace:
    """A project folder with a runce.toml, and a way to call the real command in it."""

    def __init__(self, root: Path, store: str, settings: str = "") -> None:
        self.root = root
        self.tasks = root / "tasks"
        self.tasks.mkdir(parents=True, exist_ok=True)
        self.store = store
        self.settings = settings  # top-level keys every config of this workspace keeps
        self.procs: list[subprocess.Popen[str]] = []
        self.write_config()

    def write_config(self, extra: str = "") -> None:
        body = f'store = "{self.store}"\n{self.settings}' + textwrap.dedent(extra)
        (self.root / "runce.toml").write_text(body)

    def task(self, task_id: str, body: str) -> Path:
        path = self.tasks / f"{task_id}.py"
        path.write_text("import runce\n" + textwrap.dedent(body))
        return path

    def appending_task(self, task_id: str, log: Path, sleep: float = 0.0) -> Path:
        return self.task(
            task_id,
            f"""
            import time

            @runce.task(title="append {task_id}")
            def run(ctx):
                time.sleep({sleep})
                with open({str(log)!r}, "a") as handle:
                    handle.write({task_id!r} + "\\n")
            """,
        )

    def runce(
        self, *args: str, timeout: float = 60, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RUNCE, *args],
            cwd=self.root,
            env=clean_env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [RUNCE, *args],
            cwd=self.root,
            env=clean_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def reap(self) -> None:
        """Kill what a test started and left running (after a failed assertion, say)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def stores_for(root: Path) -> dict[str, str]:
    return {
        "sqlite": "sqlite:///.runce/runce.db",
        "file": f"file://{root / 'state' / 'applied.jsonl'}",
    }


def _server_stores() -> list[str]:
    """Stores on database servers join the real-process tests as their backend lands."""
    found = importlib.util.find_spec
    return [
        name
        for name, module in (("postgres", "runce.stores.postgres"), ("mongo", "runce.stores.mongo"))
        if found(module)
    ]


def run_stores() -> list[str]:
    """The stores that keep runs, for the tests of real workers."""
    return ["sqlite", *_server_stores()]


@pytest.fixture(params=["sqlite", "file", *_server_stores()])
def workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    yield from store_workspace(request, tmp_path)


def store_workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    """A workspace on the store ``request.param`` names; a server's schema or database is
    dropped after."""
    if request.param == "postgres":
        yield from postgres_workspace(request, tmp_path)
    elif request.param == "mongo":
        yield from mongo_workspace(request, tmp_path)
    else:
        space = Workspace(tmp_path, stores_for(tmp_path)[request.param])
        yield space
        space.reap()


def worker_workspace(
    request: pytest.FixtureRequest, tmp_path: Path, jobs: str, settings: str
) -> Iterator[Workspace]:
    """A workspace on the store ``request.param`` names, set up for workers (see
    :func:`with_jobs`)."""
    for space in store_workspace(request, tmp_path):
        yield with_jobs(space, jobs, settings)


def with_jobs(space: Workspace, jobs: str, settings: str) -> Workspace:
    """``space`` with ``settings`` (its ``[worker]`` table, say) added to its runce.toml and
    ``jobs`` as its jobs.py."""
    space.settings += settings
    space.write_config()
    (space.root / "jobs.py").write_text(jobs)
    return space


def run_python(space: Workspace, script: str, *args: str, timeout: float = 120) -> str:
    """Run a Python ``script`` in the workspace, as a user's program would; its output."""
    done = subprocess.run(
        [PYTHON, "-c", script, *args],
        cwd=space.root,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, output_of(done)
    return done.stdout


def postgres_workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    """A workspace on the test PostgreSQL, in a schema of its own."""
    from tests import services

    url = request.getfixturevalue("postgres_server")
    schema = f"runce_t_{uuid.uuid4().hex[:12]}"
    space = Workspace(tmp_path, url, f'schema = "{schema}"\n')
    yield space
    space.reap()
    services.drop_schema(url, schema)


def mongo_workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    """A workspace on the test MongoDB server, in a database of its own."""
    import pymongo

    server = request.getfixturevalue("mongo_server")
    database = f"runce_t_{uuid.uuid4().hex[:12]}"
    space = Workspace(tmp_path, f"{server.rstrip('/')}/{database}")
    yield space
    space.reap()
    with pymongo.MongoClient(server) as client:
        # A process the test killed may have left a transaction open, which a drop would
        # wait for until the server gives up on it: end every session first.
        client.admin.command("killAllSessions", [])
        client.drop_database(database)


@pytest.fixture
def sqlite_workspace(tmp_path: Path) -> Iterator[Workspace]:
    space = Workspace(tmp_path, stores_for(tmp_path)["sqlite"])
    yield space
    space.reap()


def copy_example(target: Path) -> Path:
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".runce", "var", "__pycache__"))
    return target


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def all_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_for(path: Path, timeout: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def assert_one_sentence(text: str, *needles: str) -> None:
    """An error is one line saying what and where, with no traceback."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert "Traceback" not in text, text
    assert any(all(n in line for n in needles) for line in lines), text


Args = Sequence[str]
