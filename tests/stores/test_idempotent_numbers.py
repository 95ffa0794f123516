"""An idempotent enqueue compares inputs as JSON values: a store that gives a number back in
another form (PostgreSQL's JSONB turns ``1e16`` into ``10000000000000000``) is no conflict."""

from __future__ import annotations

import pytest

from runce.errors import IdempotencyConflict
from runce.runs.events import EventBus
from runce.runs.jobs import JobRegistry
from runce.runs.service import RunService, same_json
from runce.stores.queue import RunQueue
from tests.stores.test_queue_contract import qmaker, queue  # noqa: F401 - fixtures


def test_numbers_in_another_form_are_the_same_input(queue: RunQueue) -> None:  # noqa: F811
    service = RunService(queue, jobs=JobRegistry(), bus=EventBus())
    payload = {"big": 1e16, "small": 0.5, "list": [1e20, 2]}
    first = service.enqueue("n.kind", payload, idempotency_key="k")
    again = service.enqueue("n.kind", payload, idempotency_key="k")
    assert again.id == first.id
    with pytest.raises(IdempotencyConflict, match="'k' was already used"):
        service.enqueue("n.kind", {**payload, "big": 1e15}, idempotency_key="k")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (1e16, 10**16, True),
        ({"a": [1, 2.0]}, {"a": [1.0, 2]}, True),
        (True, 1, False),
        (False, 0, False),
        ({"a": 1}, {"a": 1, "b": None}, False),
        ([1, 2], [2, 1], False),
        ("1", 1, False),
        (None, None, True),
    ],
)
def test_same_json(a: object, b: object, same: bool) -> None:
    assert same_json(a, b) is same
