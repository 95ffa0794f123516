"""Whole-process timing of a command: hyperfine when it is installed, else a timing loop.

Either way each command runs ``warmup`` times untimed, then ``runs`` times timed, with its
output discarded; the result is in seconds.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RUNS = int(os.environ.get("BENCH_TIMING_RUNS", "15"))
WARMUP = 2


def time_command(
    cmd: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None, runs: int = RUNS
) -> dict[str, Any]:
    _check_succeeds(cmd, cwd, env)
    if shutil.which("hyperfine"):
        times = _hyperfine(cmd, cwd, env, runs)
        tool = "hyperfine"
    else:
        times = _loop(cmd, cwd, env, runs)
        tool = "loop"
    return {
        "median_s": round(statistics.median(times), 4),
        "mean_s": round(statistics.fmean(times), 4),
        "min_s": round(min(times), 4),
        "stdev_s": round(statistics.stdev(times), 4) if len(times) > 1 else 0.0,
        "timed": len(times),
        "tool": tool,
        "command": shlex.join(cmd),
    }


def _check_succeeds(cmd: Sequence[str], cwd: Path, env: dict[str, str] | None) -> None:
    done = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(cmd)} exited {done.returncode}:\n{done.stdout[-800:]}{done.stderr[-800:]}"
        )


def _hyperfine(cmd: Sequence[str], cwd: Path, env: dict[str, str] | None, runs: int) -> list[float]:
    fd, export = tempfile.mkstemp(prefix="bench-hyperfine-", suffix=".json")
    os.close(fd)
    try:
        subprocess.run(
            [
                "hyperfine",
                "--shell=none",
                "--style=none",
                f"--warmup={WARMUP}",
                f"--runs={runs}",
                f"--export-json={export}",
                shlex.join(cmd),
            ],
            cwd=cwd,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        data = json.loads(Path(export).read_text())
    finally:
        Path(export).unlink(missing_ok=True)
    return [float(t) for t in data["results"][0]["times"]]


def _loop(cmd: Sequence[str], cwd: Path, env: dict[str, str] | None, runs: int) -> list[float]:
    times: list[float] = []
    for i in range(WARMUP + runs):
        began = time.perf_counter()
        subprocess.run(
            list(cmd),
            cwd=cwd,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if i >= WARMUP:
            times.append(time.perf_counter() - began)
    return times
