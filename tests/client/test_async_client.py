"""runce.AsyncClient against a real runce server: the same records and errors as the
synchronous client, awaited."""

from __future__ import annotations

import asyncio

import pytest

import runce
from runce.errors import IdempotencyConflict, IllegalTransition, InvalidInput, UnknownRun
from tests.client.conftest import Server


def test_the_async_client_does_what_the_client_does(server: Server) -> None:
    token = server.tokens["all"]

    async def scenario() -> None:
        async with runce.AsyncClient(server.url, token) as client:
            run, created = await client.enqueue_answer("client.echo", {"a": 1}, idempotency_key="k")
            assert created
            again, created = await client.enqueue_answer(
                "client.echo", {"a": 1}, idempotency_key="k"
            )
            assert (again.id, created) == (run.id, False)
            with pytest.raises(IdempotencyConflict):
                await client.enqueue("client.echo", {"a": 2}, idempotency_key="k")
            with pytest.raises(InvalidInput) as bad:
                await client.enqueue("client.signup", {"email": "nope", "age": 3})
            assert {tuple(e["loc"]) for e in bad.value.errors} == {("email",), ("age",)}
            assert (await client.get_run(run.id)).input == {"a": 1}
            page = await client.list_runs(kind="client.echo", limit=10)
            assert [r.id for r in page.runs] == [run.id]
            oldest = await client.list_runs(kind="client.echo", order="oldest", limit=10)
            assert [r.id for r in oldest.runs] == [run.id]
            assert (await client.cancel_run(run.id)).state == "canceled"
            with pytest.raises(IllegalTransition):
                await client.cancel_run(run.id)
            assert (await client.retry_run(run.id)).state == "queued"
            assert await client.attempts(run.id) == []
            with pytest.raises(UnknownRun):
                await client.get_run("no-such-run")
            assert (await client.wait(run.id, timeout=0.1)).state == "queued"
            assert "store" in await client.health()
            assert await client.workers() == []
            assert await client.list_schedules() == []

    asyncio.run(scenario())


def test_the_async_client_sets_a_runs_concurrency_key(server: Server) -> None:
    from runce.runs.library import service

    async def scenario() -> tuple[str, str]:
        async with runce.AsyncClient(server.url, server.tokens["all"]) as client:
            run = await client.enqueue("client.echo", {"a": 1}, concurrency_key="batch-7")
            answered, created = await client.enqueue_answer(
                "client.echo", {"a": 2}, concurrency_key="batch-8"
            )
            assert created
            return run.id, answered.id

    first, second = asyncio.run(scenario())
    flow_of = service(server.config).queue.flow_of  # type: ignore[attr-defined]
    assert flow_of(first).key == "batch-7"
    assert flow_of(second).key == "batch-8"


def test_the_async_client_says_a_runs_limit_and_why_it_waits(server: Server) -> None:
    from runce.runs.library import service
    from runce.stores.queue import ClaimRequest, KindLimit

    async def enqueue() -> tuple[runce.Run, runce.Run]:
        async with runce.AsyncClient(server.url, server.tokens["all"]) as client:
            first = await client.enqueue("client.serial", {"customer": "acme", "n": 1})
            second = await client.enqueue("client.serial", {"customer": "acme", "n": 2})
            return first, second

    first, second = asyncio.run(enqueue())
    limits = (KindLimit("client.serial", 1),)
    claim = ClaimRequest("w1", ("client.serial",), 10, 30.0, limits)
    [taken] = service(server.config).queue.exchange([], claim)[1]
    assert taken.id == first.id

    async def read() -> None:
        async with runce.AsyncClient(server.url, server.tokens["reader"]) as client:
            held = await client.flow(second.id)
            assert held.limit == "concurrency 1 per customer"
            assert held.waiting == "waiting: concurrency of customer=acme, 1 of 1 running"
            assert await client.flow(second) == held  # a Run works as well as its id
            running = await client.flow(first.id)
            assert (running.limit, running.waiting) == ("concurrency 1 per customer", None)
            with pytest.raises(UnknownRun):
                await client.flow("no-such-run")
            assert await client.limits() == {"client.serial": "concurrency 1 per customer"}

    asyncio.run(read())
    # The synchronous client answers the same.
    client = server.client("reader")
    assert client.flow(second.id) == client.flow(second)
    assert client.flow(second.id).waiting == "waiting: concurrency of customer=acme, 1 of 1 running"
    assert client.limits() == {"client.serial": "concurrency 1 per customer"}
