"""Workers on every store with runs: a listing holds the workers not stopped and the last
stopped ones only, and a prune deletes the workers not heard from for a day, so neither
grows with every worker that ever ran (each `runce worker --drain` is one more)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, Literal

import pytest

from runce.domain.runs import STOPPED_SHOWN, WorkerInfo
from runce.runs.service import RunService
from runce.stores.queue import RunQueue
from tests.stores.conftest import BACKENDS
from tests.stores.test_queue_contract import QUEUE_BACKENDS, new

State = Literal["running", "stopping", "stopped"]


@pytest.fixture(params=QUEUE_BACKENDS)
def queue(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[RunQueue]:
    from runce.stores import memory

    made = BACKENDS[request.param](request, tmp_path)
    runs: RunQueue = made.open().runs  # type: ignore[assignment]
    yield runs
    made.close_all()
    memory.reset()


def _seen(queue: RunQueue, worker_id: str, state: State, last_seen: datetime) -> None:
    started = last_seen - timedelta(minutes=1)
    queue.worker_seen(WorkerInfo(worker_id, "h", 1, started, last_seen, 2, ("k",), state))


def test_workers_are_those_not_stopped_and_the_last_stopped_ones(queue: RunQueue) -> None:
    now = queue.now()
    for n in range(STOPPED_SHOWN + 10):  # stopped-00 stopped first, stopped-29 last
        _seen(queue, f"stopped-{n:02}", "stopped", now - timedelta(hours=3, minutes=-n))
    _seen(queue, "live", "running", now)
    _seen(queue, "killed", "running", now - timedelta(days=3))  # stale, never said so
    _seen(queue, "leaving", "stopping", now - timedelta(seconds=5))

    listed = queue.workers()

    stopped = sorted(w.id for w in listed if w.state == "stopped")
    assert stopped == [f"stopped-{n:02}" for n in range(10, STOPPED_SHOWN + 10)]
    assert {w.id for w in listed if w.state != "stopped"} == {"live", "killed", "leaving"}
    assert [w.id for w in listed] == [
        w.id for w in sorted(listed, key=lambda w: (w.started_at, w.id))
    ]
    three = queue.workers(stopped=3)
    assert sorted(w.id for w in three if w.state == "stopped") == [
        "stopped-27",
        "stopped-28",
        "stopped-29",
    ]
    assert len(three) == 6
    assert len(queue.workers(stopped=0)) == 3


def test_a_prune_deletes_the_workers_not_heard_from_for_a_day(queue: RunQueue) -> None:
    queue.enqueue([new()])  # on MongoDB the wake signal shares the workers' collection
    now = queue.now()
    _seen(queue, "old-stopped", "stopped", now - timedelta(days=2))
    _seen(queue, "old-killed", "running", now - timedelta(hours=25))
    _seen(queue, "recent-stopped", "stopped", now - timedelta(hours=2))
    _seen(queue, "live", "running", now)

    assert RunService(queue).prune(30 * 86400.0, 90 * 86400.0) == 0  # no run is old enough

    assert sorted(w.id for w in queue.workers()) == ["live", "recent-stopped"]
    assert queue.prune_workers(now - timedelta(hours=1)) == 1
    assert [w.id for w in queue.workers()] == ["live"]
    _seen(queue, "recent-stopped", "stopped", queue.now())  # heard from again: back
    assert sorted(w.id for w in queue.workers()) == ["live", "recent-stopped"]
    [claimed] = queue.claim("w", None, limit=1, lease=30)  # the queue still works
    assert claimed.state == "running"
