"""A worker records each failed attempt's traceback, redacted, on every store with runs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import runce
from runce.errors import NonRetryable
from runce.errortext import ERROR_CAP, TRUNCATED
from runce.runs import redact, secrets
from runce.runs.context import JobContext
from runce.runs.events import EventBus
from runce.runs.jobs import Job, JobRegistry
from runce.runs.service import RunService
from runce.runs.worker import Worker, WorkerOptions
from runce.stores import memory
from runce.stores.queue import RunQueue
from tests.stores.conftest import BACKENDS
from tests.stores.test_queue_contract import QUEUE_BACKENDS

SECRET = "sk_live_7f3a9c"


@pytest.fixture(params=QUEUE_BACKENDS)
def queue(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[RunQueue]:
    made = BACKENDS[request.param](request, tmp_path)
    runs: RunQueue = made.open().runs  # type: ignore[attr-defined]
    yield runs
    made.close_all()
    memory.reset()


@pytest.fixture(autouse=True)
def redaction(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TB_PAYMENTS_KEY", SECRET)
    redact.install(["password"])
    yield
    secrets.use_resolver(None)
    redact.install(runce.config.DEFAULT_REDACT)


def charge_card(params: dict[str, Any], ctx: JobContext) -> None:
    key = secrets.resolve("TB_PAYMENTS_KEY").get_secret_value()
    if ctx.run.attempt == 1:
        raise ConnectionError(f"gateway refused key {key} (password=hunter2)")
    _deep_inside(key)


def _deep_inside(key: str) -> None:
    raise NonRetryable(f"card declined for {key}")


def huge_failure(params: dict[str, Any]) -> None:
    raise ValueError("x" * (4 * ERROR_CAP) + " the end")


def _service(queue: RunQueue) -> RunService:
    jobs = JobRegistry()
    jobs.register(Job("tb.charge", charge_card, max_attempts=3))
    jobs.register(Job("tb.huge", huge_failure, max_attempts=1))
    return RunService(queue, jobs=jobs, bus=EventBus())


def _until_finished(queue: RunQueue, service: RunService, run_id: str) -> None:
    options = WorkerOptions(drain=True, poll=0.02, backoff_base=0.01, max_time=20)
    deadline = time.monotonic() + 60
    while (run := service.get(run_id)).state not in ("failed", "succeeded", "canceled"):
        assert time.monotonic() < deadline, f"run {run_id} is still {run.state}"
        Worker(queue, options, jobs=service.jobs, bus=EventBus()).run()


def test_each_attempt_keeps_its_own_redacted_traceback(queue: RunQueue) -> None:
    service = _service(queue)
    run = service.enqueue("tb.charge", {"card": uuid.uuid4().hex})
    _until_finished(queue, service, run.id)
    first, second = service.attempts(run.id)
    assert (first.outcome, second.outcome) == ("retry", "failed")
    assert first.traceback is not None
    assert second.traceback is not None
    assert first.traceback.startswith("Traceback (most recent call last):\n")
    assert "in charge_card" in first.traceback
    assert first.traceback.endswith("ConnectionError: gateway refused key *** (password=***)\n")
    assert "_deep_inside" not in first.traceback
    assert "in _deep_inside" in second.traceback
    assert second.traceback.endswith("NonRetryable: card declined for ***\n")
    for record in (first, second):
        assert SECRET not in (record.traceback or "")
        assert "hunter2" not in (record.traceback or "")


def test_a_long_traceback_keeps_its_end(queue: RunQueue) -> None:
    service = _service(queue)
    run = service.enqueue("tb.huge", {})
    _until_finished(queue, service, run.id)
    [record] = service.attempts(run.id)
    assert record.traceback is not None
    assert record.traceback.startswith(TRUNCATED)
    assert record.traceback.endswith(" the end\n")
    assert len(record.traceback.encode()) <= ERROR_CAP
