"""The workloads' parameters, shared by the runner and every adapter."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

# Where generated projects, databases and migration folders live (not in the repository).
WORK_DIR = Path(os.environ.get("BENCH_WORK_DIR", "/tmp/runce-bench"))


@dataclass(frozen=True)
class Workload:
    jobs: int = 10_000  # enqueue and process
    batch: int = 1_000  # batched enqueue
    concurrency: int = 10  # the worker's
    rate: float = 200.0  # latency: runs per second, open loop
    duration: float = 10.0  # latency: seconds
    memory_jobs: int = 100_000  # RSS growth
    tasks: int = 1_000  # once tasks, Alembic revisions, yoyo migrations

    @property
    def latency_jobs(self) -> int:
        return int(self.rate * self.duration)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Workload:
        return cls(**json.loads(text))


def pg_dsn() -> str:
    return os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/bench")


def work_dir(name: str) -> Path:
    path = WORK_DIR / name
    path.mkdir(parents=True, exist_ok=True)
    return path
