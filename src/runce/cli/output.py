"""How the CLI shows things: plain lines when piped, live progress on a terminal, or JSON."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

import click

from runce.domain.locks import LockHolder
from runce.tasks.report import RunReport, TaskResult
from runce.tasks.states import BackfillProgress
from runce.timeutil import json_time

LABELS = {
    "ok": "OK",
    "failed": "FAIL",
    "skipped": "SKIP",
    "skipped-by-env": "SKIP",
    "applied": "SKIP",
    "dry-run": "DRY-RUN",
    "not-run": "NOT RUN",
    "not-selected": "-",
    "drifted": "DRIFTED",
    "paused": "PAUSED",
    "canceled": "CANCELED",
}
COLOURS = {
    "OK": "green",
    "FAIL": "red",
    "SKIP": "cyan",
    "DRY-RUN": "yellow",
    "DRIFTED": "red",
    "NOT RUN": "yellow",
    "RUNNING": "yellow",
    "INTERRUPTED": "magenta",
    "FAILED": "red",
    "APPLIED": "green",
    "SKIPPED": "cyan",
    "PENDING": "yellow",
    "MISSING": "magenta",
    "PAUSED": "yellow",
    "CANCELED": "magenta",
}


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=_json_default))


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return json_time(value)
    return str(value)


def styled(label: str, width: int = 0) -> str:
    return click.style(label.ljust(width), fg=COLOURS.get(label), bold=label in {"FAIL", "FAILED"})


def seconds(ms: int | None) -> str:
    if ms is None:
        return ""
    return f"{ms / 1000:.2f}s" if ms < 60_000 else f"{ms / 60_000:.1f}m"


def when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}" if moment else ""


def result_line(result: TaskResult) -> str:
    label = LABELS[result.outcome]
    parts = [styled(label, 8), result.id]
    detail = {
        "applied": "applied",
        "skipped": "already done",
        "skipped-by-env": result.note or "",
        "not-selected": "not selected",
    }.get(result.outcome)
    if result.duration_ms is not None and result.outcome in ("ok", "failed"):
        parts.append(f"({seconds(result.duration_ms)})")
    if detail:
        parts.append(f"({detail})")
    if result.note and result.outcome in (
        "ok",
        "failed",
        "dry-run",
        "not-run",
        "paused",
        "canceled",
    ):
        parts.append(f"[{result.note}]")
    if result.error:
        parts.append(f"\n         {click.style(result.error, fg='red')}")
    return " ".join(parts)


def summary_line(report: RunReport) -> str:
    counts = report.counts
    parts = [
        f"{counts[k]} {name}"
        for k, name in (
            ("ok", "ran"),
            ("failed", "failed"),
            ("skipped", "already done"),
            ("skipped-by-env", "skipped by env"),
            ("applied", "already applied"),
            ("dry-run", "would run"),
            ("not-run", "not attempted"),
            ("not-selected", "not selected"),
            ("drifted", "drifted"),
            ("paused", "paused"),
            ("canceled", "canceled"),
        )
        if counts[k]
    ]
    verdict = "dry run" if report.dry_run else ("done" if report.ok else "stopped")
    return f"{verdict}: {', '.join(parts) or 'no tasks'} in {seconds(report.duration_ms)}"


def backfill_progress(progress: BackfillProgress) -> str:
    """``12,000/100,000 (12%) 850/s ETA 1m46s``: what a backfill has done and has left."""
    if progress.total:
        share = min(100.0, 100 * progress.done / progress.total)
        parts = [f"{progress.done:,}/{progress.total:,} ({share:.0f}%)"]
    else:
        parts = [f"{progress.done:,} done"]
    if progress.ranges > 1:
        parts.append(f"{progress.finished_ranges}/{progress.ranges} ranges finished")
    if len(progress.held) > 1:
        parts.append(f"shared by {len(progress.held)} processes")
    if progress.rate and progress.moving:
        parts.append(f"{progress.rate:,.0f}/s")
    eta = progress.eta_seconds
    if eta is not None and progress.done < (progress.total or 0):
        parts.append(f"ETA {duration(eta)}")
    return " ".join(parts)


def duration(secs: float) -> str:
    secs = round(secs)
    if secs < 60:
        return f"{secs}s"
    if secs < 3600:
        return f"{secs // 60}m{secs % 60:02d}s"
    return f"{secs // 3600}h{secs % 3600 // 60:02d}m"


def holder_line(holder: LockHolder | None) -> str:
    if holder is None:
        return "lock: free"
    state = {"live": "held", "expired": "expired, left", "dead": "left by a dead process,"}[
        holder.state
    ]
    return f"lock: {state} by {holder.describe()}"


def holder_dict(holder: LockHolder | None) -> dict[str, Any] | None:
    """The lock's holder as ``status --json`` shows it (None when the lock is free)."""
    if holder is None:
        return None
    return {
        "owner": holder.owner,
        "host": holder.host,
        "pid": holder.pid,
        "since": json_time(holder.since) if holder.since else None,
        "state": holder.state,
    }


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> None:
    """Columns padded to fit; the first column coloured as a state label."""
    if not rows:
        return
    widths = [max(len(h), *(len(_plain(r[i])) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    labels: dict[str, str] = {}  # a thousand rows have a handful of states: style each once
    for row in rows:
        label = labels.get(row[0])
        if label is None:
            label = labels[row[0]] = styled(row[0], widths[0])
        cells = [label] + [c.ljust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    click.echo("\n".join(lines))  # one write, not one per row


def _plain(text: str) -> str:
    return click.unstyle(text) if "\x1b" in text else text


class PlainReporter:
    """One line per finished task; for pipes, logs and CI."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._mutex = threading.RLock()

    def started(self, task_id: str, title: str, note: str | None) -> None:
        if note and note.startswith("re-run"):
            self._echo(f"{styled('RERUN', 8)} {task_id} ({note})")

    def progress(self, task_id: str, done: int, total: int | None) -> None:
        pass

    def finished(self, result: TaskResult) -> None:
        self._echo(result_line(result))

    def notice(self, text: str) -> None:
        self._echo(click.style(text, fg="yellow"), err=True)

    def waiting(self, holder: LockHolder | None) -> None:
        who = holder.describe() if holder else "another runner"
        self._echo(f"waiting for the lock held by {who}", err=True)

    def _echo(self, text: str, err: bool = False) -> None:
        with self._mutex:
            click.echo(text, file=self._stream, err=err)


class LiveReporter(PlainReporter):
    """On a terminal: a live line per running task with its progress bar."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._console = Console(highlight=False)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:g}/{task.fields[total_text]}"),
            TimeElapsedColumn(),
            console=self._console,
            transient=True,
        )
        self._bars: dict[str, Any] = {}

    def __enter__(self) -> LiveReporter:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def started(self, task_id: str, title: str, note: str | None) -> None:
        super().started(task_id, title, note)
        with self._mutex:
            self._bars[task_id] = self._progress.add_task(task_id, total=None, total_text="?")

    def progress(self, task_id: str, done: int, total: int | None) -> None:
        with self._mutex:
            bar = self._bars.get(task_id)
            if bar is not None:
                text = str(total) if total is not None else "?"
                self._progress.update(bar, completed=done, total=total, total_text=text)

    def finished(self, result: TaskResult) -> None:
        with self._mutex:
            bar = self._bars.pop(result.id, None)
            if bar is not None:
                self._progress.remove_task(bar)
        super().finished(result)

    def _echo(self, text: str, err: bool = False) -> None:
        with self._mutex:
            self._progress.console.print(
                text if not _has_ansi(text) else _ansi(text), highlight=False
            )


def _has_ansi(text: str) -> bool:
    return "\x1b[" in text


def _ansi(text: str) -> Any:
    from rich.text import Text

    return Text.from_ansi(text)


def is_terminal() -> bool:
    return sys.stdout.isatty()
