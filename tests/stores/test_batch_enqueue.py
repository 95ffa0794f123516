"""Large enqueue batches on every store with runs (PostgreSQL sends a batch with no
idempotency key by COPY): what each answer says is what is stored, whatever the input
holds, and a batch the store refuses leaves nothing behind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from runce.domain.runs import RunFilter
from runce.errors import StoreError
from runce.runs.service import RunService
from runce.stores.queue import RunQueue
from tests.stores.conftest import BACKENDS, StoreMaker
from tests.stores.test_queue_contract import QUEUE_BACKENDS, new

# Text COPY escapes tabs, newlines and backslashes; JSON escapes the rest.
AWKWARD = [
    {"tab": "a\tb", "newline": "a\nb", "cr": "a\rb", "backslash": "a\\b", "quote": 'a"b'},
    {"copy end marker": "\\.", "null word": "\\N", "nested": [[{"x": [1, 2, {"y": None}]}]]},
    {"unicode": "żółw 🐢 \u2028", "big": 2**62, "float": 0.1, "empty": ""},
    "a plain string",
    None,
    [1, "two", 3.5, False],
]


@pytest.fixture(params=QUEUE_BACKENDS)
def queue(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[RunQueue]:
    from runce.stores import memory

    made: StoreMaker = BACKENDS[request.param](request, tmp_path)
    runs: RunQueue = made.open().runs  # type: ignore[attr-defined]
    yield runs
    made.close_all()
    memory.reset()


def _batch(count: int, **fields: Any) -> list[Any]:
    return [new("batch.kind", AWKWARD[i % len(AWKWARD)], **fields) for i in range(count)]


def test_a_large_batch_is_stored_as_answered(queue: RunQueue) -> None:
    batch = _batch(300, priority=3, correlation_id="c-1", project_id="shop")
    answers = queue.enqueue(batch)
    assert [a.run.id for a in answers] == [n.id for n in batch]
    assert all(a.created for a in answers)
    for answer, sent in zip(answers, batch, strict=True):
        stored = queue.get(sent.id)
        assert stored is not None
        assert stored.input == json.loads(sent.input_json)
        assert answer.run.input == stored.input
        assert (answer.run.state, stored.state) == ("queued", "queued")
        assert answer.run.created_at == stored.created_at
        assert answer.run.run_at == stored.run_at
        assert (stored.priority, stored.correlation_id, stored.project_id) == (3, "c-1", "shop")
        assert stored.attempt == 0


def test_a_large_batch_keeps_its_run_at_and_trace_context(queue: RunQueue) -> None:
    later = queue.now() + timedelta(hours=1)
    context = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    batch = [new("batch.kind", {"i": i}, run_at=later, trace_context=context) for i in range(60)]
    answers = queue.enqueue(batch)
    stored = queue.get(batch[-1].id)
    assert stored is not None
    assert stored.trace_context == context
    assert abs((stored.run_at - later).total_seconds()) < 0.001
    assert answers[-1].run.run_at == stored.run_at
    assert queue.claim("w1", None, limit=100, lease=30) == []  # not due yet


def test_a_large_batch_keeps_each_runs_concurrency_key(queue: RunQueue) -> None:
    batch = [new("batch.kind", {"i": i}, concurrency_key=f"key{i % 3}") for i in range(60)]
    queue.enqueue(batch)
    flow_of = queue.flow_of  # type: ignore[attr-defined]
    assert [flow_of(sent.id).key for sent in batch] == [f"key{i % 3}" for i in range(60)]


def test_a_large_batch_the_store_refuses_leaves_nothing(queue: RunQueue) -> None:
    if "Postgres" not in type(queue).__name__:
        pytest.skip("JSONB alone refuses the escape \\u0000 (see stores/postgres/queue.py)")
    refused = new("batch.kind", {"nul": "a\u0000b"})
    with pytest.raises(StoreError):
        queue.enqueue([*_batch(120), refused, *_batch(10)])
    assert queue.page(RunFilter(kind="batch.kind"), None, 10) == []


def test_a_large_batch_with_keys_answers_the_runs_that_hold_them(queue: RunQueue) -> None:
    [first] = queue.enqueue([new("batch.kind", {"k": 7}, idempotency_key="k-7")])
    batch = [*_batch(80), new("batch.kind", {"k": 8}, idempotency_key="k-7")]
    answers = queue.enqueue(batch)
    assert [a.created for a in answers] == [True] * 80 + [False]
    assert answers[-1].run.id == first.run.id
    assert answers[-1].run.input == {"k": 7}


def test_the_service_enqueues_a_large_batch_of_one_input(queue: RunQueue) -> None:
    runs = RunService(queue).enqueue_many("batch.kind", [{"t": 0.0}] * 1000)
    assert len({run.id for run in runs}) == 1000
    assert runs[0].input == {"t": 0.0}
    assert runs[0].input is not runs[1].input  # each run its own value
    stored = queue.get(runs[-1].id)
    assert stored is not None
    assert stored.input == {"t": 0.0}
