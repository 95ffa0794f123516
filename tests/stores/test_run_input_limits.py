"""What no input may do to a queue, on every store with one: be stored when no store can
read it back, stop the other runs when a row is unreadable anyway, or be claimed out of the
order it was enqueued in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from runce.errors import InvalidInput, UsageError
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


def _nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


BAD_ENQUEUES: dict[str, dict[str, Any]] = {
    "input surrogate": {"input": {"a": "\ud800"}},
    "input nul": {"input": {"a": "\x00"}},
    "input 1000 deep": {"input": _nested(1000)},
    "input 2^63": {"input": {"n": 2**63}},
    "input -2^63-1": {"input": [-(2**63) - 1]},
    "kind surrogate": {"kind": "k\ud800"},
    "kind empty": {"kind": ""},
    "project surrogate": {"project_id": "p\udfff"},
    "project nul": {"project_id": "p\x00"},
    "correlation surrogate": {"correlation_id": "c\ud800"},
    "key surrogate": {"idempotency_key": "k\ud800"},
    "priority 2^63": {"priority": 2**63},
    "max_attempts 1e20": {"max_attempts": 10**20},
    "max_attempts 0": {"max_attempts": 0},
    "run_at year 1": {"run_at": datetime(1, 1, 1, tzinfo=UTC)},
    "run_at year 9999 east": {
        "run_at": datetime(9999, 12, 31, 23, tzinfo=timezone(-timedelta(hours=5)))
    },
}


@pytest.mark.parametrize("bad", sorted(BAD_ENQUEUES))
def test_an_enqueue_no_store_can_keep_is_refused_with_a_sentence_and_stores_nothing(
    queue: RunQueue, bad: str
) -> None:
    service = RunService(queue)
    call = {"kind": "limits.check", "input": None, **BAD_ENQUEUES[bad]}
    kind = call.pop("kind")
    with pytest.raises((InvalidInput, UsageError)) as caught:
        service.enqueue(kind, **call)
    message = str(caught.value)
    assert "\n" not in message
    message.encode()  # printable wherever it is shown: no lone surrogate in the sentence
    key = call.pop("idempotency_key", None)
    with pytest.raises((InvalidInput, UsageError)):  # a batch stores none of its runs
        service.enqueue_many(kind, [1, call.pop("input")], idempotency_keys=[None, key], **call)
    assert service.page().runs == []
    good = service.enqueue("limits.check", {"a": "\u00e9"})
    assert [run.id for run in queue.claim("w", None, 10, 60)] == [good.id]


def test_the_edges_of_every_limit_are_kept_on_every_store(queue: RunQueue) -> None:
    service = RunService(queue)
    edge = {"max": 2**63 - 1, "min": -(2**63), "deep": _nested(63)}
    run = service.enqueue(
        "k" * 200,
        edge,
        priority=1_000_000,
        max_attempts=1000,
        run_at=datetime(1970, 1, 1, tzinfo=UTC),
        project_id="p" * 200,
    )
    [claimed] = queue.claim("w", None, 10, 60)
    assert claimed.id == run.id
    assert claimed.input == edge
    assert (claimed.priority, claimed.max_attempts) == (1_000_000, 1000)
