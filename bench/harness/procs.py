"""The harness side of a worker process: start it, watch its probe, read its memory, stop it.

A worker is the library's own command, started in a session of its own so that stopping it
reaches the children it may have made (signals go to its process group, whose id is the pid
we were given; nothing else is touched).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
KEEP_LOGS = os.environ.get("BENCH_KEEP_LOGS") == "1"


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    out: str  # the probe's result file
    log: str
    spawned_at: float  # time.time() just before the process was started

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ready_file(self) -> str:
        return self.out + ".ready"

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "".join(Path(self.log).read_text(errors="replace").splitlines(True)[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"worker exited with status {self.proc.returncode}:\n{self.log_tail()}"
            )


def harness_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a worker: ``bench/`` importable, unbuffered, plus ``extra``."""
    env = dict(os.environ)
    paths = [str(BENCH_DIR)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def start_worker(
    cmd: Sequence[str],
    *,
    expected: int,
    latencies: bool = False,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
) -> WorkerProcess:
    fd, out = tempfile.mkstemp(prefix="bench-probe-", suffix=".json")
    os.close(fd)
    os.unlink(out)  # the probe creates it when done
    log = out.removesuffix(".json") + ".log"
    probe_env = {
        "BENCH_PROBE_OUT": out,
        "BENCH_PROBE_EXPECTED": str(expected),
        "BENCH_PROBE_LATENCIES": "1" if latencies else "0",
    }
    with open(log, "wb") as logfh:
        spawned_at = time.time()
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=harness_env({**(env or {}), **probe_env}),
            stdout=logfh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return WorkerProcess(proc, out, log, spawned_at)


def stop_worker(worker: WorkerProcess, grace: float = 15.0) -> None:
    """SIGTERM to the worker's own process group, SIGKILL after ``grace`` seconds."""
    if worker.proc.poll() is None:
        _signal_group(worker.pid, signal.SIGTERM)
        try:
            worker.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(worker.pid, signal.SIGKILL)
            worker.proc.wait(timeout=5)
    leftovers = [worker.out, worker.out + ".tmp", worker.ready_file]
    if not KEEP_LOGS:
        leftovers.append(worker.log)
    for path in leftovers:
        Path(path).unlink(missing_ok=True)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def wait_for_file(worker: WorkerProcess, path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        worker.check_alive()
        time.sleep(0.002)
    return False


def probe_result(worker: WorkerProcess, timeout: float) -> dict[str, object]:
    """The probe's file, once every expected job has started."""
    if not wait_for_file(worker, worker.out, timeout):
        raise TimeoutError(f"the worker did not finish within {timeout:g}s:\n{worker.log_tail()}")
    with open(worker.out) as fh:
        data: dict[str, object] = json.load(fh)
    return data


def warm_up(worker: WorkerProcess, send: Callable[[], object], timeout: float = 60.0) -> float:
    """Send warm-up jobs until the worker has run one; seconds since it was spawned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        send()
        if wait_for_file(worker, worker.ready_file, 2.0):
            return time.time() - worker.spawned_at
    raise TimeoutError(f"the worker never ran a warm-up job:\n{worker.log_tail()}")


async def warm_up_async(
    worker: WorkerProcess, send: Callable[[], Awaitable[object]], timeout: float = 60.0
) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await send()
        until = time.monotonic() + 2.0
        while time.monotonic() < until:
            if os.path.exists(worker.ready_file):
                return time.time() - worker.spawned_at
            worker.check_alive()
            await asyncio.sleep(0.002)
    raise TimeoutError(f"the worker never ran a warm-up job:\n{worker.log_tail()}")


def wait_drained(unfinished: Callable[[], int], timeout: float = 120.0) -> float:
    """Poll ``unfinished()`` (runs not yet acknowledged) until 0; the time.time() it was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if unfinished() == 0:
            return time.time()
        time.sleep(0.002)
    raise TimeoutError(f"runs were still unfinished after {timeout:g}s")


async def wait_drained_async(
    unfinished: Callable[[], Awaitable[int]], timeout: float = 120.0
) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await unfinished() == 0:
            return time.time()
        await asyncio.sleep(0.002)
    raise TimeoutError(f"runs were still unfinished after {timeout:g}s")


def rss_kib(pid: int) -> int:
    """Resident memory of one process (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def tree_rss_kib(pid: int) -> int:
    """RSS of a process and its direct children (a consumer may fork workers)."""
    total = rss_kib(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        with contextlib.suppress(OSError, RuntimeError):
            total += rss_kib(int(child))
    return total


def idle_rss_kib(worker: WorkerProcess, settle: float = 1.0) -> int:
    """RSS once the warmed worker has sat idle for ``settle`` seconds."""
    time.sleep(settle)
    worker.check_alive()
    return tree_rss_kib(worker.pid)
