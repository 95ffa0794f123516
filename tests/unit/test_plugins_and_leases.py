"""A third-party store through entry points, and what a runner does when its lease is lost."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import runce
from runce.errors import LockLost, UnknownStore
from runce.stores import memory
from runce.stores.base import StoreSpec
from runce.stores.liveness import current_owner
from runce.stores.registry import open_store
from runce.tasks.lease import LeaseKeeper
from tests.unit.conftest import Project


@pytest.fixture
def installed_plugin(tmp_path: Path) -> Iterator[str]:
    """A distribution on sys.path declaring a store in the runce.stores entry-point group."""
    name = f"plug{uuid.uuid4().hex[:8]}"
    site = tmp_path / "site"
    dist = site / f"{name}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[runce.stores]\n{name} = {name}_store:open_store\n")
    (site / f"{name}_store.py").write_text(
        "from runce.stores.memory import MemoryStore\n"
        "opened = []\n"
        "def open_store(spec):\n"
        "    opened.append(spec.url)\n"
        "    return MemoryStore('plugin-' + spec.url)\n"
    )
    sys.path.insert(0, str(site))
    try:
        yield name
    finally:
        sys.path.remove(str(site))
        memory.reset()


def test_a_store_from_another_distribution_plugs_in(installed_plugin: str, tmp_path: Path) -> None:
    project = Project(tmp_path / "project", f"{installed_plugin}://anything")
    project.simple("1.a")
    report = project.run()
    assert report.ok
    assert report.store == f"memory://plugin-{installed_plugin}://anything"
    assert sys.modules[f"{installed_plugin}_store"].opened


def test_an_unknown_store_names_the_known_ones() -> None:
    with pytest.raises(UnknownStore, match=r"no store is registered for 'nosuch'.*sqlite"):
        open_store(StoreSpec(type="nosuch"))


def test_a_runner_that_loses_its_lease_stops_and_records_nothing_more(tmp_path: Path) -> None:
    project = Project(tmp_path, f"memory://{uuid.uuid4().hex}")
    started, stolen = tmp_path / "started", tmp_path / "stolen"
    release = threading.Event()
    # The task outlasts the theft whenever it comes (a busy machine may delay the thief),
    # and then a lease, for the keeper's next renewal to find it.
    project.task(
        "1.slow",
        f"""
        import os, time
        @runce.task
        def run(ctx):
            open({str(started)!r}, "w").close()
            deadline = time.monotonic() + 30
            while not os.path.exists({str(stolen)!r}) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)
        """,
    )
    project.simple("2.never")
    config = project.config(lock={"ttl": 1})

    def steal() -> None:
        while not started.exists():
            time.sleep(0.01)
        store = open_store(config.store)
        store.lock.clear(force=True)
        assert store.lock.try_acquire(current_owner("thief"), ttl=30) is not None
        stolen.touch()
        release.set()

    thief = threading.Thread(target=steal)
    thief.start()
    report = runce.run_tasks(config)
    thief.join()

    assert release.is_set()
    assert not report.ok
    assert report.lock_lost
    assert report.result("1.slow").outcome == "failed"
    assert "lock lost" in (report.result("1.slow").error or "")
    assert report.result("2.never").outcome == "not-run"
    statuses = {s.id: s.state.value for s in runce.task_status(config).tasks}
    assert statuses == {"1.slow": "INTERRUPTED", "2.never": "PENDING"}
    memory.reset()


class _FlakyLock:
    """A lock whose renewals fail with an error, as when the database is unreachable."""

    def __init__(self) -> None:
        self.calls = 0

    def renew(self, lease: object) -> bool:
        self.calls += 1
        raise ConnectionError("database unreachable")


def test_renewals_failing_for_a_whole_lease_count_as_lost() -> None:
    lock = memory.MemoryStore("flaky").lock
    # Renewals every ttl/3: one failure alone must not lose it, unless the machine held the
    # keeper's thread back for two thirds of the ttl; 1.5 s leaves a busy machine room.
    ttl = 1.5
    lease = lock.try_acquire(current_owner(), ttl=ttl)
    assert lease is not None
    flaky = _FlakyLock()
    keeper = LeaseKeeper(flaky, lease).start()  # type: ignore[arg-type]
    deadline = time.monotonic() + 20 * ttl
    while not keeper.lost and time.monotonic() < deadline:
        time.sleep(0.02)
    keeper.stop()
    assert keeper.lost
    assert flaky.calls >= 2, "one failed renewal alone must not lose the lease"
    with pytest.raises(LockLost, match="could not renew"):
        keeper.check()
    memory.reset()
