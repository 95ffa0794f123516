"""``RunQueue.start``, a run inserted already running (a job called with ``.now()``), and the
progress a new attempt starts with, on every store with a run queue."""

from __future__ import annotations

import time

import pytest

from runce.domain.runs import Outcome
from runce.errors import UsageError
from runce.stores.queue import RunQueue
from tests.stores.test_queue_contract import new, qmaker, queue  # noqa: F401 - fixtures


def test_a_started_run_is_running_and_claimed_by_its_caller(queue: RunQueue) -> None:  # noqa: F811
    run = queue.start(new(max_attempts=1), "inline:host:1", 30)
    assert (run.state, run.attempt, run.claimed_by) == ("running", 1, "inline:host:1")
    assert run.lease_expires_at is not None
    assert run.started_at is not None
    assert run.lease_expires_at > run.started_at
    assert queue.get(run.id) == run
    assert queue.claim("w", None, 10, 30) == []  # nobody else ever sees it queued
    assert queue.heartbeat([run.fence], 30) == {run.id: "ok"}
    [landed] = queue.complete([Outcome(run.fence, "succeeded", result_json='{"ok":true}')])
    assert landed is not None
    done = queue.get(run.id)
    assert done is not None
    assert (done.state, done.result) == ("succeeded", {"ok": True})


def test_a_started_run_whose_caller_died_fails_when_its_lease_expires(
    queue: RunQueue,  # noqa: F811
) -> None:
    run = queue.start(new(max_attempts=1), "inline:host:2", 0.2)
    time.sleep(0.35)
    [expired] = queue.reclaim()
    assert (expired.id, expired.state) == (run.id, "failed")
    assert [a.outcome for a in queue.attempts(run.id)] == ["lease-expired"]


def test_a_started_run_takes_no_idempotency_key(queue: RunQueue) -> None:  # noqa: F811
    with pytest.raises(UsageError, match="no idempotency key"):
        queue.start(new(idempotency_key="k"), "inline:host:3", 30)


def test_a_new_attempt_starts_with_no_progress(queue: RunQueue) -> None:  # noqa: F811
    queue.enqueue([new(max_attempts=3)])
    [first] = queue.claim("w1", None, 1, 30)
    assert queue.progress(first.fence, 40, "forty")
    queue.complete([Outcome(first.fence, "released")])
    [second] = queue.claim("w2", None, 1, 30)
    assert (second.id, second.progress, second.progress_message) == (first.id, None, None)
    assert queue.get(second.id) == second
