"""runce.contrib.asgi in-process, on SQLite: the services dependency, once tasks applied before
the app serves, and the embedded worker handing back a run still running at shutdown."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

import runce
from runce.config import Config, load_config
from runce.contrib import asgi


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Config]:
    """A project with a once task, a job that blocks until told, and a services factory."""
    name = f"asgi_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            f"""
            import threading
            import runce

            release = threading.Event()
            made = []

            def services():
                made.append(object())
                return made[-1]

            @runce.job("{name}.slow")
            def slow(params, ctx):
                release.wait(60)
            """
        )
    )
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "1.hello.py").write_text(
        "import runce\n\n@runce.task(title='hello')\ndef run(ctx):\n    pass\n"
    )
    config = load_config(
        values={
            "store": "sqlite:///runce.db",
            "services": f"{name}:services",
            "worker": {"handlers": [name], "poll": 0.05},
        },
        start=tmp_path,
        env={},
    )
    yield config
    module = sys.modules.get(name)
    if module is not None:
        module.release.set()


def test_the_lifespan_applies_tasks_and_the_dependency_gives_the_services(
    project: Config,
) -> None:
    app = FastAPI(lifespan=asgi.lifespan(project))

    @app.get("/services")
    def which(services: Annotated[object, Depends(asgi.services)]) -> dict[str, int]:
        return {"id": id(services)}

    with TestClient(app) as client:
        assert [s.state.value for s in runce.task_status(project).tasks] == ["APPLIED"]
        first = client.get("/services").json()["id"]
        assert client.get("/services").json()["id"] == first, "made once per app"


def test_the_embedded_worker_hands_back_a_running_run_at_shutdown(project: Config) -> None:
    kind = f"{project.worker.handlers[0]}.slow"

    async def scenario() -> runce.Run:
        lifespan = asgi.lifespan(project, worker=True, shutdown_timeout=0.2)
        async with lifespan(FastAPI()):
            run = await runce.aenqueue(kind, {}, config=project)
            deadline = time.monotonic() + 30
            while (await runce.aget_run(run.id, config=project)).state != "running":
                assert time.monotonic() < deadline, "the embedded worker never claimed the run"
                await asyncio.sleep(0.05)
        return await runce.aget_run(run.id, config=project)

    after = asyncio.run(scenario())
    assert after.state == "queued", "handed back, to be run again by the next worker"
    assert after.claimed_by is None
    assert after.attempt == 0, "a run handed back keeps its attempts"


def test_a_failing_once_task_stops_the_start_up(project: Config) -> None:
    (project.tasks_dir / "2.broken.py").write_text(
        "import runce\n\n@runce.task(title='broken')\ndef run(ctx):\n    raise RuntimeError('no')\n"
    )
    app = FastAPI(lifespan=asgi.lifespan(project, worker=True))
    with pytest.raises(runce.TasksFailed, match=r"2\.broken"), TestClient(app):
        pass


def test_the_lifespan_composes_with_the_app_s_own(project: Config) -> None:
    entered: list[str] = []

    @asynccontextmanager
    async def mine(app: object) -> AsyncIterator[None]:
        entered.append("around")
        yield

    @asynccontextmanager
    async def outer(app: FastAPI) -> AsyncIterator[None]:
        async with asgi.lifespan(project, around=mine)(app):
            entered.append("inside")
            yield

    app = FastAPI(lifespan=outer)

    @app.get("/services")
    def which(services: Annotated[object, Depends(asgi.services)]) -> dict[str, bool]:
        return {"made": services is not None}

    with TestClient(app) as client:
        assert client.get("/services").json() == {"made": True}
    assert entered == ["around", "inside"]


def test_the_app_s_endpoints_use_the_lifespan_s_config_by_default(
    project: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runce.toml in the current directory names another store: the endpoints enqueue,
    read and list on the lifespan's store all the same."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "runce.toml").write_text('store = "sqlite:///other.db"\n')
    monkeypatch.chdir(elsewhere)
    kind = f"{project.worker.handlers[0]}.slow"
    app = FastAPI(lifespan=asgi.lifespan(project))

    @app.post("/runs")
    async def enqueue() -> dict[str, str]:
        run = await runce.aenqueue(kind, {})
        return {"id": run.id, "state": (await runce.aget_run(run.id)).state}

    @app.post("/runs/sync")
    def enqueue_sync() -> dict[str, str]:
        return {"id": runce.enqueue(kind, {}).id}

    with TestClient(app) as client:
        made = [client.post("/runs").json(), client.post("/runs/sync").json()]
    assert made[0]["state"] == "queued"
    mine = {run.id for run in runce.list_runs(config=project).runs}
    assert {ids["id"] for ids in made} <= mine
    assert runce.list_runs(config=elsewhere / "runce.toml").runs == []
