"""What no input may do to a queue, on every store with one: be stored when no store can
read it back, stop the other runs when a row is unreadable anyway, or be claimed out of the
order it was enqueued in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runce.runs.service import RunService
from runce.stores.queue import RunQueue
from tests.stores.conftest import BACKENDS, StoreMaker
from tests.stores.test_queue_contract import QUEUE_BACKENDS


@pytest.fixture(params=QUEUE_BACKENDS)
def qmaker(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[StoreMaker]:
    from runce.stores import memory

    made = BACKENDS[request.param](request, tmp_path)
    yield made
    made.close_all()
    memory.reset()


@pytest.fixture
def queue(qmaker: StoreMaker) -> RunQueue:
    runs: RunQueue = qmaker.open().runs  # type: ignore[attr-defined]
    return runs


def _claim_all(queue: RunQueue, batch: int) -> list[Any]:
    inputs = []
    while claimed := queue.claim("w", None, batch, 60):
        inputs += [run.input for run in claimed]
    return inputs


def test_the_runs_of_one_enqueue_many_are_claimed_in_the_order_given(queue: RunQueue) -> None:
    service = RunService(queue)
    for _ in range(3):  # three batches in one millisecond or a few: each after the last
        service.enqueue_many("order.check", [{"n": n} for n in range(300)])
    claimed = _claim_all(queue, 7)
    assert claimed == [{"n": n} for n in range(300)] * 3
