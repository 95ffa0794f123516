"""Flow control in the run-queue contract: every store that runs jobs enforces concurrency
limits when runs are claimed, per kind and per concurrency key, across store objects (each
standing for another process), with expired leases freeing their slots."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from runce.domain.runs import ClaimRequest, FlowCount, KindLimit, Outcome, Run
from runce.errors import UsageError
from runce.stores.queue import RunQueue
from tests.stores.conftest import StoreMaker
from tests.stores.test_queue_contract import _runs, new, qmaker  # noqa: F401 - a fixture

LEASE = 30.0


@pytest.fixture
def stores(qmaker: StoreMaker) -> StoreMaker:  # noqa: F811
    return qmaker


@pytest.fixture
def q(stores: StoreMaker) -> RunQueue:
    return _runs(stores.open())


def claim(
    q: RunQueue, limits: tuple[KindLimit, ...], kinds: tuple[str, ...] = ("k",), n: int = 100
) -> list[Run]:
    return q.exchange([], ClaimRequest("w1", kinds, n, LEASE, limits))[1]


def test_a_kind_limit_caps_the_runs_running_across_claimers(stores: StoreMaker) -> None:
    first, second = _runs(stores.open()), _runs(stores.open())
    first.enqueue([new("k") for _ in range(10)])
    limit = (KindLimit("k", 3),)
    taken = claim(first, limit)
    assert len(taken) == 3
    assert claim(second, limit) == []  # another process sees the same three running
    [landed] = second.complete([Outcome(taken[0].fence, "succeeded")])
    assert landed is not None
    again = claim(second, limit)
    assert len(again) == 1
    assert claim(first, limit) == []


def test_a_limit_is_a_cap_not_a_serialisation(q: RunQueue) -> None:
    q.enqueue([new("k") for _ in range(10)])
    assert len(claim(q, (KindLimit("k", 7),), n=5)) == 5
    assert len(claim(q, (KindLimit("k", 7),), n=5)) == 2


def test_a_key_limit_counts_per_key_and_serves_keys_in_turn(q: RunQueue) -> None:
    # The busy key was enqueued first: a claim still takes one run of every key first.
    q.enqueue([new("k", {"key": "busy", "n": i}, concurrency_key="busy") for i in range(6)])
    q.enqueue([new("k", {"key": f"c{i}"}, concurrency_key=f"c{i}") for i in range(3)])
    limit = (KindLimit("k", 2),)
    first = claim(q, limit, n=4)
    assert Counter(_key(run) for run in first) == {"busy": 1, "c0": 1, "c1": 1, "c2": 1}
    rest = claim(q, limit)
    assert Counter(_key(run) for run in rest) == {"busy": 1}  # busy now at its 2
    assert claim(q, limit) == []


def _key(run: Run) -> str:
    key: str = run.input["key"]
    return key


def test_runs_without_a_key_share_the_kinds_count(q: RunQueue) -> None:
    q.enqueue([new("k", {"n": i}) for i in range(4)])
    q.enqueue([new("k", {"n": 9}, concurrency_key="solo")])
    taken = claim(q, (KindLimit("k", 1),))
    assert len(taken) == 2
    assert sorted(run.input["n"] for run in taken)[1] == 9


def test_unlimited_kinds_are_claimed_beside_limited_ones(q: RunQueue) -> None:
    q.enqueue([new("k") for _ in range(5)] + [new("free") for _ in range(5)])
    taken = claim(q, (KindLimit("k", 2),), kinds=("k", "free"))
    assert Counter(run.kind for run in taken) == {"k": 2, "free": 5}
    # Only the kinds asked for: a claim of "free" alone takes no "k".
    q.enqueue([new("k"), new("free")])
    assert [run.kind for run in claim(q, (), kinds=("free",))] == ["free"]


def test_a_claim_with_limits_names_its_kinds(q: RunQueue) -> None:
    with pytest.raises(UsageError, match="name its kinds"):
        q.exchange([], ClaimRequest("w1", None, 10, LEASE, (KindLimit("k", 1),)))


def test_an_expired_lease_frees_its_slot(q: RunQueue) -> None:
    q.enqueue([new("k") for _ in range(2)])
    lease = 1.0
    [held] = q.exchange([], ClaimRequest("dead", ("k",), 10, lease, (KindLimit("k", 1),)))[1]
    assert claim(q, (KindLimit("k", 1),)) == []
    assert held.lease_expires_at is not None
    while q.now() <= held.lease_expires_at:  # the store's clock, not an idle machine's
        time.sleep(0.05)
    [freed] = claim(q, (KindLimit("k", 1),))
    assert freed.id != held.id


def test_concurrent_claimers_never_exceed_the_limit(stores: StoreMaker) -> None:
    first = _runs(stores.open())
    first.enqueue([new("k", {"n": i}, concurrency_key=f"key{i % 3}") for i in range(60)])
    first.enqueue([new("k", {"n": 100 + i}) for i in range(20)])
    queues = [_runs(stores.open()) for _ in range(6)]
    taken: list[Run] = []
    mutex = threading.Lock()
    errors: list[BaseException] = []

    def work(q: RunQueue, name: str) -> None:
        try:
            for _ in range(8):
                got = q.exchange([], ClaimRequest(name, ("k",), 3, LEASE, (KindLimit("k", 4),)))
                with mutex:
                    taken.extend(got[1])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(q, f"w{i}")) for i, q in enumerate(queues)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    groups = Counter(
        "none" if run.input["n"] >= 100 else f"key{run.input['n'] % 3}" for run in taken
    )
    assert groups == {"key0": 4, "key1": 4, "key2": 4, "none": 4}
    assert len({run.id for run in taken}) == len(taken)


def test_claimers_acknowledging_and_claiming_at_once_never_exceed_a_kind_limit(
    stores: StoreMaker,
) -> None:
    # Eight claimers of 3 under a limit of 10, all at once, round after round, each
    # acknowledging the runs it claimed in the round before with its claim: far from the
    # limit a claim cannot reach it (a store may take a quicker way then), near it one can.
    # The runs a round claimed are all running when it ends: never more than the limit.
    first = _runs(stores.open())
    claimers, rounds, most = 8, 6, 10
    first.enqueue([new("k", {"n": i}) for i in range(claimers * 3 * rounds)])
    queues = [_runs(stores.open()) for _ in range(claimers)]
    start = threading.Barrier(claimers, timeout=60)
    claimed: list[list[Run]] = [[] for _ in range(claimers)]
    errors: list[BaseException] = []
    limit = (KindLimit("k", most),)

    def work(q: RunQueue, me: int) -> None:
        try:
            for _ in range(rounds):
                sent = [Outcome(run.fence, "succeeded") for run in claimed[me]]
                start.wait()
                landed, got = q.exchange(sent, ClaimRequest(f"w{me}", ("k",), 3, LEASE, limit))
                assert all(one is not None for one in landed)
                claimed[me] = got
                start.wait()
                per_round[me].append(len(got))
        except BaseException as exc:  # reported below
            errors.append(exc)
            start.abort()

    per_round: list[list[int]] = [[] for _ in range(claimers)]
    threads = [threading.Thread(target=work, args=(q, i)) for i, q in enumerate(queues)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    totals = [sum(counts) for counts in zip(*per_round, strict=True)]
    assert len(totals) == rounds
    assert all(total <= most for total in totals), totals
    assert totals[0] >= 3, totals  # nothing ran before: the first claim took its three


def test_flow_of_tells_a_runs_key_and_how_many_of_its_group_run(q: RunQueue) -> None:
    flow_of = q.flow_of  # type: ignore[attr-defined]
    held = [new("k", {"n": i}, concurrency_key="acme") for i in range(2)]
    plain = new("k", {"n": 9})
    q.enqueue([*held, plain])
    [taken] = claim(q, (KindLimit("k", 1),), n=1)
    waiting = next(run for run in held if run.id != taken.id)
    if taken.id == plain.id:
        assert flow_of(plain.id) == FlowCount(None, 1)
        assert flow_of(waiting.id) == FlowCount("acme", 0)
    else:
        assert flow_of(waiting.id) == FlowCount("acme", 1)
        assert flow_of(plain.id) == FlowCount(None, 0)
    assert flow_of("no-such-run") is None


# --- rate limits ----------------------------------------------------------------------------


def test_a_rate_allows_a_burst_then_holds_starts_back_across_claimers(
    stores: StoreMaker,
) -> None:
    first, second = _runs(stores.open()), _runs(stores.open())
    first.enqueue([new("k", {"n": i}) for i in range(10)])
    first.enqueue([new("k", {"n": 20 + i}, concurrency_key="solo") for i in range(5)])
    limit = (KindLimit("k", rate=3, per=3600),)
    taken = claim(first, limit)
    assert sorted(run.input["n"] >= 20 for run in taken) == [False] * 3 + [True] * 3
    # Finishing runs frees no starts: a rate counts starts, not running runs.
    first.complete([Outcome(run.fence, "succeeded") for run in taken])
    assert claim(second, limit) == []


def test_a_rate_refills_with_time(q: RunQueue) -> None:
    q.enqueue([new("k", {"n": i}) for i in range(10)])
    limit = (KindLimit("k", rate=2, per=1.0),)
    assert len(claim(q, limit)) == 2
    began = q.now()
    while (q.now() - began).total_seconds() < 0.6:  # the store's clock, not ours
        time.sleep(0.02)
    assert 1 <= len(claim(q, limit)) <= 2  # half a window later: at least one start back


def test_a_rate_and_a_concurrency_hold_together(q: RunQueue) -> None:
    q.enqueue([new("k", {"n": i}) for i in range(10)])
    limit = (KindLimit("k", concurrency=2, rate=3, per=3600),)
    taken = claim(q, limit)
    assert len(taken) == 2
    q.complete([Outcome(run.fence, "succeeded") for run in taken])
    assert len(claim(q, limit)) == 1  # the third start of the hour
    assert claim(q, limit) == []
