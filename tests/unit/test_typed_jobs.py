"""Typed jobs: inputs validated at enqueue, params given as models, results validated."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, EmailStr

import runce
from runce.errors import InvalidInput, UsageError
from runce.runs.events import EventBus
from runce.runs.jobs import Job, JobRegistry, job, registry
from runce.runs.service import RunService
from runce.runs.worker import Worker, WorkerOptions
from runce.stores import memory


class Email(BaseModel):
    to: EmailStr
    subject: str = "hello"


class Sent(BaseModel):
    message_id: str


@pytest.fixture
def setup() -> Iterator[tuple[memory.MemoryStore, JobRegistry, RunService]]:
    store = memory.MemoryStore(uuid.uuid4().hex)
    jobs = JobRegistry()
    yield store, jobs, RunService(store.runs, jobs=jobs, bus=EventBus())
    memory.reset()


def _drain(store: memory.MemoryStore, jobs: JobRegistry) -> None:
    Worker(
        store.runs, WorkerOptions(drain=True, poll=0.05, max_time=10), jobs=jobs, bus=EventBus()
    ).run()


def test_a_bad_input_is_refused_with_the_field_error_and_nothing_stored(
    setup: tuple[memory.MemoryStore, JobRegistry, RunService],
) -> None:
    _store, jobs, service = setup

    def send(params: Email) -> Sent:
        return Sent(message_id="m1")

    jobs.register(Job("email.send", send))
    with pytest.raises(InvalidInput, match=r"'email.send' is not valid: to: "):
        service.enqueue("email.send", {"to": 5})
    assert service.page().runs == []


def test_the_job_gets_a_model_and_its_result_is_stored_as_json(
    setup: tuple[memory.MemoryStore, JobRegistry, RunService],
) -> None:
    store, jobs, service = setup
    seen: list[Any] = []

    def send(params: Email, ctx: runce.JobContext) -> Sent:
        seen.append(params)
        return Sent(message_id=f"to-{params.to}")

    jobs.register(Job("email.send", send))
    run = service.enqueue("email.send", {"to": "ada@example.com"})
    assert run.input == {"to": "ada@example.com", "subject": "hello"}, "defaults are stored"
    _drain(store, jobs)
    assert isinstance(seen[0], Email)
    done = service.get(run.id)
    assert (done.state, done.result) == ("succeeded", {"message_id": "to-ada@example.com"})


def test_a_wrong_result_type_fails_the_run_clearly(
    setup: tuple[memory.MemoryStore, JobRegistry, RunService],
) -> None:
    store, jobs, service = setup

    def send(params: Email) -> Sent:
        return {"id": 3}  # type: ignore[return-value]

    jobs.register(Job("email.send", send))
    run = service.enqueue("email.send", {"to": "ada@example.com"}, max_attempts=3)
    _drain(store, jobs)
    done = service.get(run.id)
    assert (done.state, done.attempt) == ("failed", 1), "a wrong result is not retried"
    assert "the result of 'email.send' is not valid: message_id: Field required" in (
        done.error or ""
    )


def test_plain_json_types_are_checked_too(
    setup: tuple[memory.MemoryStore, JobRegistry, RunService],
) -> None:
    store, jobs, service = setup

    def total(params: list[int]) -> int:
        return sum(params)

    jobs.register(Job("sum", total))
    with pytest.raises(InvalidInput, match="0: Input should be a valid integer"):
        service.enqueue("sum", ["x"])
    run = service.enqueue("sum", [1, 2, 3])
    _drain(store, jobs)
    assert service.get(run.id).result == 6


def test_untyped_jobs_get_the_raw_input(
    setup: tuple[memory.MemoryStore, JobRegistry, RunService],
) -> None:
    store, jobs, service = setup
    jobs.register(Job("raw", lambda params, ctx: params))
    run = service.enqueue("raw", {"anything": [1, None]})
    _drain(store, jobs)
    assert service.get(run.id).result == {"anything": [1, None]}


def test_two_jobs_with_one_name_are_an_error() -> None:
    kind = f"dup.{uuid.uuid4().hex[:6]}"

    @job(kind)
    def first(params: Any) -> None: ...

    with pytest.raises(UsageError, match=f"two jobs are named '{kind}'"):

        @job(kind)
        def second(params: Any) -> None: ...

    registry.forget(kind)


def test_a_job_with_unusable_annotations_fails_on_import() -> None:
    with pytest.raises(UsageError, match="its annotations cannot be used"):

        @job(f"bad.{uuid.uuid4().hex[:6]}")
        def broken(params: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
            ...


def test_later_enqueues_on_the_configured_store(tmp_path: Any) -> None:
    kind = f"later.{uuid.uuid4().hex[:6]}"

    @job(kind)
    def later_job(params: Email) -> None: ...

    config = {"store": f"memory://{uuid.uuid4().hex}"}
    try:
        run = later_job.later({"to": "ada@example.com"}, idempotency_key="k", config=config)
        assert run.kind == kind
        again = later_job.later({"to": "ada@example.com"}, idempotency_key="k", config=config)
        assert again.id == run.id
        with pytest.raises(InvalidInput):
            later_job.later({"to": "nope"}, config=config)
    finally:
        registry.forget(kind)
        memory.reset()
