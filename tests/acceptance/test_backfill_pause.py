"""Pausing a running backfill from another process (T-12): it stops at the next batch
boundary within a second, `status` shows PAUSED with its progress, and after `resume` the
next run goes on from the checkpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.acceptance.conftest import Workspace, output_of, wait_for

pytestmark = pytest.mark.slow

TASK = "2025-07-01.slow-fill"
COUNT = 400


def _slow_backfill(workspace: Workspace, log: Path) -> None:
    """Ten items a batch, 50 ms each; every batch logs when it began and its items."""
    workspace.task(
        TASK,
        f"""
        import json, time

        def fetch(ctx, cursor, size):
            start = cursor or 0
            batch = list(range(start, min(start + size, {COUNT})))
            nxt = start + len(batch)
            return batch, (nxt if nxt < {COUNT} else None)

        def process(ctx, batch):
            with open({str(log)!r}, "a") as f:
                f.write(json.dumps([time.time(), batch]) + "\\n")
            time.sleep(0.05)

        task = runce.Backfill(
            title="slow fill", fetch=fetch, process=process, batch_size=10,
            total=lambda ctx: {COUNT},
        )
        """,
    )


def _batches(log: Path) -> list[tuple[float, list[int]]]:
    return [tuple(json.loads(line)) for line in log.read_text().splitlines()]  # type: ignore[misc]


def test_a_pause_from_another_process_stops_within_a_second_and_resume_goes_on(
    workspace: Workspace,
) -> None:
    log = workspace.root / "batches.log"
    _slow_backfill(workspace, log)
    runner = workspace.start("run")
    wait_for(log)
    while len(_batches(log)) < 3:
        assert runner.poll() is None, runner.communicate()
        time.sleep(0.02)

    paused = workspace.runce("pause", TASK)
    asked = time.time()
    assert paused.returncode == 0, output_of(paused)
    assert "will pause at its next batch boundary" in paused.stdout
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 0, out + err
    assert f"PAUSED   {TASK}" in out
    last_began = _batches(log)[-1][0]
    assert last_began - asked < 1.0, "no batch began more than a second after the pause"

    status = json.loads(workspace.runce("status", "--json").stdout)
    [task] = status["tasks"]
    assert task["state"] == "PAUSED"
    done = task["backfill"]["done"]
    assert 0 < done < COUNT
    assert task["backfill"]["total"] == COUNT
    assert task["requested"]["command"] == "pause"
    assert "PAUSED" in workspace.runce("status").stdout

    again = workspace.runce("run")  # still paused: it does not start
    assert again.returncode == 0, output_of(again)
    assert len(_batches(log)) * 10 == done

    resumed = workspace.runce("resume", TASK)
    assert "resumed" in resumed.stdout, output_of(resumed)
    finish = workspace.runce("run", timeout=120)
    assert finish.returncode == 0, output_of(finish)
    assert f"resuming from cursor {done}, {done} of {COUNT} done" in output_of(finish)
    items = [n for _, batch in _batches(log) for n in batch]
    assert items == list(range(COUNT)), "every item once, in order"
    final = json.loads(workspace.runce("status", "--json").stdout)
    assert final["tasks"][0]["state"] == "APPLIED"
