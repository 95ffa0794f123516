"""`runce worker` as a process of its own: what it does with the process it owns."""

from __future__ import annotations

import json
from pathlib import Path

from tests.acceptance.conftest import Workspace, output_of

JOBS = """
import gc
import json
import os

import runce


@runce.job("process.look")
def look(params, ctx):
    with open(os.environ["LOOKED"], "a") as out:
        out.write(json.dumps({"frozen": gc.get_freeze_count()}) + "\\n")
"""


def test_a_worker_sets_what_it_made_while_starting_aside_from_garbage_collection(
    tmp_path: Path,
) -> None:
    space = Workspace(tmp_path, "sqlite:///.runce/runce.db")
    space.settings += '[worker]\nhandlers = ["jobs"]\npoll = 0.2\n'
    space.write_config()
    (space.root / "jobs.py").write_text(JOBS)
    looked = tmp_path / "looked.jsonl"
    enqueued = space.runce("runs", "enqueue", "process.look", "--input", "{}")
    assert enqueued.returncode == 0, output_of(enqueued)
    worked = space.runce("worker", "--drain", LOOKED=str(looked), timeout=120)
    assert worked.returncode == 0, output_of(worked)
    [seen] = [json.loads(line) for line in looked.read_text().splitlines()]
    # The modules, the configuration and the jobs: thousands of objects, never collected.
    assert seen["frozen"] > 1000, seen
    assert " INFO runce.worker: run.succeeded id=" in worked.stderr
