"""One rule for idempotency keys, checked by the run service before a store is touched:
1 to 255 characters of text without control characters. Every key it accepts is kept and
found again by every store; every key it refuses is one sentence, and nothing is stored."""

from __future__ import annotations

import secrets

import pytest

from runce.errors import UsageError
from runce.runs.events import EventBus
from runce.runs.jobs import JobRegistry
from runce.runs.service import RunService
from runce.stores.queue import RunQueue
from tests.stores.test_queue_contract import qmaker, queue  # noqa: F401 - fixtures

ACCEPTED = [
    "order-4711",
    "welcome Zoë",
    " padded ",
    "ключ-🔑",
    "50%off",
    "k" * 255,
    "🔑" * 255,  # 1020 bytes of UTF-8
    secrets.token_urlsafe(192)[:255],  # random: PostgreSQL's index cannot compress it
]

REFUSED = [
    ("", "1 to 255 characters"),
    ("k" * 256, "1 to 255 characters (it has 256)"),
    ("a\x00b", "U+0000"),
    ("line\nbreak", "U+000A"),
    ("del\x7f", "U+007F"),
    ("next\u0085line", "U+0085"),
    ("half \ud800", "not valid Unicode"),
]


def _service(runs: RunQueue) -> RunService:
    return RunService(runs, jobs=JobRegistry(), bus=EventBus())


@pytest.mark.parametrize("key", ACCEPTED, ids=range(len(ACCEPTED)))
def test_every_key_the_rule_accepts_is_kept_and_found_again(
    queue: RunQueue,  # noqa: F811
    key: str,
) -> None:
    service = _service(queue)
    first = service.enqueue("k.kind", {"n": 1}, idempotency_key=key)
    again = service.enqueue("k.kind", {"n": 1}, idempotency_key=key)
    assert (again.id, again.idempotency_key) == (first.id, key)
    assert service.get(first.id).idempotency_key == key


@pytest.mark.parametrize(("key", "said"), REFUSED, ids=range(len(REFUSED)))
def test_a_key_outside_the_rule_is_refused_before_anything_is_stored(
    queue: RunQueue,  # noqa: F811
    key: str,
    said: str,
) -> None:
    service = _service(queue)
    with pytest.raises(UsageError, match="idempotency key") as refused:
        service.enqueue("k.kind", {"n": 1}, idempotency_key=key)
    assert said in str(refused.value)
    assert "\n" not in str(refused.value)
    with pytest.raises(UsageError, match="idempotency key"):
        service.enqueue_many("k.kind", [{"n": 1}, {"n": 2}], idempotency_keys=["fine", key])
    assert service.page().runs == []
