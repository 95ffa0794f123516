"""``runce runs status`` of a run held back by a rate, with a real worker: it says which
rate holds it back and when its next start is due."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

from tests.acceptance.conftest import Workspace, output_of, stores_for

JOBS = """
import os
import runce


@runce.job("paced", concurrency_key="customer", rate="1/h")
def paced(params, ctx):
    with open(os.environ["RUNCE_TEST_LOG"], "a") as handle:
        handle.write(ctx.run.id + "\\n")
"""


def test_status_says_when_a_rate_lets_a_run_start(tmp_path: Path) -> None:
    space = Workspace(tmp_path, stores_for(tmp_path)["sqlite"])
    space.settings = '[worker]\nhandlers = ["jobs"]\nlease = 6\npoll = 0.2\n'
    space.write_config()
    (space.root / "jobs.py").write_text(JOBS)
    ids = []
    for n in (1, 2):
        made = space.runce(
            "runs", "enqueue", "paced", "--input", json.dumps({"customer": "acme", "n": n})
        )
        assert made.returncode == 0, output_of(made)
        ids.append(made.stdout.strip())
    log = tmp_path / "started.log"
    worker = space.start("worker", RUNCE_TEST_LOG=str(log))
    try:
        deadline = time.monotonic() + 60
        while not log.exists() or not log.read_text():
            assert time.monotonic() < deadline, "the first run never started"
            time.sleep(0.05)
        started = log.read_text().split()
        assert len(started) == 1
        held = ids[1] if started[0] == ids[0] else ids[0]
        shown = space.runce("runs", "status", held)
        assert shown.returncode == 0, output_of(shown)
        assert "limit:            rate 1 per 3600 s (burst 1) per customer" in shown.stdout
        found = re.search(
            r"waiting: rate of customer=acme, 1 per hour, next start in (\d+\.\d) s", shown.stdout
        )
        assert found, shown.stdout
        assert 3000 < float(found.group(1)) <= 3600
        as_json = json.loads(space.runce("runs", "status", held, "--json").stdout)
        assert as_json["waiting"].startswith("waiting: rate of customer=acme, 1 per hour, ")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.communicate(timeout=30)
