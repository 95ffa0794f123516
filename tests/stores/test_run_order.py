"""Pages of runs in either order, and ensure_idempotent, on every store with runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runce.domain.runs import Run, RunFilter, RunOrder
from runce.errors import UsageError
from runce.runs.service import RunService
from runce.stores.queue import RunQueue
from tests.stores.conftest import StoreMaker
from tests.stores.test_queue_contract import QUEUE_BACKENDS, _runs, new


@pytest.fixture(params=QUEUE_BACKENDS)
def queue(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[RunQueue]:
    from runce.stores import memory
    from tests.stores.conftest import BACKENDS

    made: StoreMaker = BACKENDS[request.param](request, tmp_path)
    yield _runs(made.open())
    made.close_all()
    memory.reset()


def _walk(service: RunService, filters: RunFilter, size: int) -> list[str]:
    """Every run id, page by page, following the cursors."""
    seen: list[str] = []
    cursor = None
    while True:
        page = service.page(filters, cursor=cursor, limit=size)
        seen += [r.id for r in page.runs]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


@pytest.mark.parametrize("order", ["newest", "oldest"])
@pytest.mark.parametrize("kind", [None, "a"])  # read per state, or by an index
def test_keyset_pages_walk_every_run_once_in_either_order(
    queue: RunQueue, order: RunOrder, kind: str | None
) -> None:
    for i in range(4):
        queue.enqueue([new(kind="a"), new(kind="a")])  # two at once: equal times are possible
        if i % 2:
            time.sleep(0.003)
    service = RunService(queue)
    everything = queue.page(RunFilter(kind=kind), None, 100)
    by_time = sorted(everything, key=lambda r: (r.created_at, r.id), reverse=order == "newest")
    walked = _walk(service, RunFilter(kind=kind, order=order), 3)
    assert walked == [r.id for r in by_time]
    assert len(walked) == 8

    # a run enqueued meanwhile does not shift the pages already handed out
    first = service.page(RunFilter(kind=kind, order=order), limit=3)
    queue.enqueue([new(kind="a")])
    second = service.page(RunFilter(kind=kind, order=order), cursor=first.next_cursor, limit=3)
    assert [r.id for r in first.runs + second.runs] == walked[:6]


def test_an_unknown_order_is_refused(queue: RunQueue) -> None:
    with pytest.raises(UsageError, match="order 'random'"):
        RunService(queue).page(RunFilter(order="random"))  # type: ignore[arg-type]


def test_ensure_idempotent_returns_the_run_of_a_key_or_creates_it(queue: RunQueue) -> None:
    service = RunService(queue)
    made: list[Run] = []

    def factory() -> Run:
        made.append(service.enqueue("email.send", {"n": 1}, idempotency_key="order-7"))
        return made[-1]

    first = service.ensure_idempotent("order-7", factory)
    again = service.ensure_idempotent("order-7", factory)
    assert first.id == again.id
    assert first.idempotency_key == "order-7"
    assert len(made) == 1  # the second call found the run: the factory was not called


def test_concurrent_ensure_idempotent_callers_get_one_run(queue: RunQueue) -> None:
    service = RunService(queue)
    start = threading.Barrier(4)
    got: list[str] = []

    def caller() -> None:
        start.wait()
        run = service.ensure_idempotent(
            "nightly-42",
            lambda: service.enqueue("report.build", {"day": 42}, idempotency_key="nightly-42"),
        )
        got.append(run.id)

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(got) == 4
    assert len(set(got)) == 1
    assert len(queue.page(RunFilter(idempotency_key="nightly-42"), None, 10)) == 1


def test_a_factory_that_enqueues_without_the_key_is_refused(queue: RunQueue) -> None:
    service = RunService(queue)
    with pytest.raises(UsageError, match="idempotency_key='k-1'"):
        service.ensure_idempotent("k-1", lambda: service.enqueue("email.send", {}))


def test_the_library_functions_take_order_and_ensure_idempotent(tmp_path: Any) -> None:
    import asyncio

    import runce

    config = {"store": f"sqlite:///{tmp_path / 'runce.db'}"}
    first = runce.ensure_idempotent(
        "only-once",
        lambda: runce.enqueue("email.send", {"n": 1}, idempotency_key="only-once", config=config),
        config=config,
    )
    second = runce.enqueue("email.send", {"n": 2}, config=config)
    oldest = runce.list_runs(order="oldest", config=config).runs
    assert [r.id for r in oldest] == [first.id, second.id]
    assert [r.id for r in runce.list_runs(config=config).runs] == [second.id, first.id]

    async def oldest_first() -> list[str]:
        page = await runce.alist_runs(order="oldest", limit=1, config=config)
        return [r.id for r in page.runs]

    assert asyncio.run(oldest_first()) == [first.id]
    again = runce.ensure_idempotent("only-once", lambda: second, config=config)
    assert again.id == first.id
