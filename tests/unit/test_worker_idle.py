"""An idle worker's looks for due runs, on the memory store (whose wait for news returns early
only when something changed): one look per poll at most, and new work still wakes it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runce.runs.events import EventBus
from runce.runs.jobs import Job, JobRegistry
from runce.runs.service import RunService
from runce.runs.worker import Worker, WorkerOptions
from runce.stores import memory

POLL = 0.1


@pytest.fixture
def store() -> Iterator[memory.MemoryStore]:
    yield memory.MemoryStore(uuid.uuid4().hex)
    memory.reset()


def _counting_looks(store: memory.MemoryStore) -> list[float]:
    """The store's own exchange, with the time of each call noted (a spy, not a stand-in)."""
    looks: list[float] = []
    exchange = store.runs.exchange

    def spied(*args: Any, **kwargs: Any) -> Any:
        looks.append(time.monotonic())
        return exchange(*args, **kwargs)

    store.runs.exchange = spied  # type: ignore[method-assign]
    return looks


def test_an_idle_worker_looks_once_a_poll_and_new_work_wakes_it(
    store: memory.MemoryStore,
) -> None:
    started: list[float] = []
    jobs = JobRegistry()
    jobs.register(Job("idle.job", lambda params: started.append(time.monotonic())))
    looks = _counting_looks(store)
    options = WorkerOptions(concurrency=1, poll=POLL, lease=5.0)
    worker = Worker(store.runs, options, jobs=jobs, bus=EventBus())
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        time.sleep(0.3)  # past the start-up
        first, began = len(looks), time.monotonic()
        time.sleep(2.0)
        idle_looks, took = len(looks) - first, time.monotonic() - began
        # A wait for news that times out no longer wakes the loop that looks on its own
        # poll: about 20 looks in 2 s before, at most about 10 now (fewer when busy).
        assert idle_looks <= took / POLL + 2, f"{idle_looks} looks in {took:.2f} s"

        # New work is still picked up.
        sent = time.monotonic()
        RunService(store.runs, jobs=jobs, bus=EventBus()).enqueue("idle.job", {})
        deadline = sent + 30
        while not started and time.monotonic() < deadline:
            time.sleep(0.005)
        assert started, "the run never started"
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive()
