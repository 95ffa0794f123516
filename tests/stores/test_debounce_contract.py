"""Debounce in the run-queue contract: an enqueue of a debounced run merges into its key's
queued run not yet started (new input, start moved to now + debounce), else inserts one
starting then; atomic across store objects (each standing for another process)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from runce.domain.runs import ClaimRequest, NewRun, Outcome, Run, RunFilter
from runce.stores.queue import RunQueue
from tests.stores.conftest import StoreMaker
from tests.stores.test_queue_contract import _runs, new, qmaker  # noqa: F401 - a fixture


def debounced(n: int, key: str = "acme", seconds: float = 30.0) -> NewRun:
    return new("k", {"key": key, "n": n}, concurrency_key=key, debounce=seconds)


def _queued(q: RunQueue, key: str) -> list[Run]:
    page = q.page(RunFilter(kind="k", state="queued"), None, 1000)
    return [run for run in page if run.input["key"] == key]


def test_a_debounced_enqueue_merges_into_the_keys_queued_run(qmaker: StoreMaker) -> None:  # noqa: F811
    q = _runs(qmaker.open())
    [first] = q.enqueue([debounced(1)])
    assert first.created
    now = q.now()
    assert timedelta(seconds=25) < first.run.run_at - now <= timedelta(seconds=31)
    [second] = q.enqueue([debounced(2, seconds=60)])
    assert not second.created
    assert second.run.id == first.run.id
    assert second.run.input == {"key": "acme", "n": 2}
    assert second.run.run_at - now > timedelta(seconds=55)
    stored = q.get(first.run.id)
    assert stored is not None
    assert stored.input == {"key": "acme", "n": 2}
    assert stored.run_at == second.run.run_at
    [other] = q.enqueue([debounced(3, key="other")])
    assert other.created
    assert other.run.id != first.run.id


def test_a_started_run_is_not_merged_into(qmaker: StoreMaker) -> None:  # noqa: F811
    q = _runs(qmaker.open())
    [first] = q.enqueue([debounced(1, seconds=0.001)])
    taken: list[Run] = []
    deadline = time.monotonic() + 10
    while not taken and time.monotonic() < deadline:  # the store's clock passes the ms
        taken = q.exchange([], ClaimRequest("w1", ("k",), 10, 30.0))[1]
        time.sleep(0.005)
    assert [run.id for run in taken] == [first.run.id]
    [second] = q.enqueue([debounced(2)])
    assert second.created
    assert second.run.id != first.run.id
    q.complete([Outcome(taken[0].fence, "succeeded")])


def test_a_run_holding_an_idempotency_key_is_not_merged_into(qmaker: StoreMaker) -> None:  # noqa: F811
    q = _runs(qmaker.open())
    [keyed] = q.enqueue(
        [new("k", {"key": "acme", "n": 0}, concurrency_key="acme", idempotency_key="i-1")]
    )
    [first] = q.enqueue([debounced(1)])
    assert first.created
    assert first.run.id != keyed.run.id
    assert q.get(keyed.run.id).input == {"key": "acme", "n": 0}  # type: ignore[union-attr]


def test_runs_without_debounce_are_not_merged(qmaker: StoreMaker) -> None:  # noqa: F811
    q = _runs(qmaker.open())
    q.enqueue([new("k", {"key": "acme", "n": 0}, concurrency_key="acme")])
    [first] = q.enqueue([debounced(1)])
    # A plain queued run of the key is merged into too: the key has one run waiting.
    assert not first.created
    q.enqueue([new("k", {"key": "acme", "n": 5}, concurrency_key="acme")])
    assert len(_queued(q, "acme")) == 2


def test_concurrent_debounced_enqueuers_leave_one_queued_run_per_key(
    qmaker: StoreMaker,  # noqa: F811
) -> None:
    queues = [_runs(qmaker.open()) for _ in range(4)]
    per_thread = 15
    barrier = threading.Barrier(len(queues))
    errors: list[BaseException] = []

    def enqueue(q: RunQueue, t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                for key in ("a", "b"):
                    q.enqueue([debounced(t * 1000 + i, key=key)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=enqueue, args=(q, t)) for t, q in enumerate(queues)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    last = queues[0]
    # The last input each key received (enqueues are serialised: each thread's last is
    # per_thread - 1; whichever thread wrote last, its input is what the run holds).
    [last_a] = q_a = _queued(last, "a")
    [last_b] = _queued(last, "b")
    assert len(q_a) == 1
    assert last_a.input["n"] % 1000 == per_thread - 1
    assert last_b.input["n"] % 1000 == per_thread - 1
