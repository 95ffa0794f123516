"""Secrets with real processes: the enqueuer has no secret, the stored input holds only the
reference, the worker resolves it from its own environment, and its logs and the stored
error mask it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.acceptance.conftest import Workspace, output_of, stores_for

pytestmark = pytest.mark.slow

JOBS = """
import runce
from pydantic import BaseModel


class Charge(BaseModel):
    amount: int
    api_key: runce.Secret


@runce.job("payments.charge", max_attempts=1)
def charge(params: Charge, ctx):
    key = params.api_key.get_secret_value()
    ctx.log.info("charging %s with api_key=%s (raw %s)", params.amount, key, key)
    if params.amount < 0:
        raise RuntimeError(f"the gateway refused key {key}")
    return {"key_length": len(key)}
"""
SECRET = "sk_live_0123456789"


@pytest.fixture
def space(tmp_path: Path) -> Workspace:
    made = Workspace(tmp_path, stores_for(tmp_path)["sqlite"], '[worker]\nhandlers = ["jobs"]\n')
    (made.root / "jobs.py").write_text(JOBS)
    return made


def _enqueue(space: Workspace, amount: int) -> str:
    body = json.dumps({"amount": amount, "api_key": {"$secret": "PAYMENTS_KEY"}})
    done = space.runce("runs", "enqueue", "payments.charge", "--input", body, "--json")
    assert done.returncode == 0, output_of(done)
    run_id: str = json.loads(done.stdout)["id"]
    return run_id


def test_the_worker_alone_sees_the_secret_and_masks_it(space: Workspace) -> None:
    plain = space.runce(
        "runs", "enqueue", "payments.charge", "--input", f'{{"amount": 1, "api_key": "{SECRET}"}}'
    )
    assert plain.returncode == 2
    assert "must be a secret reference" in plain.stderr

    good, bad = _enqueue(space, 5), _enqueue(space, -1)
    worker = space.runce("worker", "--drain", "--log-level", "info", PAYMENTS_KEY=SECRET)
    assert worker.returncode == 0, output_of(worker)
    assert SECRET not in worker.stdout + worker.stderr
    assert "api_key=*** (raw ***)" in worker.stderr

    done = json.loads(space.runce("runs", "status", good, "--json").stdout)
    assert (done["state"], done["result"]) == ("succeeded", {"key_length": len(SECRET)})
    assert done["input"]["api_key"] == {"$secret": "PAYMENTS_KEY"}
    failed = json.loads(space.runce("runs", "status", bad, "--json").stdout)
    assert failed["state"] == "failed"
    assert failed["error"] == "RuntimeError: the gateway refused key ***"
    assert SECRET.encode() not in (space.root / ".runce" / "runce.db").read_bytes()
