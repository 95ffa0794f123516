"""Debounce with a real worker and real enqueuing processes: two processes enqueue bursts
of runs for three customers of a job debounced by customer while a worker runs; each key
gets one run, which starts once, with the last input; a later burst gets one more."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import (
    PYTHON,
    Workspace,
    clean_env,
    output_of,
    run_stores,
    worker_workspace,
)

pytestmark = pytest.mark.slow

DEBOUNCE = 2.0  # far above the gap between two enqueues of one process, even on a busy box
JOBS = f"""
import os, time
import runce

LOG = os.environ.get("RUNCE_TEST_LOG", os.devnull)


@runce.job("sync.customer", concurrency_key="customer", debounce={DEBOUNCE})
def sync_customer(params, ctx):
    with open(LOG, "a") as handle:  # one short O_APPEND write: lines never interleave
        handle.write(f"{{params['customer']}} {{params['i']}} {{ctx.run.id}}\\n")
"""

BURST = """
import sys
import runce
for i in range(30):
    for customer in sys.argv[1:]:
        runce.enqueue("sync.customer", {"customer": customer, "i": i})
"""


@pytest.fixture(params=run_stores())
def dspace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    settings = '[worker]\nhandlers = ["jobs"]\nlease = 6\npoll = 0.2\nshutdown_timeout = 1\n'
    yield from worker_workspace(request, tmp_path, JOBS, settings)


def _bursts(space: Workspace, *customers: str) -> None:
    """Two processes at once, each enqueueing 30 runs per customer."""
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", BURST, *customers],
            cwd=space.root,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out + err


def _lines(log: Path, count: int, timeout: float = 60) -> list[list[str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= count:
            return [line.split() for line in lines]
        time.sleep(0.1)
    raise AssertionError(f"{count} runs did not start in {timeout} s: {log.read_text()!r}")


def _runs(space: Workspace) -> list[dict[str, object]]:
    listed = space.runce("runs", "list", "--kind", "sync.customer", "--limit", "100", "--json")
    assert listed.returncode == 0, output_of(listed)
    runs: list[dict[str, object]] = json.loads(listed.stdout)["runs"]
    return runs


@pytest.mark.timeout(300)
def test_one_run_per_key_per_window(dspace: Workspace, tmp_path: Path) -> None:
    log = tmp_path / "starts.log"
    worker = dspace.start("worker", "--log-level", "warning", RUNCE_TEST_LOG=str(log))
    _bursts(dspace, "acme", "globex", "initech")
    started = _lines(log, 3)
    assert sorted(name for name, _i, _id in started) == ["acme", "globex", "initech"]
    assert {i for _name, i, _id in started} == {"29"}  # the last input of every key
    # The window has passed for every key: a second burst for one key makes one more run.
    _bursts(dspace, "acme")
    again = _lines(log, 4)
    assert again[3][:2] == ["acme", "29"]
    time.sleep(DEBOUNCE + 1)  # nothing else was waiting to start
    assert len(log.read_text().splitlines()) == 4
    runs = _runs(dspace)
    assert len(runs) == 4, runs
    assert sorted(str(run["state"]) for run in runs) == ["succeeded"] * 4
    worker.terminate()
    worker.communicate(timeout=30)
