"""runce's job queue under the bench workloads, whatever the store; see runce_sqlite/_postgres.

The producer is this process, through the public API exactly as the README shows it
(``runce.enqueue`` / ``runce.enqueue_many`` with the configuration found from the current
directory); the worker is ``runce worker --concurrency C`` in a process of its own, started
in the same project directory, at the default settings (its INFO line per run included).
Variants (``Backend.variant``): ``tuned`` adds ``--log-level warning``; ``observed`` serves
``--metrics-port`` and records every span with OpenTelemetry's SDK, in the worker and the
producer (``BENCH_RUNCE_OBSERVE=1`` turns that on for every runce subject).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import procs, stats
from harness.workload import Workload, work_dir

KIND = "bench.noop"
# BENCH_RUNCE_OBSERVE=1: the worker serves --metrics-port and both processes record spans.
OBSERVE = os.environ.get("BENCH_RUNCE_OBSERVE") == "1"
PREFILL_BATCH = 1_000


def observed_worker() -> str:
    """How an observed worker runs, for a results file's settings: its sampling included."""
    ratio = os.environ.get("BENCH_RUNCE_TRACE_RATIO")
    spans = (
        f"OpenTelemetry SDK sampling ParentBased(TraceIdRatioBased({ratio}))"
        if ratio
        else "OpenTelemetry SDK recording every span"
    )
    return f"runce worker --concurrency C --metrics-port P, {spans}"


@dataclass
class Backend:
    """What differs between stores: where the project lives and how to look at its tables."""

    project: str  # folder under the bench's work dir
    store_url: str
    clear: Callable[[], None]  # empty the runs tables (the schema exists by then)
    unfinished: Callable[[], int]  # runs queued or running
    settings: str = ""  # more top-level lines for runce.toml
    analyze: Callable[[], None] = lambda: None  # fresh statistics after a prefill
    variant: str = "default"  # "default", "tuned" (--log-level warning) or "observed"

    @property
    def observed(self) -> bool:
        return OBSERVE or self.variant == "observed"

    @property
    def handlers(self) -> str:
        return "harness.jobs.runce_observed" if self.observed else "harness.jobs.runce_noop"


def open_project(backend: Backend) -> Path:
    """Write the project's runce.toml and make it the current directory, as an app would be."""
    root = work_dir(backend.project)
    (root / "runce.toml").write_text(
        f'store = "{backend.store_url}"\n{backend.settings}\n'
        f'[worker]\nhandlers = ["{backend.handlers}"]\n'
    )
    os.chdir(root)
    for name in [n for n in os.environ if n.startswith("RUNCE_")]:
        del os.environ[name]  # the file decides, not the caller's environment
    return root


def fresh(backend: Backend) -> Any:
    """Empty queue tables and a warm producer: one enqueue creates the schema if missing."""
    import runce

    if backend.observed:
        from harness.jobs.runce_observed import install_tracing

        install_tracing()
    runce.enqueue(KIND, {"t": 0.0})
    backend.clear()
    return runce


def worker_cmd(backend: Backend, concurrency: int) -> list[str]:
    runce_cmd = str(Path(sys.executable).parent / "runce")
    command = [runce_cmd, "worker", "--concurrency", str(concurrency)]
    if backend.variant == "tuned":
        command += ["--log-level", "warning"]
    if backend.observed and os.environ.get("BENCH_RUNCE_OBSERVE_ONLY") != "tracing":
        command += ["--metrics-port", str(_free_port())]
    return command


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_worker(
    backend: Backend, w: Workload, expected: int, latencies: bool = False
) -> procs.WorkerProcess:
    root = work_dir(backend.project)
    return procs.start_worker(
        worker_cmd(backend, w.concurrency), expected=expected, latencies=latencies, cwd=root
    )


def prefill(backend: Backend, runce: Any, count: int) -> None:
    for start in range(0, count, PREFILL_BATCH):
        size = min(PREFILL_BATCH, count - start)
        runce.enqueue_many(KIND, [{"t": 0.0}] * size)
    backend.analyze()


# -- the measurements ------------------------------------------------------------------------


def enqueue_single(backend: Backend, w: Workload) -> dict[str, Any]:
    runce = fresh(backend)
    began = time.perf_counter()
    for _ in range(w.jobs):
        runce.enqueue(KIND, {"t": 0.0})
    took = time.perf_counter() - began
    expect_queued(backend, w.jobs)
    return stats.enqueue_result(w.jobs, took, 1)


