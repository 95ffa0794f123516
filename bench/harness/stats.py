"""Small statistics: percentiles, medians of result dicts, pacing, the standard results."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median_result(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric field's median over the runs, independently; other fields from run 1."""
    merged: dict[str, Any] = {}
    for key, first in samples[0].items():
        values = [s.get(key) for s in samples]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            middle = statistics.median(values)
            merged[key] = round(middle, 4) if isinstance(middle, float) else middle
        else:
            merged[key] = first
    return merged


class Pacer:
    """Open loop: the i-th send is due at start + i / rate, however late the previous was."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.start = time.perf_counter()
        self.sent = 0

    def delay(self) -> float:
        due = self.start + self.sent * self.interval
        self.sent += 1
        return max(0.0, due - time.perf_counter())

    def wait(self) -> None:
        pause = self.delay()
        if pause > 0:
            time.sleep(pause)


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("inf")


def enqueue_result(count: int, seconds: float, batch: int) -> dict[str, Any]:
    return {
        "runs": count,
        "runs_per_s": rate(count, seconds),
        "seconds": round(seconds, 4),
        "batch": batch,
    }


def process_result(
    count: int, probe: dict[str, Any], acknowledged_at: float, spawned_at: float
) -> dict[str, Any]:
    """``runs_per_s``: count / (all acknowledged in the database - first handler start)."""
    if probe.get("count") != count:
        raise RuntimeError(f"the worker started {probe.get('count')} runs, expected {count}")
    first, last = float(probe["first_start"]), float(probe["last_start"])
    steady = acknowledged_at - first
    # CPU the worker process spent per run while starting them (all its threads): what a run
    # costs, whatever else the machine runs; throughput alone swings with the load.
    cpu = probe.get("cpu_s")
    per_run = {"cpu_us_per_run": round(float(cpu) / count * 1e6, 1)} if cpu else {}
    return {
        **per_run,
        "runs": count,
        "runs_per_s": rate(count, steady),
        "seconds": round(steady, 4),
        "handler_runs_per_s": rate(count, last - first),
        "wall_runs_per_s": rate(count, acknowledged_at - spawned_at),
        "startup_s": round(first - spawned_at, 3),
        "ack_tail_s": round(acknowledged_at - last, 4),
    }


def latency_result(
    count: int, probe: dict[str, Any], enqueue_seconds: float, ready_s: float
) -> dict[str, Any]:
    lat_ms = [x * 1000.0 for x in probe.get("latencies", [])]
    if len(lat_ms) != count:
        raise RuntimeError(f"{len(lat_ms)} latencies recorded, expected {count}")
    return {
        "runs": count,
        "achieved_rate": rate(count, enqueue_seconds),
        "worker_ready_s": round(ready_s, 3),
        "p50_ms": round(percentile(lat_ms, 0.50), 3),
        "p90_ms": round(percentile(lat_ms, 0.90), 3),
        "p99_ms": round(percentile(lat_ms, 0.99), 3),
        "max_ms": round(max(lat_ms), 3),
        "mean_ms": round(statistics.fmean(lat_ms), 3),
    }
