"""The worker side of the timing protocol: every no-op handler calls :func:`hit` first.

A job carries one float ``t``: the wall-clock time the producer read just before enqueueing
it (latency runs), ``0.0`` (throughput runs) or ``-1.0`` (a warm-up job). The harness and
the worker are on one machine, so ``time.time()`` in both compare directly.

The probe is configured through the environment the harness gives the worker process:
``BENCH_PROBE_OUT`` (where to write), ``BENCH_PROBE_EXPECTED`` (how many real jobs) and
``BENCH_PROBE_LATENCIES=1`` (keep per-job latencies). When the expected count is reached it
writes ``{count, first_start, last_start, latencies}`` to ``BENCH_PROBE_OUT`` atomically; a
warm-up job touches ``BENCH_PROBE_OUT + ".ready"``.
"""

from __future__ import annotations

import json
import os
import threading
import time

WARMUP = -1.0


class Probe:
    def __init__(self) -> None:
        self.out = os.environ.get("BENCH_PROBE_OUT", "")
        self.expected = int(os.environ.get("BENCH_PROBE_EXPECTED", "0"))
        self.keep_latencies = os.environ.get("BENCH_PROBE_LATENCIES") == "1"
        self.count = 0
        self.first_start = 0.0
        self.last_start = 0.0
        # The worker process's CPU time (every thread) at the first and the last start.
        self.first_cpu = 0.0
        self.last_cpu = 0.0
        self.latencies: list[float] = []
        self._lock = threading.Lock()

    def hit(self, t: float) -> None:
        now = time.time()
        if t < 0:
            if self.out:
                with open(self.out + ".ready", "w") as fh:
                    fh.write(repr(now))
            return
        with self._lock:
            self.count += 1
            if self.count == 1:
                self.first_start = now
                self.first_cpu = time.process_time()
            self.last_start = now
            if self.keep_latencies:
                self.latencies.append(now - t)
            complete = self.count == self.expected
        if complete:
            self.last_cpu = time.process_time()
            self._write()

    def _write(self) -> None:
        if not self.out:
            return
        data = {
            "count": self.count,
            "first_start": self.first_start,
            "last_start": self.last_start,
            "cpu_s": self.last_cpu - self.first_cpu,
            "latencies": self.latencies,
        }
        with open(self.out + ".tmp", "w") as fh:
            json.dump(data, fh)
        os.replace(self.out + ".tmp", self.out)


# Made on import: the worker imports its job module after the harness set the environment.
_probe = Probe()


def hit(t: float) -> None:
    """Record that a handler started, for a job enqueued at ``t``."""
    _probe.hit(float(t))
