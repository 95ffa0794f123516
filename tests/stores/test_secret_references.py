"""Secret references (``{"$secret": "NAME"}``) are kept as they are by every run queue,
MongoDB included, where a field name starting with ``$`` needs care."""

from __future__ import annotations

from runce.stores.queue import RunQueue
from tests.stores.test_queue_contract import new, qmaker, queue  # noqa: F401 - fixtures


def test_a_secret_reference_in_the_input_round_trips(queue: RunQueue) -> None:  # noqa: F811
    payload = {"api_key": {"$secret": "PAYMENTS_KEY"}, "nested": [{"$secret": "B"}], "n": 1}
    [done] = queue.enqueue([new(payload=payload, idempotency_key="k")])
    assert done.run.input == payload
    assert queue.get(done.run.id).input == payload  # type: ignore[union-attr]
    [again] = queue.enqueue([new(payload=payload, idempotency_key="k")])
    assert (again.created, again.run.input) == (False, payload)
    [claimed] = queue.claim("w", None, 1, 30)
    assert claimed.input == payload
