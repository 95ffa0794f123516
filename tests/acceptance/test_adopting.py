"""Adopting records another tool wrote (S-3, T-8), through the real ``runce`` command: a
record whose checksum is not in runce's ``sha256:`` form counts as applied, is shown as
another tool's, is never run again nor refused as drift, and ``repair``/``baseline`` record
runce's own checksum."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from runce.domain.tasks import AppliedRecord
from runce.runtime import using
from tests.acceptance.conftest import RUNCE, Workspace, all_lines, clean_env, output_of
from tests.stores.records import finished, started

pytestmark = pytest.mark.slow

TASK_ID = "2025-10-01T120000.init-queues"
FOREIGN = "9f86d081884c7d65"  # as the seed's TypeScript tracker writes it


def _appending_task(space: Workspace, log: Path) -> None:
    space.appending_task(TASK_ID, log)


def _write_foreign_record(space: Workspace) -> None:
    """An applied record under another tool's checksum, written straight into the store."""
    with using(space.root / "runce.toml") as runtime:
        store = runtime.store
        row = finished(started(TASK_ID))
        row = replace(row, checksum=FOREIGN)
        record = AppliedRecord(
            id=TASK_ID,
            name="Initialize message queues",
            checksum=FOREIGN,
            applied_at=datetime(2025, 10, 1, 12, 0, 5, tzinfo=UTC),
            duration_ms=812,
            status="success",
            attempt_id=row.attempt_id,
        )
        store.tracker.record(row, record, None)


def _status_of(space: Workspace) -> dict[str, Any]:
    result = space.runce("status", "--json")
    assert result.returncode == 0, output_of(result)
    (task,) = json.loads(result.stdout)["tasks"]
    assert isinstance(task, dict)
    return task


def _adopted_then_owned(space: Workspace, log: Path, command: tuple[str, ...]) -> None:
    task = _status_of(space)
    assert (task["state"], task["applied_checksum"]) == ("APPLIED", FOREIGN)
    assert task["note"] == "checksum written by another tool"
    shown = space.runce("status")
    assert "checksum written by another tool" in shown.stdout, output_of(shown)

    ran = space.runce("run")
    assert ran.returncode == 0, output_of(ran)  # not refused as drift
    assert all_lines(log) == []  # and not run again

    accepted = space.runce(*command)
    assert accepted.returncode == 0, output_of(accepted)
    task = _status_of(space)
    assert task["state"] == "APPLIED"
    assert task["applied_checksum"] == task["checksum"]
    assert task["applied_checksum"].startswith("sha256:")
    assert task["note"] is None
    assert task["applied_at"].startswith("2025-10-01")  # when the work was done is kept
    history = json.loads(space.runce("history", "--json", TASK_ID).stdout)
    assert history[-1]["status"] == {"repair": "repaired", "baseline": "baselined"}[command[0]]
    assert all_lines(log) == []


@pytest.mark.parametrize("command", [("repair", TASK_ID), ("baseline", "--all")])
def test_another_tools_record_counts_as_applied_until_runce_records_its_own(
    workspace: Workspace, tmp_path: Path, command: tuple[str, ...]
) -> None:
    log = tmp_path / "ran.log"
    _appending_task(workspace, log)
    _write_foreign_record(workspace)
    _adopted_then_owned(workspace, log, command)


@pytest.fixture
def mongo_space(mongo_server: str, tmp_path: Path) -> Iterator[tuple[Workspace, Any]]:
    import pymongo

    database = f"runce_t_{uuid.uuid4().hex[:12]}"
    space = Workspace(tmp_path / "project", f"{mongo_server.rstrip('/')}/{database}")
    with pymongo.MongoClient(mongo_server, tz_aware=True) as client:
        yield space, client[database]
        space.reap()
        client.drop_database(database)