def enqueue_batched(backend: Backend, w: Workload) -> dict[str, Any]:
    runce = fresh(backend)
    inputs = [{"t": 0.0}] * w.batch
    began = time.perf_counter()
    for start in range(0, w.jobs, w.batch):
        runce.enqueue_many(KIND, inputs[: min(w.batch, w.jobs - start)])
    took = time.perf_counter() - began
    expect_queued(backend, w.jobs)
    return stats.enqueue_result(w.jobs, took, w.batch)


def process(backend: Backend, w: Workload) -> dict[str, Any]:
    runce = fresh(backend)
    prefill(backend, runce, w.jobs)
    worker = start_worker(backend, w, w.jobs)
    try:
        probe = procs.probe_result(worker, timeout=300)
        acknowledged = procs.wait_drained(backend.unfinished)
    finally:
        procs.stop_worker(worker)
    return {
        **stats.process_result(w.jobs, probe, acknowledged, worker.spawned_at),
        "concurrency": w.concurrency,
    }


def latency(backend: Backend, w: Workload) -> dict[str, Any]:
    runce = fresh(backend)
    count = w.latency_jobs
    worker = start_worker(backend, w, count, latencies=True)
    try:
        ready = procs.warm_up(worker, lambda: runce.enqueue(KIND, {"t": -1.0}))
        idle_rss = procs.idle_rss_kib(worker)
        pacer = stats.Pacer(w.rate)
        began = time.perf_counter()
        for _ in range(count):
            pacer.wait()
            runce.enqueue(KIND, {"t": time.time()})
        took = time.perf_counter() - began
        probe = procs.probe_result(worker, timeout=120)
        busy_rss = procs.rss_kib(worker.pid)
    finally:
        procs.stop_worker(worker)
    result = stats.latency_result(count, probe, took, ready)
    return {
        **result,
        "idle_rss_mib": round(idle_rss / 1024, 1),
        "rss_after_mib": round(busy_rss / 1024, 1),
    }


def memory(backend: Backend, w: Workload) -> dict[str, Any]:
    """RSS while one worker processes ``memory_jobs`` runs: at the start, a tenth of the way,
    at the end and after a second idle. Growth is end minus the tenth (caches and thread
    stacks settle in the first runs)."""
    runce = fresh(backend)
    prefill(backend, runce, w.memory_jobs)
    worker = start_worker(backend, w, w.memory_jobs)
    samples: list[tuple[float, int]] = []
    done = threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(worker, samples, done), daemon=True)
    sampler.start()
    try:
        probe = procs.probe_result(worker, timeout=900)
        acknowledged = procs.wait_drained(backend.unfinished, timeout=300)
        done.set()
        sampler.join()
        end_rss = procs.rss_kib(worker.pid)
        idle_rss = procs.idle_rss_kib(worker)
    finally:
        done.set()
        procs.stop_worker(worker)
    first = float(probe["first_start"])
    tenth = first + (acknowledged - first) / 10
    start_rss = _rss_at(samples, first)
    tenth_rss = _rss_at(samples, tenth)
    return {
        "runs": w.memory_jobs,
        "runs_per_s": stats.rate(w.memory_jobs, acknowledged - first),
        "rss_start_mib": round(start_rss / 1024, 1),
        "rss_tenth_mib": round(tenth_rss / 1024, 1),
        "rss_end_mib": round(end_rss / 1024, 1),
        "rss_idle_after_mib": round(idle_rss / 1024, 1),
        "growth_mib": round((end_rss - tenth_rss) / 1024, 1),
        "growth_from_start_mib": round((end_rss - start_rss) / 1024, 1),
        "samples": len(samples),
    }


def _sample_rss(
    worker: procs.WorkerProcess, samples: list[tuple[float, int]], done: threading.Event
) -> None:
    while not done.is_set():
        try:
            samples.append((time.time(), procs.rss_kib(worker.pid)))
        except (OSError, RuntimeError):
            return
        done.wait(0.05)


def _rss_at(samples: list[tuple[float, int]], when: float) -> int:
    """The first sample taken at or after ``when`` (the last one if none is)."""
    for taken, rss in samples:
        if taken >= when:
            return rss
    return samples[-1][1]


def expect_queued(backend: Backend, count: int) -> None:
    got = backend.unfinished()
    if got != count:
        raise RuntimeError(f"{got} runs queued, expected {count}")
