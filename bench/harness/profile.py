"""Where runce's time goes: py-spy on the worker, the producer and the once-task commands.

    bench/profile [worker-sqlite worker-postgres enqueue-sqlite enqueue-postgres once-run
                   once-status] [--runs N]

Runs in runce's venv with py-spy from ``bench/.venv-peers``, sampling without pausing the
process (``--nonblocking``). Two views:

* ``cpu``: every thread, only while it holds the GIL (``--gil``): where the interpreter's
  time goes, which bounds a Python worker on a small machine;
* ``wall``: the main thread only, running or waiting (``--idle``): for the worker's loop
  and the producer, how a round trip splits between Python and waiting on the database.

Each view's collapsed stacks go to ``bench/results/profiles/<target>.<view>.txt``
(speedscope and ``flamegraph.pl`` read them); the summary lists the functions holding the
most samples, by own time and by total time (own plus callees).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from harness import procs
from harness.adapters import runce_once, runce_postgres, runce_queue, runce_sqlite
from harness.workload import Workload

BENCH_DIR = Path(__file__).resolve().parent.parent
PY_SPY = BENCH_DIR / ".venv-peers" / "bin" / "py-spy"
OUT_DIR = BENCH_DIR / "results" / "profiles"
RATE = 250  # samples per second
COMMAND_RATE = 1000  # for the short once-task commands, each recorded REPEAT times
REPEAT = 20
VIEWS = {"cpu": "--gil", "wall": "--idle"}
BACKENDS = {"sqlite": runce_sqlite.BACKEND_HOOKS, "postgres": runce_postgres.BACKEND_HOOKS}
ENQUEUE_LOOP = (
    "import time, runce\n"
    "runce.enqueue('bench.noop', {'t': 0.0})\n"
    "for _ in range(N):\n"
    "    runce.enqueue('bench.noop', {'t': 0.0})\n"
)


def spy(out: Path, view: str, rate: int = RATE) -> list[str]:
    return [str(PY_SPY), "record", "--rate", str(rate), "--format", "raw", "--output",
            str(out), "--threads", "--nonblocking", VIEWS[view]]  # fmt: skip


def record_attached(pid: int, out: Path, view: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*spy(out, view), "--pid", str(pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def record_command(cmd: list[str], out: Path, cwd: Path, view: str, rate: int = RATE) -> None:
    subprocess.run(
        [*spy(out, view, rate), "--", *cmd],
        cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=procs.harness_env(),
    )  # fmt: skip


def profile_worker(backend_name: str, runs: int, out: Path, view: str) -> None:
    backend = BACKENDS[backend_name]
    runce_queue.open_project(backend)
    runce = runce_queue.fresh(backend)
    runce_queue.prefill(backend, runce, runs)
    worker = runce_queue.start_worker(backend, Workload(), runs)
    recorder = record_attached(worker.pid, out, view)
    try:
        procs.probe_result(worker, timeout=600)
        procs.wait_drained(backend.unfinished)
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)
        procs.stop_worker(worker)


def profile_enqueue(backend_name: str, runs: int, out: Path, view: str) -> None:
    backend = BACKENDS[backend_name]
    root = runce_queue.open_project(backend)
    runce_queue.fresh(backend)
    code = ENQUEUE_LOOP.replace("N", str(runs))
    record_command([sys.executable, "-c", code], out, root, view)


def profile_once(command: str, out: Path, view: str) -> None:
    root = runce_once.project(Workload().tasks)
    parts: list[str] = []
    for i in range(REPEAT):
        one = out.with_suffix(f".{i}.txt")
        record_command([runce_once.runce_path(), command], one, root, view, COMMAND_RATE)
        parts.append(one.read_text())
        one.unlink()
    out.write_text("".join(parts))


def summarize(path: Path, top: int, main_only: bool, rate: int = RATE) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        thread, *rest = stack.split(";")
        if main_only and not thread.endswith("MainThread"):
            continue
        frames = [_short(f) for f in rest]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    who = "the main thread, running or waiting" if main_only else "threads holding the GIL"
    lines = [f"{path.name}: {samples} samples at {rate}/s of {who}"]
    for title, counter in (("own time", own), ("total time", total)):
        lines.append(f"  by {title}:")
        for frame, count in counter.most_common(top):
            lines.append(f"    {100 * count / samples:5.1f}%  {frame}")
    return "\n".join(lines)


def _short(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``func (module.py)``: lines merged."""
    name, _, where = frame.partition(" (")
    file_name = where.rsplit(":", 1)[0].rsplit("/", 1)[-1].rstrip(")")
    return f"{name} ({file_name})" if file_name else name


Profile = Callable[[int, Path, str], None]
TARGETS: dict[str, tuple[Profile, tuple[str, ...]]] = {
    "worker-sqlite": (lambda n, out, v: profile_worker("sqlite", n, out, v), ("cpu", "wall")),
    "worker-postgres": (lambda n, out, v: profile_worker("postgres", n, out, v), ("cpu", "wall")),
    "enqueue-sqlite": (lambda n, out, v: profile_enqueue("sqlite", n // 5, out, v), ("wall",)),
    "enqueue-postgres": (lambda n, out, v: profile_enqueue("postgres", n // 5, out, v), ("wall",)),
    "once-run": (lambda n, out, v: profile_once("run", out, v), ("wall",)),
    "once-status": (lambda n, out, v: profile_once("status", out, v), ("wall",)),
}


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/profile", description=__doc__.split("\n")[0])
    ap.add_argument("targets", nargs="*", default=list(TARGETS), help=", ".join(TARGETS))
    ap.add_argument("--runs", type=int, default=50_000, help="runs for the worker targets")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    if not PY_SPY.exists():
        print("py-spy is missing: run bash bench/setup", file=sys.stderr)
        return 2
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for target in args.targets:
        profile, views = TARGETS[target]
        for view in views:
            out = OUT_DIR / f"{target}.{view}.txt"
            began = time.monotonic()
            profile(args.runs, out, view)
            rate = COMMAND_RATE if target.startswith("once") else RATE
            print(summarize(out, args.top, main_only=view == "wall", rate=rate))
            took = time.monotonic() - began
            print(f"  ({took:.1f} s; stacks in {os.path.relpath(out, BENCH_DIR)})\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