@pytest.mark.mongo
def test_the_typescript_tools_documents_are_adopted(
    mongo_space: tuple[Workspace, Any], tmp_path: Path
) -> None:
    space, raw = mongo_space
    log = tmp_path / "ran.log"
    _appending_task(space, log)
    # As the seed's tool writes it: no attemptId, a naive date, a JS number, its own checksum.
    raw["runce.applied"].insert_one(
        {
            "id": TASK_ID,
            "name": "Initialize message queues",
            "checksum": FOREIGN,
            "appliedAt": datetime(2025, 10, 1, 12, 0, 5),
            "durationMs": 812.0,
            "status": "success",
        }
    )
    _adopted_then_owned(space, log, ("repair", TASK_ID))
    doc = raw["runce.applied"].find_one({"id": TASK_ID})
    assert doc is not None
    assert doc["checksum"].startswith("sha256:")


# --- docs/adopting.md: every example is a file this suite runs ------------------------------

ROOT = Path(__file__).parents[2]
FENCE = re.compile(r"```(?:sh|python)\n(.*?)```", re.DOTALL)


def test_every_example_in_adopting_md_is_part_of_a_tested_file() -> None:
    blocks = FENCE.findall((ROOT / "docs" / "adopting.md").read_text())
    assert len(blocks) == 3
    for block in blocks:
        first, _, body = block.partition("\n")
        path = ROOT / first.removeprefix("# ").strip()
        assert body.strip() in path.read_text(), f"a block is not part of {path}"


def _example(space: Workspace, name: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = ROOT / "examples" / "adopting" / name
    command = [sys.executable, str(path)] if name.endswith(".py") else ["sh", str(path)]
    return subprocess.run(
        command,
        cwd=space.root,
        env=clean_env(PATH=f"{Path(RUNCE).parent}{os.pathsep}{os.environ['PATH']}", **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.mongo
def test_the_typescript_example_adopts_the_tools_records(
    mongo_space: tuple[Workspace, Any], tmp_path: Path
) -> None:
    space, raw = mongo_space
    space.store = "sqlite:///.runce/runce.db"  # the example's MONGODB_URL must win
    space.write_config()
    log = tmp_path / "ran.log"
    space.appending_task(TASK_ID, log)
    space.appending_task("2025-11-01T080000.new-work", log)
    raw["runce.applied"].insert_one(
        {
            "id": TASK_ID,
            "name": "Initialize message queues",
            "checksum": FOREIGN,
            "appliedAt": datetime(2025, 10, 1, 12, 0, 5),
            "durationMs": 812.0,
            "status": "success",
        }
    )
    url = f"{raw.client.address[0]}:{raw.client.address[1]}"
    result = _example(space, "from-typescript.sh", MONGODB_URL=f"mongodb://{url}/{raw.name}")
    assert result.returncode == 0, output_of(result)
    assert "checksum written by another tool" in result.stdout
    assert all_lines(log) == ["2025-11-01T080000.new-work"]
    doc = raw["runce.applied"].find_one({"id": TASK_ID})
    assert doc is not None
    assert doc["checksum"].startswith("sha256:")


def test_the_alembic_example_baselines_the_work_already_done(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    log = tmp_path / "ran.log"
    for task_id in ("2025-05-01.fill-names", "2025-06-30.split-addresses", "2025-07-01.new"):
        sqlite_workspace.appending_task(task_id, log)
    result = _example(sqlite_workspace, "from-alembic.sh")
    assert result.returncode == 0, output_of(result)
    assert all_lines(log) == ["2025-07-01.new"]


def test_the_done_table_example_baselines_what_the_table_lists(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    log = tmp_path / "ran.log"
    for task_id in ("2024-01-01.welcome-mail", "2024-02-01.reindex", "2025-01-01.new"):
        sqlite_workspace.appending_task(task_id, log)
    with sqlite3.connect(sqlite_workspace.root / "app.db") as db:
        db.execute("CREATE TABLE done_jobs (name TEXT PRIMARY KEY)")
        db.executemany(
            "INSERT INTO done_jobs VALUES (?)",
            [("2024-01-01.welcome-mail",), ("2024-02-01.reindex",)],
        )
    result = _example(sqlite_workspace, "from_done_table.py")
    assert result.returncode == 0, output_of(result)
    assert "baselined 2, ran 1" in result.stdout
    assert all_lines(log) == ["2025-01-01.new"]
