"""Why a due run waits for a rate, on every store with runs: once its (kind, key)'s bucket is
spent, ``RunService.flow`` says so, with when the next start is due by the store's clock."""

from __future__ import annotations

import re

from runce.domain.runs import ClaimRequest, KindLimit
from runce.runs.events import EventBus
from runce.runs.jobs import Job, JobRegistry
from runce.runs.service import RunService
from runce.stores.queue import RunQueue
from tests.stores.conftest import StoreMaker
from tests.stores.test_queue_contract import _runs, new, qmaker  # noqa: F401 - a fixture

WAITING = re.compile(r"^waiting: rate of customer=acme, 2 per hour, next start in (\d+\.\d) s$")


def _claim(q: RunQueue) -> int:
    limit = KindLimit("rated", rate=2, per=3600.0)
    return len(q.exchange([], ClaimRequest("w1", ("rated",), 10, 30.0, (limit,)))[1])


def test_a_run_held_back_by_a_rate_says_when_it_may_start(qmaker: StoreMaker) -> None:  # noqa: F811
    q = _runs(qmaker.open())
    jobs = JobRegistry()
    jobs.register(Job("rated", lambda p: None, concurrency_key="customer", rate=(2, 3600.0)))
    service = RunService(q, jobs=jobs, bus=EventBus())
    runs = [service.enqueue("rated", {"customer": "acme", "n": n}) for n in range(3)]
    other = service.enqueue("rated", {"customer": "zeta"})
    # Before any start, the bucket is full: nothing waits.
    assert service.flow(runs[2]).waiting is None
    assert service.flow(runs[2]).limit == "rate 2 per 3600 s (burst 2) per customer"
    assert _claim(q) == 3  # acme's burst of 2, and zeta's first
    assert _claim(q) == 0
    status = service.flow(q.get(runs[2].id) or runs[2])
    assert status.waiting is not None
    found = WAITING.match(status.waiting)
    assert found, status.waiting
    # Two starts an hour: the next one of acme is due about 30 minutes from now.
    assert 1700 < float(found.group(1)) <= 1800, status.waiting
    assert service.flow(q.get(other.id) or other).waiting is None  # running, not waiting
