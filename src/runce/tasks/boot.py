"""Applying pending once tasks when an application starts (docs/once-tasks.md#from-python),
reported through ``logging`` on the ``runce.boot`` logger: what is pending, each task's
outcome with its duration, and on a failure how many tasks were not attempted."""

from __future__ import annotations

import logging

from runce.config import Config
from runce.domain.locks import LockHolder
from runce.tasks.report import RunReport, TaskResult

log = logging.getLogger("runce.boot")

# Outcomes of tasks this boot had to do something about (the rest were applied already).
_PENDING = ("ok", "failed", "skipped", "skipped-by-env", "not-run", "dry-run")


def no_tasks_folder(cfg: Config) -> None:
    log.info("runce: no tasks folder at %s; no once tasks to apply on boot", cfg.tasks_dir)


def pending(count: int, total: int) -> None:
    if count:
        log.info("runce: %d of %d once task(s) pending; applying them", count, total)
    else:
        log.info("runce: all %d once task(s) applied; nothing to do on boot", total)


def finished(report: RunReport) -> None:
    """The summary line; a failure at ERROR, naming the failed tasks."""
    counts = report.counts
    done = sum(counts[outcome] for outcome in _PENDING if outcome != "not-run")
    if report.ok:
        log.info("runce: boot applied %d once task(s) in %d ms", done, report.duration_ms)
        return
    log.error(
        "runce: once tasks did not complete on boot: %s failed, %d not attempted%s",
        ", ".join(r.id for r in report.failed) or "none",
        counts["not-run"],
        f" ({report.lock_lost})" if report.lock_lost else "",
    )


def refused(error: Exception, pending: int) -> None:
    """The summary line when the run stopped before any task ran (the lock still held, a
    drifted or out-of-order task)."""
    log.error("runce: once tasks did not complete on boot: %d not attempted (%s)", pending, error)


class BootLog:
    """A :class:`~runce.tasks.runner.Reporter` writing each task's outcome to the log."""

    def started(self, task_id: str, title: str, note: str | None) -> None:
        log.info("runce: %s (%s) started%s", task_id, title, f"; {note}" if note else "")

    def progress(self, task_id: str, done: int, total: int | None) -> None:
        pass  # a boot log keeps one line per task

    def finished(self, result: TaskResult) -> None:
        if result.outcome not in _PENDING:
            return
        took = f" in {result.duration_ms} ms" if result.duration_ms is not None else ""
        level = logging.ERROR if result.outcome == "failed" else logging.INFO
        error = f": {result.error}" if result.error else ""
        log.log(level, "runce: %s %s%s%s", result.id, result.outcome.upper(), took, error)

    def notice(self, text: str) -> None:
        log.warning("runce: %s", text)

    def waiting(self, holder: LockHolder | None) -> None:
        who = holder.describe() if holder else "another runner"
        log.info("runce: waiting for the once-task lock held by %s", who)
