"""What a flow-control limit that never binds costs the processing of runs.

Run from the repository's root with runce's environment::

    .venv/bin/python bench/flow_limits.py                      # SQLite, 10,000 runs, 3 rounds
    .venv/bin/python bench/flow_limits.py --store postgres --runs 20000 --rounds 5

Each round enqueues the runs (untimed), then times one worker (concurrency 10, in this
process, until the queue is drained) over them, for a no-op job without limits and for the
same job declared with ``concurrency=10000`` (a limit that never binds), one after the
other in an order that alternates from round to round, so both see the same machine.
Prints the median runs/s of each and their ratio (the promise: at least 90%), and the
median CPU time of this process (every thread: the worker's) per run, which moves much less
than runs/s when the machine is loaded. PostgreSQL: ``RUNCE_TEST_POSTGRES_URL`` as the test
suite reads it (default the local server); each round uses a schema of its own, dropped
afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runce.runs.events import EventBus
from runce.runs.jobs import Job, JobRegistry
from runce.runs.service import RunService
from runce.runs.worker import Worker, WorkerOptions
from runce.stores.base import StoreSpec
from runce.stores.registry import open_store


def _noop(params: Any) -> None:
    return None


def _round(store_kind: str, runs: int, limited: bool, folder: Path) -> tuple[float, float]:
    """Runs per second, and CPU seconds per run."""
    jobs = JobRegistry()
    jobs.register(Job("bench.noop", _noop, concurrency=10_000 if limited else None))
    cleanup = None
    if store_kind == "postgres":
        from tests import services

        url = services.postgres_url()
        schema = f"runce_bench_{uuid.uuid4().hex[:10]}"
        spec = StoreSpec(type="postgresql", url=url, schema=schema)

        def cleanup() -> None:
            services.drop_schema(url, schema)

    else:
        spec = StoreSpec(type="sqlite", url=f"sqlite:///{uuid.uuid4().hex}.db", base_dir=folder)
    store = open_store(spec)
    try:
        queue = store.runs  # type: ignore[attr-defined]
        service = RunService(queue, jobs=jobs, bus=EventBus())
        for start in range(0, runs, 1000):
            service.enqueue_many("bench.noop", [{"i": i} for i in range(start, start + 1000)])
        options = WorkerOptions(concurrency=10, drain=True, poll=0.05, lease=30)
        worker = Worker(queue, options, jobs=jobs, bus=EventBus())
        began, cpu = time.perf_counter(), time.process_time()
        worker.run()
        seconds = time.perf_counter() - began
        cpu = time.process_time() - cpu
        assert worker.summary.succeeded == runs, worker.summary
        return runs / seconds, cpu / runs
    finally:
        store.close()
        if cleanup is not None:
            cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    figures: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(
        prefix="runce-flow-bench-", ignore_cleanup_errors=True
    ) as folder:
        for number in range(args.rounds):
            for limited in (False, True) if number % 2 == 0 else (True, False):
                figures[limited].append(_round(args.store, args.runs, limited, Path(folder)))
    plain = [rate for rate, _ in figures[False]]
    limited = [rate for rate, _ in figures[True]]
    none, bound = statistics.median(plain), statistics.median(limited)
    cpu_none = statistics.median(cpu for _, cpu in figures[False]) * 1e6
    cpu_bound = statistics.median(cpu for _, cpu in figures[True]) * 1e6
    print(
        f"{args.store}, {args.runs:,} no-op runs, 1 worker at concurrency 10, {args.rounds} rounds"
    )
    print(f"  no limit:                      {none:9.0f} runs/s  {[round(x) for x in plain]}")
    print(f"  concurrency=10000 (never binds): {bound:7.0f} runs/s  {[round(x) for x in limited]}")
    print(f"  ratio: {bound / none:.1%} (the promise: at least 90%)")
    print(
        f"  CPU per run: {cpu_none:.0f} us without a limit, {cpu_bound:.0f} us with one "
        f"(ratio {cpu_none / cpu_bound:.1%})"
    )
    return 0 if bound / none >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
