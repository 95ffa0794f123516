"""The backfill part of the store contract: checkpoints and pause/cancel requests (T-12)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runce.domain.tasks import Checkpoint
from runce.errors import LockLost
from runce.stores.base import Store
from runce.stores.liveness import current_owner
from runce.timeutil import utcnow
from tests.stores.conftest import StoreMaker

CURSORS = [None, 0, 41, "k-9", [3, "x"], {"id": 12, "shard": "a.b", "$odd": [None, 1.5]}]


def _checkpoint(task_id: str, part: int = 0, parts: int = 1, **changes: object) -> Checkpoint:
    made = Checkpoint(
        task_id=task_id,
        part=part,
        parts=parts,
        cursor=None,
        done=0,
        batches=0,
        attempt_id="a" * 32,
        updated_at=utcnow(),
    )
    return replace(made, **changes)  # type: ignore[arg-type]


def test_a_new_store_has_no_checkpoints_or_requests(store: Store) -> None:
    assert store.tracker.checkpoints("t.any") == []
    assert store.tracker.all_checkpoints() == []
    assert store.tracker.controls() == {}


@pytest.mark.parametrize("cursor", CURSORS)
def test_a_checkpoint_keeps_any_json_cursor(store: Store, cursor: object) -> None:
    store.tracker.save_checkpoint(_checkpoint("t.json", cursor=cursor, done=5), None)
    [saved] = store.tracker.checkpoints("t.json")
    assert saved.cursor == cursor
    assert saved.done == 5


def test_a_checkpoint_replaces_the_last_of_its_range(maker: StoreMaker) -> None:
    store = maker.open()
    first = _checkpoint("t.bf", 0, 2, cursor=10, done=10, batches=1, total=100, rate=12.5)
    store.tracker.save_checkpoint(first, None)
    store.tracker.save_checkpoint(_checkpoint("t.bf", 1, 2, cursor=60, done=10, batches=1), None)
    store.tracker.save_checkpoint(replace(first, cursor=20, done=20, batches=2), None)
    store.tracker.save_checkpoint(_checkpoint("t.other", cursor="z", finished=True), None)

    other_process = maker.open()
    parts = other_process.tracker.checkpoints("t.bf")
    assert [(c.part, c.parts, c.cursor, c.done, c.batches) for c in parts] == [
        (0, 2, 20, 20, 2),
        (1, 2, 60, 10, 1),
    ]
    assert parts[0].total == 100
    assert parts[0].rate == pytest.approx(12.5)
    assert parts[1].total is None
    assert parts[1].rate is None
    assert not parts[0].finished
    assert parts[0].updated_at.utcoffset() is not None
    assert [(c.task_id, c.part) for c in other_process.tracker.all_checkpoints()] == [
        ("t.bf", 0),
        ("t.bf", 1),
        ("t.other", 0),
    ]
    assert other_process.tracker.checkpoints("t.other")[0].finished


def test_a_checkpoint_under_a_lost_lease_is_refused(maker: StoreMaker) -> None:
    store = maker.open()
    lease = store.lock.try_acquire(current_owner(), ttl=30)
    assert lease is not None
    store.tracker.save_checkpoint(_checkpoint("t.fenced", cursor=1), lease)
    store.lock.release(lease)
    with pytest.raises(LockLost):
        store.tracker.save_checkpoint(_checkpoint("t.fenced", cursor=2), lease)
    assert [c.cursor for c in store.tracker.checkpoints("t.fenced")] == [1]


def test_pause_and_cancel_requests_are_seen_by_another_process(maker: StoreMaker) -> None:
    asking, running = maker.open(), maker.open()
    asking.tracker.set_control("t.a", "pause", "ops@laptop")
    asking.tracker.set_control("t.b", "cancel", "ops@laptop")
    controls = running.tracker.controls()
    assert {k: v.command for k, v in controls.items()} == {"t.a": "pause", "t.b": "cancel"}
    assert controls["t.a"].requested_by == "ops@laptop"
    assert controls["t.a"].requested_at.utcoffset() is not None

    asking.tracker.set_control("t.a", "cancel", "ops@laptop")
    asking.tracker.set_control("t.b", None, "ops@laptop")
    asking.tracker.set_control("t.never", None, "ops@laptop")  # withdrawing nothing is fine
    assert {k: v.command for k, v in running.tracker.controls().items()} == {"t.a": "cancel"}


def test_a_checkpoint_commits_with_its_transaction_or_not_at_all(store: Store) -> None:
    if not store.supports_transactions:
        pytest.skip("this store has no transactions; the runner refuses transactional backfills")
    lease = store.lock.try_acquire(current_owner(), ttl=30)
    assert lease is not None
    with store.tracker.transaction(lease) as tx:
        tx.checkpoint(_checkpoint("t.tx", cursor=1, done=1))

    def fail_inside() -> None:
        with store.tracker.transaction(lease) as tx:
            tx.checkpoint(_checkpoint("t.tx", cursor=2, done=2))
            raise RuntimeError("the batch failed after its checkpoint")

    with pytest.raises(RuntimeError):
        fail_inside()
    assert [c.cursor for c in store.tracker.checkpoints("t.tx")] == [1]
