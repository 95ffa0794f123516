"""The range-claim part of the store contract: several processes share the key ranges of a
parallel backfill (docs/backfills.md#ranges-on-several-hosts).

Two claimers never hold one range; an expired claim is taken over; a finished range is never
claimed again; a range's checkpoint moves only under the claim it carries (fencing), inside a
transaction too. The memory and file stores keep no claims: ``runce backfill join`` refuses
them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from runce.domain.tasks import Checkpoint, RangeClaim
from runce.errors import ClaimLost, LockLost
from runce.stores.base import RangeClaims, Store
from runce.stores.liveness import current_owner
from runce.timeutil import utcnow
from tests.stores.conftest import StoreMaker

ATTEMPT = "a" * 32
LONG = 60.0  # a claim that does not expire during a test
SHORT = 0.4  # one that does, soon
PATIENCE = 30.0  # how long a busy machine may take to see a short claim expire


def _ranges(store: Store, task_id: str, parts: int) -> None:
    for part in range(parts):
        checkpoint = Checkpoint(
            task_id=task_id,
            part=part,
            parts=parts,
            cursor={"at": part * 100},
            done=0,
            batches=0,
            attempt_id=ATTEMPT,
            updated_at=utcnow(),
        )
        store.tracker.save_checkpoint(checkpoint, None)


def _claims(store: Store) -> RangeClaims:
    tracker = store.tracker
    if not isinstance(tracker, RangeClaims):
        pytest.skip("this store keeps no range claims; `runce backfill join` refuses it")
    return tracker


def _advance(claim: RangeClaim, cursor: object, done: int, finished: bool = False) -> Checkpoint:
    return replace(
        claim.checkpoint,
        cursor=cursor,
        done=done,
        batches=claim.checkpoint.batches + 1,
        finished=finished,
        updated_at=utcnow(),
    )


def _claim_after_expiry(claims: RangeClaims, task_id: str, owner: str) -> RangeClaim:
    deadline = time.monotonic() + SHORT + PATIENCE
    while time.monotonic() < deadline:
        claim = claims.claim_range(task_id, ATTEMPT, owner, LONG)
        if claim is not None:
            return claim
        time.sleep(SHORT / 4)
    raise AssertionError("an expired claim was never taken over")


def test_memory_and_file_stores_keep_no_claims(maker: StoreMaker) -> None:
    store = maker.open()
    expected = store.description.split(":")[0] not in ("memory", "file")
    assert isinstance(store.tracker, RangeClaims) is expected


def test_two_claimers_never_hold_one_range(maker: StoreMaker) -> None:
    first, second = maker.open(), maker.open()
    _ranges(first, "t.two", 2)
    a = _claims(first).claim_range("t.two", ATTEMPT, "host-a", LONG)
    b = _claims(second).claim_range("t.two", ATTEMPT, "host-b", LONG)
    assert a is not None
    assert b is not None
    assert {a.part, b.part} == {0, 1}
    assert a.checkpoint.cursor == {"at": a.part * 100}
    assert _claims(second).claim_range("t.two", ATTEMPT, "host-c", LONG) is None
    held = {c.part: c.claim_owner for c in second.tracker.checkpoints("t.two")}
    assert held == {a.part: "host-a", b.part: "host-b"}
    assert all(c.claim_until is not None for c in second.tracker.checkpoints("t.two"))


def test_claimers_racing_get_distinct_ranges(maker: StoreMaker) -> None:
    stores = [maker.open() for _ in range(6)]
    _claims(stores[0])
    _ranges(stores[0], "t.race", 4)
    got: list[RangeClaim | None] = []
    start = threading.Barrier(len(stores))

    def claim(store: Store, name: str) -> None:
        start.wait()
        got.append(_claims(store).claim_range("t.race", ATTEMPT, name, LONG))

    threads = [
        threading.Thread(target=claim, args=(store, f"p{i}")) for i, store in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    parts = sorted(c.part for c in got if c is not None)
    assert parts == [0, 1, 2, 3], "each range once, and two claimers got nothing"


def test_an_expired_claim_is_taken_over_and_fences_its_old_holder(maker: StoreMaker) -> None:
    slow, other = maker.open(), maker.open()
    _ranges(slow, "t.exp", 1)
    lost = _claims(slow).claim_range("t.exp", ATTEMPT, "slow", SHORT)
    assert lost is not None
    _claims(slow).save_claimed_checkpoint(_advance(lost, {"at": 10}, 10), lost, None)

    taken = _claim_after_expiry(_claims(other), "t.exp", "other")
    assert taken.part == 0
    assert taken.token != lost.token
    assert taken.checkpoint.cursor == {"at": 10}, "it goes on from the last checkpoint"

    assert _claims(slow).renew_claim(lost) is False
    with pytest.raises(ClaimLost):
        _claims(slow).save_claimed_checkpoint(_advance(lost, {"at": 20}, 20), lost, None)
    _claims(slow).release_claim(lost)  # a stale release does nothing
    [now] = other.tracker.checkpoints("t.exp")
    assert (now.cursor, now.done, now.claim_owner) == ({"at": 10}, 10, "other")

    _claims(other).save_claimed_checkpoint(_advance(taken, {"at": 30}, 30), taken, None)
    assert _claims(other).renew_claim(taken) is True
    assert other.tracker.checkpoints("t.exp")[0].cursor == {"at": 30}


def test_a_renewed_claim_is_not_taken(maker: StoreMaker) -> None:
    holder, other = maker.open(), maker.open()
    _ranges(holder, "t.renew", 1)
    claim = _claims(holder).claim_range("t.renew", ATTEMPT, "holder", SHORT * 2)
    assert claim is not None
    deadline = time.monotonic() + SHORT * 5
    while time.monotonic() < deadline:
        assert _claims(holder).renew_claim(claim)
        assert _claims(other).claim_range("t.renew", ATTEMPT, "other", LONG) is None
        time.sleep(SHORT / 8)


def test_a_released_range_is_claimed_at_once(maker: StoreMaker) -> None:
    first, second = maker.open(), maker.open()
    _ranges(first, "t.rel", 1)
    claim = _claims(first).claim_range("t.rel", ATTEMPT, "first", LONG)
    assert claim is not None
    _claims(first).release_claim(claim)
    assert first.tracker.checkpoints("t.rel")[0].claim_owner is None
    again = _claims(second).claim_range("t.rel", ATTEMPT, "second", LONG)
    assert again is not None
    assert again.part == 0


def test_a_finished_range_is_never_claimed_again(maker: StoreMaker) -> None:
    store, other = maker.open(), maker.open()
    _ranges(store, "t.fin", 2)
    claim = _claims(store).claim_range("t.fin", ATTEMPT, "holder", SHORT)
    assert claim is not None
    assert claim.part == 0
    _claims(store).save_claimed_checkpoint(_advance(claim, None, 100, True), claim, None)
    time.sleep(SHORT * 1.5)  # its claim has run out: still never claimable
    following = _claims(other).claim_range("t.fin", ATTEMPT, "other", LONG)
    assert following is not None
    assert following.part == 1
    _claims(other).release_claim(following)
    again = _claims(other).claim_range("t.fin", ATTEMPT, "other", LONG)
    assert again is not None
    assert again.part == 1
    assert _claims(other).claim_range("t.fin", ATTEMPT, "third", LONG) is None


def test_the_lock_holder_takes_claims_of_another_attempt_and_helpers_do_not(
    maker: StoreMaker,
) -> None:
    old, coordinator = maker.open(), maker.open()
    _ranges(old, "t.att", 1)
    stale = _claims(old).claim_range("t.att", "old-attempt", "old helper", LONG)
    assert stale is not None
    assert _claims(coordinator).claim_range("t.att", ATTEMPT, "helper", LONG) is None
    lease = coordinator.lock.try_acquire(current_owner(), ttl=30)
    assert lease is not None
    taken = _claims(coordinator).claim_range("t.att", ATTEMPT, "coordinator", LONG, lease)
    assert taken is not None
    assert taken.attempt_id == ATTEMPT
    with pytest.raises(ClaimLost):
        _claims(old).save_claimed_checkpoint(_advance(stale, 5, 5), stale, None)
    # ... and a helper of the old attempt cannot take it back
    assert _claims(old).claim_range("t.att", "old-attempt", "old helper", LONG) is None
    coordinator.lock.release(lease)


def test_a_claimed_save_under_a_lost_lease_is_refused(maker: StoreMaker) -> None:
    store = maker.open()
    _ranges(store, "t.lease", 1)
    lease = store.lock.try_acquire(current_owner(), ttl=30)
    assert lease is not None
    claim = _claims(store).claim_range("t.lease", ATTEMPT, "coordinator", LONG, lease)
    assert claim is not None
    store.lock.release(lease)
    with pytest.raises(LockLost):
        _claims(store).save_claimed_checkpoint(_advance(claim, 7, 7), claim, lease)
    assert store.tracker.checkpoints("t.lease")[0].done == 0


def test_a_transaction_saves_a_claimed_checkpoint_only_while_claimed(maker: StoreMaker) -> None:
    slow, other = maker.open(), maker.open()
    if not slow.supports_transactions:
        pytest.skip("this store has no transactions; the runner refuses transactional backfills")
    _ranges(slow, "t.txc", 1)
    claim = _claims(slow).claim_range("t.txc", ATTEMPT, "slow", SHORT)
    assert claim is not None
    with slow.tracker.transaction(None) as tx:
        tx.checkpoint(_advance(claim, 1, 1), claim)
    assert slow.tracker.checkpoints("t.txc")[0].cursor == 1

    taken = _claim_after_expiry(_claims(other), "t.txc", "other")
    with pytest.raises(ClaimLost), slow.tracker.transaction(None) as tx:
        tx.checkpoint(_advance(claim, 2, 2), claim)
    [now] = other.tracker.checkpoints("t.txc")
    assert (now.cursor, now.claim_owner) == (1, "other")
    with other.tracker.transaction(None) as tx:
        tx.checkpoint(_advance(taken, 3, 3), taken)
    assert other.tracker.checkpoints("t.txc")[0].cursor == 3


def test_an_expired_claim_whose_holder_died_mid_transaction_is_taken_over(
    maker: StoreMaker,
) -> None:
    """On MongoDB a holder killed mid-batch leaves its transaction open on the range's
    checkpoint; the claimer that takes the expired range over ends it first, instead of
    meeting its writes (a WriteConflict that failed the whole backfill)."""
    dead, other = maker.open(), maker.open()
    if not dead.description.startswith("mongodb") or not dead.supports_transactions:
        pytest.skip("an open transaction here holds the claimer by a lock, not a conflict")
    _ranges(dead, "t.dead", 1)
    claim = _claims(dead).claim_range("t.dead", ATTEMPT, "dead", SHORT)
    assert claim is not None
    open_transaction = dead.tracker.transaction(None, claim)
    tx = open_transaction.__enter__()  # and never left: the holder was killed here
    tx.checkpoint(_advance(claim, {"at": 5}, 5), claim)

    taken = _claim_after_expiry(_claims(other), "t.dead", "other")
    assert taken.checkpoint.cursor == {"at": 0}, "the dead transaction's checkpoint never landed"
    _claims(other).save_claimed_checkpoint(_advance(taken, {"at": 7}, 7), taken, None)
    assert other.tracker.checkpoints("t.dead")[0].cursor == {"at": 7}
