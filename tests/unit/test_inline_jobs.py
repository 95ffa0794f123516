"""Jobs called in-process: ``.now()`` (recorded or not) and ``.batch()``, on a real SQLite store."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, EmailStr

import runce
from runce.errors import InvalidInput, JobFailed, UsageError
from runce.runs.jobs import registry


class Email(BaseModel):
    to: EmailStr


class Sent(BaseModel):
    message_id: str


calls: list[Any] = []


@pytest.fixture
def config(tmp_path: Path) -> Iterator[dict[str, Any]]:
    calls.clear()
    yield {"store": f"sqlite:///{tmp_path / 'runce.db'}", "worker": {"lease": 1}}
    for kind in registry.kinds():
        if kind.startswith("inline."):
            registry.forget(kind)


def _jobs() -> dict[str, runce.Job]:
    @runce.job("inline.send")
    def send(params: Email, ctx: runce.JobContext) -> Sent:
        calls.append((params.to, ctx.run.id, ctx.run.attempt))
        if params.to.startswith("fail"):
            raise RuntimeError(f"mailbox {params.to} is full")
        if params.to.startswith("wrong"):
            return {"id": 5}  # type: ignore[return-value]
        ctx.progress(50, "half")
        return Sent(message_id=f"m-{params.to}")

    @runce.job("inline.async")
    async def later(params: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"double": params["n"] * 2}

    @runce.job("inline.slow")
    def slow(params: dict[str, Any], ctx: runce.JobContext) -> str:
        deadline = time.monotonic() + params["seconds"]
        while time.monotonic() < deadline:
            if ctx.cancelled:
                return "stopped"
            time.sleep(0.02)
        return "done"

    return {"send": send, "async": later, "slow": slow}


def test_now_records_a_run_and_returns_the_validated_result(config: dict[str, Any]) -> None:
    jobs = _jobs()
    sent = jobs["send"].now({"to": "ada@example.com"}, config=config, project_id="p1")
    assert sent == Sent(message_id="m-ada@example.com")
    [(to, run_id, attempt)] = calls
    run = runce.get_run(run_id, config=config)
    assert (to, attempt, run.state, run.attempt, run.max_attempts) == (
        "ada@example.com",
        1,
        "succeeded",
        1,
        1,
    )
    assert run.claimed_by is not None
    assert run.claimed_by.startswith("inline:")
    assert (run.result, run.project_id, run.progress) == (
        {"message_id": "m-ada@example.com"},
        "p1",
        50,
    )


def test_now_raises_job_failed_with_the_run_id(config: dict[str, Any]) -> None:
    jobs = _jobs()
    with pytest.raises(JobFailed, match=r"mailbox fail@example\.com is full") as caught:
        jobs["send"].now({"to": "fail@example.com"}, config=config)
    assert caught.value.run_id is not None
    assert isinstance(caught.value.__cause__, RuntimeError)
    failed = runce.get_run(caught.value.run_id, config=config)
    assert (failed.state, failed.error) == (
        "failed",
        "RuntimeError: mailbox fail@example.com is full",
    )
    from runce.runs import library

    [attempt] = library.service(config).attempts(failed.id)
    assert attempt.traceback is not None
    assert "in send\n" in attempt.traceback
    assert attempt.traceback.endswith("RuntimeError: mailbox fail@example.com is full\n")

    with pytest.raises(JobFailed, match=r"the result of 'inline\.send' is not valid"):
        jobs["send"].now({"to": "wrong@example.com"}, config=config)


def test_a_bad_input_records_nothing(config: dict[str, Any]) -> None:
    jobs = _jobs()
    with pytest.raises(InvalidInput, match="to: "):
        jobs["send"].now({"to": 5}, config=config)
    assert runce.list_runs(config=config).runs == []
    assert calls == []


def test_now_without_persisting_touches_no_store(config: dict[str, Any]) -> None:
    jobs = _jobs()
    assert jobs["send"].now({"to": "bo@example.com"}, persist=False, config=config) == Sent(
        message_id="m-bo@example.com"
    )
    assert runce.list_runs(config=config).runs == []
    with pytest.raises(JobFailed, match=r"mailbox fail@x\.io is full") as caught:
        jobs["send"].now({"to": "fail@x.io"}, persist=False, config=config)
    assert caught.value.run_id is None


def test_async_jobs_run_now_and_anow(config: dict[str, Any]) -> None:
    jobs = _jobs()
    assert jobs["async"].now({"n": 2}, config=config) == {"double": 4}
    assert asyncio.run(jobs["async"].anow({"n": 3}, config=config)) == {"double": 6}

    async def inside_a_loop() -> None:
        with pytest.raises(JobFailed) as caught:
            jobs["async"].now({"n": 1}, config=config)
        assert isinstance(caught.value.__cause__, UsageError)
        assert "use `await job.anow(...)`" in str(caught.value)

    asyncio.run(inside_a_loop())


def test_an_inline_run_heartbeats_and_hears_a_cancel(config: dict[str, Any]) -> None:
    jobs = _jobs()
    found: dict[str, Any] = {}

    def cancel_when_running() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            running = runce.list_runs(state="running", config=config).runs
            if running:
                found["run"] = runce.cancel_run(running[0].id, config=config)
                return
            time.sleep(0.05)

    canceller = threading.Thread(target=cancel_when_running)
    canceller.start()
    with pytest.raises(JobFailed, match="was canceled while running") as caught:
        jobs["slow"].now({"seconds": 5}, config=config)  # several leases long: heartbeats
    canceller.join()
    run = runce.get_run(caught.value.run_id or "", config=config)
    assert (run.state, run.cancel_requested) == ("canceled", True)


def test_batch_runs_every_item_and_reports_each(config: dict[str, Any]) -> None:
    jobs = _jobs()
    items = [{"to": f"u{i}@example.com"} for i in range(5)] + [{"to": "fail@example.com"}]
    results = jobs["send"].batch(items, concurrency=3, config=config)
    assert [r.status for r in results] == ["succeeded"] * 5 + ["failed"]
    assert [r.index for r in results] == list(range(6))
    assert results[0].result == Sent(message_id="m-u0@example.com")
    assert results[5].run_id is not None
    assert "is full" in (results[5].error or "")
    assert len(runce.list_runs(kind="inline.send", config=config).runs) == 6


def test_batch_can_stop_at_the_first_error(config: dict[str, Any]) -> None:
    jobs = _jobs()
    items = [{"to": "fail@example.com"}] + [{"to": f"u{i}@example.com"} for i in range(4)]
    results = jobs["send"].batch(items, concurrency=1, stop_on_error=True, config=config)
    assert [r.status for r in results] == ["failed"] + ["skipped"] * 4
    assert not any(r.ok for r in results)
    with pytest.raises(UsageError, match="batch concurrency must be a whole number from 1"):
        jobs["send"].batch(items, concurrency=0, config=config)
