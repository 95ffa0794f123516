"""What a worker leaves for the garbage collector: nothing per run. Each run's objects
(its slot, its job context and the context's progress writer) go as soon as the run is
done, by reference counting; a cycle among them would leave them to the collector, whose
passes over every live object cost a worker of short jobs a share of its throughput."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runce.runs.events import EventBus
from runce.runs.jobs import Job, JobRegistry
from runce.runs.service import RunService
from runce.runs.worker import Worker, WorkerOptions
from runce.stores import memory

RUNS = 300


@pytest.fixture
def store() -> Iterator[memory.MemoryStore]:
    yield memory.MemoryStore(uuid.uuid4().hex)
    memory.reset()


def _work(store: memory.MemoryStore, runs: int) -> None:
    jobs = JobRegistry()

    def job(params: Any, ctx: Any) -> None:
        ctx.progress(50)

    jobs.register(Job("garbage.quick", job))
    RunService(store.runs, jobs=jobs, bus=EventBus()).enqueue_many("garbage.quick", [{}] * runs)
    options = WorkerOptions(concurrency=4, lease=5.0, poll=0.05, drain=True)
    Worker(store.runs, options, jobs=jobs, bus=EventBus()).run()


def test_a_worker_leaves_no_cycle_per_run(store: memory.MemoryStore) -> None:
    _work(store, 5)  # what is made once (threads, caches) made before counting
    gc.collect()
    gc.disable()
    try:
        _work(store, RUNS)
        found = gc.collect()
    finally:
        gc.enable()
    # A worker's own objects (threads, events, its queues) make some; runs make none.
    assert found < RUNS, found
