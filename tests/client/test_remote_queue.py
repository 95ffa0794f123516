"""``HttpRunQueue``: the run-queue contract over the worker endpoints, fenced by the server."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from runce.api.remote_queue import HttpRunQueue
from runce.domain.runs import ClaimRequest, Fence, NewRun, Outcome, RunFilter
from runce.errors import ServerUnavailable, UnsupportedFeature
from runce.stores.queue import RunQueue
from tests.client.conftest import Server, free_port

LEASE = 0.3


def _queue(server: Server, long_poll: float = 0.0) -> HttpRunQueue:
    return HttpRunQueue(server.client("all"), long_poll=long_poll)


def _new(key: str | None = None, input_json: str = '{"n":1}') -> NewRun:
    return NewRun(
        id="ignored", kind="client.echo", input_json=input_json, max_attempts=3, idempotency_key=key
    )


def _reclaimed(queue: HttpRunQueue, run_id: str) -> None:
    """Wait (on the server's clock) until the run's lease expired and was put back."""
    deadline = time.monotonic() + 20
    while run_id not in {r.id for r in queue.reclaim()}:
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.05)


def test_it_is_a_run_queue(server: Server) -> None:
    assert isinstance(_queue(server), RunQueue)


def test_enqueue_says_whether_it_created_the_run(server: Server) -> None:
    queue = _queue(server)
    [first] = queue.enqueue([_new("k")])
    [again] = queue.enqueue([_new("k")])
    assert (first.created, again.created, again.run) == (True, False, first.run)
    assert queue.get(first.run.id) == first.run
    assert queue.get("nope") is None


def test_a_worker_that_lost_its_lease_writes_nothing(server: Server) -> None:
    slow, fast = _queue(server), _queue(server)
    [made] = slow.enqueue([_new()])
    [mine] = slow.claim("slow", ["client.echo"], 5, LEASE)
    assert (mine.id, mine.attempt, mine.claimed_by) == (made.run.id, 1, "slow")
    _reclaimed(fast, mine.id)
    [theirs] = fast.claim("fast", None, 5, 30)
    assert theirs.attempt == 2

    assert slow.heartbeat([mine.fence], 30) == {mine.id: "lost"}
    assert slow.progress(mine.fence, 10, "late") is False
    assert slow.complete([Outcome(mine.fence, "succeeded", result_json="1")]) == [None]

    assert fast.heartbeat([theirs.fence], 30) == {theirs.id: "ok"}
    assert fast.progress(theirs.fence, 60, "m" * 2000) is True
    done, claimed = fast.exchange(
        [Outcome(theirs.fence, "succeeded", result_json='{"ok":true}')],
        ClaimRequest("fast", None, 5, 30),
    )
    assert claimed == []
    [landed] = done
    assert landed is not None
    assert landed.progress == 60
    after = fast.client.get_run(theirs.id)
    assert (after.state, after.result) == ("succeeded", {"ok": True})
    assert [a.outcome for a in fast.attempts(after.id)] == ["lease-expired"]


def test_an_attempts_traceback_goes_through_the_server(server: Server) -> None:
    queue = _queue(server)
    queue.enqueue([_new()])
    [run] = queue.claim("w", None, 1, 30)
    stack = "Traceback (most recent call last):\n  ...\nValueError: ✗\n"
    queue.complete([Outcome(run.fence, "failed", error="ValueError: ✗", traceback=stack)])
    [record] = queue.attempts(run.id)
    assert (record.error, record.traceback) == ("ValueError: ✗", stack)
    assert server.client().attempts(run.id) == [record]


def test_failures_with_long_tracebacks_are_sent_in_requests_the_server_takes(
    server: Server,
) -> None:
    queue = _queue(server)
    queue.enqueue([_new(input_json=f'{{"n":{n}}}') for n in range(40)])
    claimed = queue.claim("w", None, 40, 30)
    stack = "Traceback (most recent call last):\n" + "  ✗ frame\n" * 1200  # under 16 KiB
    error = "E: " + "x" * 16000
    outcomes = [Outcome(r.fence, "failed", error=error, traceback=stack) for r in claimed]
    landed = queue.complete(outcomes)  # some 1.3 MB in all: more than api.max_body at once
    assert len(landed) == 40
    assert all(one is not None for one in landed)
    assert [a.traceback for a in queue.attempts(claimed[-1].id)] == [stack]


def test_outcomes_and_heartbeats_go_in_batches(server: Server) -> None:
    queue = _queue(server)
    queue.enqueue([_new(input_json=f'{{"n":{n}}}') for n in range(3)])
    claimed = queue.claim("w", None, 3, 30)
    beats = queue.heartbeat([r.fence for r in claimed], 30)
    assert beats == {r.id: "ok" for r in claimed}
    retry_at = datetime.now(UTC) + timedelta(hours=1)
    outcomes = [
        Outcome(claimed[0].fence, "retry", error="boom", run_at=retry_at),
        Outcome(claimed[1].fence, "released"),
        Outcome(claimed[2].fence, "failed", error="bad"),
    ]
    landed = queue.exchange(outcomes, None)[0]
    assert all(done is not None for done in landed)
    states = [queue.client.get_run(r.id).state for r in claimed]
    assert states == ["queued", "queued", "failed"]


def test_cancel_reaches_the_worker_through_its_heartbeat(server: Server) -> None:
    queue = _queue(server)
    queue.enqueue([_new()])
    [run] = queue.claim("w", None, 1, 30)
    asked = queue.cancel(run.id)
    assert asked is not None
    assert asked.cancel_requested
    assert queue.heartbeat([run.fence], 30) == {run.id: "cancel"}
    queue.complete([Outcome(run.fence, "canceled", error="stopped")])
    finished = queue.cancel(run.id)  # finished meanwhile: the run as it is
    assert finished is not None
    assert finished.state == "canceled"
    retried = queue.retry(run.id)
    assert retried is not None
    assert retried.state == "queued"
    assert queue.retry(run.id) == queue.get(run.id)  # not retryable now: unchanged
    assert queue.cancel("nope") is None
    assert queue.retry("nope") is None
    assert queue.attempts("nope") == []


def test_an_idle_claim_waits_on_the_server_and_comes_back_empty(server: Server) -> None:
    queue = _queue(server, long_poll=0.2)
    assert queue.claim("w", None, 5, 30) == []
    assert queue.claim("w", None, 0, 30) == []


def test_what_a_remote_worker_may_not_do_is_one_sentence(server: Server) -> None:
    queue = _queue(server)
    with pytest.raises(UnsupportedFeature, match="inside your database transaction"):
        queue.enqueue([_new()], connection=object())
    with pytest.raises(UnsupportedFeature, match="does not page"):
        queue.page(RunFilter(), None, 10)
    with pytest.raises(UnsupportedFeature, match="does not prune"):
        queue.prune(datetime.now(UTC), datetime.now(UTC))
    with pytest.raises(UnsupportedFeature, match="not at a set time"):
        queue.retry("x", datetime.now(UTC))


def test_workers_and_the_clock_come_from_the_server(server: Server) -> None:
    from runce.domain.runs import WorkerInfo

    queue = _queue(server)
    now = queue.now()
    assert now.tzinfo is not None
    info = WorkerInfo("host:1:ab", "host", 1, now, now, 4, ("client.echo",))
    queue.worker_seen(info)
    assert info in queue.workers()
    queue.wait_for_work(0.01)
    queue.close()


def test_a_dead_server_is_a_store_error_the_worker_rides_out() -> None:
    from runce.api.client import Client

    queue = HttpRunQueue(Client(f"http://127.0.0.1:{free_port()}", "t"))
    with pytest.raises(ServerUnavailable):
        queue.exchange([], ClaimRequest("w", None, 1, 30))
    fence = Fence("r", 1, "w")
    with pytest.raises(ServerUnavailable):
        queue.progress(fence, 1, None)


def test_enqueue_sends_the_runs_concurrency_key(server: Server) -> None:
    from runce.runs.library import service

    queue = _queue(server)
    new = NewRun(
        id="ignored",
        kind="client.echo",
        input_json='{"n":1}',
        max_attempts=3,
        concurrency_key="acme",
    )
    [made] = queue.enqueue([new])
    flow_of = service(server.config).queue.flow_of  # type: ignore[attr-defined]
    assert flow_of(made.run.id).key == "acme"


def test_a_draining_remote_worker_with_limits_asks_the_server_what_is_due(server: Server) -> None:
    # An empty claim of a limited kind may only mean its limit holds due runs back: a
    # draining worker asks what is due (GET /v1/runs:counts, a worker's scope) before it stops.
    from runce.runs.library import service
    from runce.runs.worker import Worker, WorkerOptions

    writer = _queue(server)
    serial = NewRun(
        id="ignored",
        kind="client.serial",
        input_json='{"customer": "acme"}',
        max_attempts=3,
        concurrency_key="acme",
    )
    [made] = writer.enqueue([serial])
    queue = HttpRunQueue(server.client("worker"))
    counted, stored = queue.run_counts(), service(server.config).queue.run_counts()
    assert counted.counts == stored.counts == {("client.serial", "queued"): 1}
    assert set(counted.oldest_due) == {"client.serial"}
    assert counted.now.tzinfo is not None
    options = WorkerOptions(kinds=("client.serial",), drain=True, poll=0.05, max_time=60)
    worker = Worker(queue, options)
    worker.run()
    assert worker.summary.succeeded == 1
    assert writer.get(made.run.id).state == "succeeded"
    assert queue.run_counts().oldest_due == {}
