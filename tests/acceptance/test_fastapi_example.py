"""examples/fastapi: three uvicorn replicas booted at once on one PostgreSQL database apply
the once task once, and the runs enqueued through their endpoints are processed once each
by their embedded workers; a replica whose once task fails does not start."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import runce
from runce.tasks import library as tasks_library
from tests import services
from tests.acceptance.conftest import clean_env
from tests.client.conftest import free_port

EXAMPLE = Path(__file__).parents[2] / "examples" / "fastapi"
TASK_ID = "2025-06-01T090000.open-the-shop"

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def shop(tmp_path: Path, postgres_server: str) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "shop"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".runce"))
    database = services.create_database(postgres_server)
    yield root, database
    services.drop_database(postgres_server, database)


def _start(root: Path, store: str, port: int) -> subprocess.Popen[str]:
    env = clean_env(RUNCE_STORE_URL=store, SHOP_LEDGER=str(root / "ledger.txt"))
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "shop_app:app", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _ledger(root: Path) -> list[str]:
    path = root / "ledger.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_three_replicas_apply_the_task_once_and_process_each_run_once(
    shop: tuple[Path, str],
) -> None:
    root, store = shop
    ports = [free_port() for _ in range(3)]
    replicas = [_start(root, store, port) for port in ports]
    try:
        for port, replica in zip(ports, replicas, strict=True):
            _until(lambda p=port, r=replica: _up(p) or r.poll() is not None, 90, "start-up")
            assert replica.poll() is None, replica.stdout.read() if replica.stdout else ""
        opened = [line for line in _ledger(root) if line.startswith("opened")]
        assert len(opened) == 1, opened
        config = {"store": store}
        history = tasks_library.task_history(config, TASK_ID)
        assert [(a.status, a.applied_by) for a in history] == [("succeeded", "boot")]

        runs = []
        for order in range(30):
            port = ports[order % 3]
            response = httpx.post(f"http://127.0.0.1:{port}/orders/{order}/ship", timeout=30)
            assert response.status_code == 202, response.text
            runs.append(response.json()["run"])
        again = httpx.post(f"http://127.0.0.1:{ports[1]}/orders/0/ship", timeout=30)
        assert again.json()["run"] == runs[0], "the order's key gives the same run"

        def all_shipped() -> bool:
            return sum(line.startswith("shipped") for line in _ledger(root)) >= 30

        _until(all_shipped, 90, "the embedded workers to ship 30 orders")
        states = {runce.get_run(run_id, config=config).state for run_id in runs}
        assert states == {"succeeded"}
        workers = {runce.get_run(run_id, config=config).claimed_by for run_id in runs}
        assert len(workers) >= 1
    finally:
        for replica in replicas:
            replica.send_signal(signal.SIGTERM)
        codes = [replica.wait(timeout=60) for replica in replicas]
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert set(codes) <= {0, -signal.SIGTERM}
    outputs = [replica.stdout.read() if replica.stdout else "" for replica in replicas]
    assert all("Application shutdown complete." in output for output in outputs), outputs
    shipped = Counter(line for line in _ledger(root) if line.startswith("shipped"))
    assert sorted(shipped) == sorted(f"shipped {order}" for order in range(30))
    assert set(shipped.values()) == {1}, "each run was processed exactly once"


def test_a_replica_whose_once_task_fails_does_not_start(shop: tuple[Path, str]) -> None:
    root, store = shop
    (root / "tasks" / "2025-06-02T090000.break.py").write_text(
        "import runce\n\n@runce.task(title='Break')\ndef run(ctx):\n    raise RuntimeError('no')\n"
    )
    port = free_port()
    replica = _start(root, store, port)
    try:
        code = replica.wait(timeout=90)
    finally:
        if replica.poll() is None:
            replica.kill()
    output = replica.stdout.read() if replica.stdout else ""
    assert code != 0
    assert "once tasks did not complete on boot: 2025-06-02T090000.break" in output
    assert not _up(port)
    assert [a.status for a in tasks_library.task_history({"store": store})] == [
        "succeeded",
        "failed",
    ]
