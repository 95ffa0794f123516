"""What a run did, task by task: what the CLI prints and ``run_tasks`` returns."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal[
    "ok",  # ran and succeeded
    "failed",  # ran and raised
    "skipped",  # already_done() said the work was done; now applied
    "skipped-by-env",  # RUNCE_SKIP_<ID>=1; stays pending
    "applied",  # applied before this run
    "dry-run",  # would run
    "not-run",  # not attempted: an earlier task failed, or the lock was lost
    "not-selected",  # outside --only/--since/--until
    "drifted",  # applied, file changed, on_drift = "warn"
    "paused",  # a backfill asked to pause: stopped at a batch boundary, or not started
    "canceled",  # a backfill asked to cancel: stopped at a batch boundary, or not started
]


@dataclass(frozen=True, slots=True)
class TaskResult:
    id: str
    outcome: Outcome
    title: str | None = None
    duration_ms: int | None = None
    error: str | None = None
    note: str | None = None  # e.g. "re-run: the previous attempt was interrupted"

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "outcome": self.outcome,
            "title": self.title,
            "duration_ms": self.duration_ms,
            "error": self.error,
            "note": self.note,
        }


@dataclass
class RunReport:
    store: str
    dry_run: bool = False
    results: list[TaskResult] = field(default_factory=list)
    duration_ms: int = 0
    lock_lost: str | None = None

    @property
    def counts(self) -> Counter[str]:
        return Counter(result.outcome for result in self.results)

    @property
    def failed(self) -> list[TaskResult]:
        return [r for r in self.results if r.outcome == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed and self.lock_lost is None

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def result(self, task_id: str) -> TaskResult:
        return next(r for r in self.results if r.id == task_id)

    def to_dict(self) -> dict[str, object]:
        return {
            "store": self.store,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "duration_ms": self.duration_ms,
            "lock_lost": self.lock_lost,
            # outcomes as snake_case keys, like every key of runce's JSON (not-run: not_run)
            "counts": {k.replace("-", "_"): n for k, n in sorted(self.counts.items())},
            "tasks": [r.to_dict() for r in self.results],
        }
