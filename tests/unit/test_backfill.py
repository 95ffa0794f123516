"""Backfills in-process (T-12): batches, checkpoints, resuming, pausing, pace, parallel ranges."""

from __future__ import annotations

from pathlib import Path

import pytest

import runce
from runce.stores.registry import open_store
from runce.tasks import library
from runce.tasks.backfilling import Pace
from tests.unit.conftest import Project


class Notices:
    """A reporter that keeps the notices a run prints."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def started(self, task_id: str, title: str, note: str | None) -> None: ...

    def progress(self, task_id: str, done: int, total: int | None) -> None: ...

    def finished(self, result: runce.TaskResult) -> None: ...

    def waiting(self, holder: object) -> None: ...

    def notice(self, text: str) -> None:
        self.lines.append(text)


def _backfill(
    project: Project, task_id: str, count: int, *, hook: str = "", options: str = ""
) -> Path:
    """A backfill over the numbers 0..count-1 that logs each number it processes."""
    log = project.root / f"{task_id}.log"
    project.task(
        task_id,
        f"""
        import json, os
        N = {count}
        LOG = {str(log)!r}

        def fetch(ctx, cursor, size):
            start = cursor or 0
            batch = list(range(start, min(start + size, N)))
            following = start + len(batch)
            return batch, (following if following < N else None)

        def process(ctx, batch):
            with open(LOG, "a") as f:
                f.write("".join(f"{{i}}\\n" for i in batch))
            {hook}

        task = runce.Backfill(
            title="fill", fetch=fetch, process=process, batch_size=4, total=lambda ctx: N,
            {options}
        )
        """,
    )
    return log


def _numbers(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def _request(project: Project, task_id: str, command: str | None) -> None:
    store = open_store(project.config().store)
    try:
        store.tracker.set_control(task_id, command, "tester")  # type: ignore[arg-type]
    finally:
        store.close()


def test_a_backfill_works_through_every_batch_and_is_applied(project: Project) -> None:
    log = _backfill(project, "1.fill", 10)
    report = project.run()
    assert report.ok
    result = report.result("1.fill")
    assert result.outcome == "ok"
    assert result.note == "10 of 10 done"
    assert _numbers(log) == list(range(10))
    assert project.states() == {"1.fill": "APPLIED"}
    [status] = runce.task_status(project.config()).tasks
    assert status.backfill is not None
    assert (status.backfill.done, status.backfill.total, status.backfill.finished_ranges) == (
        10,
        10,
        1,
    )


def test_a_failed_backfill_resumes_from_its_last_checkpoint(project: Project) -> None:
    flag = project.root / "fixed"
    hook = f"if 9 in batch and not os.path.exists({str(flag)!r}): raise ValueError('bad row 9')"
    log = _backfill(project, "1.fill", 14, hook=hook)

    first = project.run()
    assert first.result("1.fill").outcome == "failed"
    assert _numbers(log) == list(range(12))  # the third batch (8..11) ran and failed
    [status] = runce.task_status(project.config()).tasks
    assert status.state.value == "FAILED"
    assert status.backfill is not None
    assert status.backfill.done == 8
    assert status.backfill.cursor == 8

    flag.touch()
    notices = Notices()
    second = project.run(reporter=notices)
    assert second.result("1.fill").outcome == "ok"
    assert "1.fill: resuming from cursor 8, 8 of 14 done" in notices.lines
    # Only the batch it was in is done again.
    assert _numbers(log) == list(range(12)) + list(range(8, 14))


def test_a_pause_stops_at_the_next_batch_boundary_and_holds_later_tasks(
    project: Project,
) -> None:
    # Another process's request, made while the batch holding 8 runs.
    hook = (
        "if 8 in batch:\n"
        "                from runce.stores.registry import open_store\n"
        "                s = open_store(ctx.config.store)\n"
        "                s.tracker.set_control(ctx.id, 'pause', 'ops')\n"
        "                s.close()"
    )
    log = _backfill(project, "1.fill", 20, hook=hook)
    project.simple("2.after")

    first = project.run()
    assert first.ok
    assert project.outcomes(first) == {"1.fill": "paused", "2.after": "not-run"}
    assert "paused by ops at a batch boundary, 12 of 20 done" in (first.result("1.fill").note or "")
    assert "waits for 1.fill" in (first.result("2.after").note or "")
    assert _numbers(log) == list(range(12))
    states = project.states()
    assert states == {"1.fill": "PAUSED", "2.after": "PENDING"}

    again = project.run()  # still paused: nothing runs
    assert project.outcomes(again) == {"1.fill": "paused", "2.after": "not-run"}
    assert _numbers(log) == list(range(12))

    result = runce.resume_task("1.fill", project.config())
    assert result.state == "PAUSED"
    assert project.states() == {"1.fill": "PENDING", "2.after": "PENDING"}
    notices = Notices()
    resumed = project.run(reporter=notices)
    assert project.outcomes(resumed) == {"1.fill": "ok", "2.after": "ok"}
    assert "1.fill: resuming from cursor 12, 12 of 20 done" in notices.lines
    assert _numbers(log) == list(range(20))  # nothing twice: the pause came at a boundary


def test_resuming_goes_on_from_the_checkpoint(project: Project) -> None:
    log = _backfill(project, "1.fill", 20)
    project.simple("2.after")
    _request(project, "1.fill", "pause")
    first = project.run()
    assert project.outcomes(first) == {"1.fill": "paused", "2.after": "not-run"}
    assert _numbers(log) == []

    runce.resume_task("1.fill", project.config())
    report = project.run()
    assert project.outcomes(report) == {"1.fill": "ok", "2.after": "ok"}
    assert _numbers(log) == list(range(20))


def test_a_canceled_backfill_stays_stopped_and_later_tasks_go_on(project: Project) -> None:
    log = _backfill(project, "1.fill", 12)
    project.simple("2.after")
    result = runce.cancel_task("1.fill", project.config())
    assert result.state == "PENDING"
    report = project.run()
    assert project.outcomes(report) == {"1.fill": "canceled", "2.after": "ok"}
    assert project.states() == {"1.fill": "CANCELED", "2.after": "APPLIED"}
    assert _numbers(log) == []


def test_an_applied_task_cannot_be_paused(project: Project) -> None:
    _backfill(project, "1.fill", 3)
    assert project.run().ok
    with pytest.raises(runce.UsageError, match="already applied"):
        runce.pause_task("1.fill", project.config())
    with pytest.raises(runce.UsageError, match="no task"):
        runce.pause_task("9.nope", project.config())


def test_parallel_ranges_each_keep_their_own_checkpoint(project: Project) -> None:
    log = project.root / "par.log"
    project.task(
        "1.par",
        f"""
        import threading
        LOCK = threading.Lock()

        def ranges(ctx, n):
            return [{{"at": k * 10, "end": k * 10 + 10}} for k in range(n)]

        def fetch(ctx, cursor, size):
            at, end = cursor["at"], cursor["end"]
            batch = list(range(at, min(at + size, end)))
            nxt = at + len(batch)
            return batch, ({{"at": nxt, "end": end}} if nxt < end else None)

        def process(ctx, batch):
            with LOCK, open({str(log)!r}, "a") as f:
                f.write("".join(f"{{i}}\\n" for i in batch))

        task = runce.Backfill(
            title="par", fetch=fetch, process=process, batch_size=3, parallel=3, ranges=ranges
        )
        """,
    )
    report = project.run()
    assert report.result("1.par").outcome == "ok"
    assert sorted(_numbers(log)) == list(range(30))
    store = open_store(project.config().store)
    try:
        parts = store.tracker.checkpoints("1.par")
    finally:
        store.close()
    assert [(c.part, c.parts, c.done, c.finished) for c in parts] == [
        (0, 3, 10, True),
        (1, 3, 10, True),
        (2, 3, 10, True),
    ]


def test_fewer_threads_than_ranges_work_every_range_a_few_at_a_time(project: Project) -> None:
    log = project.root / "few.log"
    project.task(
        "1.few",
        f"""
        import threading, time
        LOCK = threading.Lock()
        BUSY = [0, 0]  # ranges in a batch now, most ever

        def ranges(ctx, n):
            return [{{"at": k * 10, "end": k * 10 + 10}} for k in range(n)]

        def fetch(ctx, cursor, size):
            at, end = cursor["at"], cursor["end"]
            batch = list(range(at, min(at + size, end)))
            nxt = at + len(batch)
            return batch, ({{"at": nxt, "end": end}} if nxt < end else None)

        def process(ctx, batch):
            with LOCK:
                BUSY[0] += 1
                BUSY[1] = max(BUSY)
            time.sleep(0.01)
            with LOCK, open({str(log)!r}, "a") as f:
                BUSY[0] -= 1
                f.write("".join(f"{{i}} {{BUSY[1]}}\\n" for i in batch))

        task = runce.Backfill(
            title="few", fetch=fetch, process=process, batch_size=4, parallel=5, ranges=ranges,
            threads=2,
        )
        """,
    )
    report = project.run()
    assert report.result("1.few").outcome == "ok"
    lines = [line.split() for line in log.read_text().splitlines()]
    assert sorted(int(number) for number, _ in lines) == list(range(50))
    assert max(int(busy) for _, busy in lines) <= 2, "two ranges at a time at most"
    store = open_store(project.config().store)
    try:
        parts = store.tracker.checkpoints("1.few")
    finally:
        store.close()
    assert [(c.done, c.finished, c.claim_owner) for c in parts] == [(10, True, None)] * 5


def test_throttle_when_waits_while_true(project: Project) -> None:
    count = project.root / "asked"
    _backfill(
        project,
        "1.fill",
        6,
        options=f"""throttle_when=lambda ctx: (
                open({str(count)!r}, "a").write("x") and len(open({str(count)!r}).read()) <= 2
            ),
            throttle="10ms",""",
    )
    assert project.run().ok
    # Asked twice before the first batch (true, true... false), then once per batch after.
    assert len(count.read_text()) >= 4


def test_the_batch_size_adapts_toward_the_target_time_within_bounds() -> None:
    pace = Pace(size=100, target=1.0, bounds=(10, 300))
    pace.after(0.1, 100)
    assert pace.size == 200  # at most doubled
    pace.after(0.1, 200)
    assert pace.size == 300  # capped
    pace.after(4.0, 300)
    assert pace.size == 150  # at most halved
    pace.after(4.0, 20)  # a short last batch says nothing
    assert pace.size == 150
    for _ in range(10):
        pace.after(100.0, pace.size)
    assert pace.size == 10


def test_a_dry_run_fetches_once_and_changes_nothing(project: Project) -> None:
    log = _backfill(project, "1.fill", 3)
    report = project.run(dry_run=True)
    result = report.result("1.fill")
    assert result.outcome == "dry-run"
    assert result.note == "backfill: first batch from the start has 3 items"
    assert _numbers(log) == []
    assert library.task_history(project.config()) == []
    assert project.states() == {"1.fill": "PENDING"}


def test_a_cursor_that_is_not_json_fails_clearly(project: Project) -> None:
    project.task(
        "1.bad",
        """
        def fetch(ctx, cursor, size):
            return [1], (1, 2)

        task = runce.Backfill(title="bad", fetch=fetch, process=lambda ctx, batch: None)
        """,
    )
    report = project.run()
    error = report.result("1.bad").error or ""
    assert "fetch of 1.bad returned a cursor that JSON does not keep as it is" in error


def test_a_backfill_definition_is_checked_where_it_is_written() -> None:
    def fetch(ctx: object, cursor: object, size: int) -> tuple[list[int], None]:
        return [], None

    with pytest.raises(ValueError, match="throttle='fast'"):
        runce.Backfill(fetch=fetch, process=lambda c, b: None, throttle="fast")
    with pytest.raises(ValueError, match="batch_size"):
        runce.Backfill(fetch=fetch, process=lambda c, b: None, batch_size=0)
    with pytest.raises(TypeError, match="needs ranges"):
        runce.Backfill(fetch=fetch, process=lambda c, b: None, parallel=2)
    for threads in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="threads"):
            runce.Backfill(fetch=fetch, process=lambda c, b: None, threads=threads)  # type: ignore[arg-type]
    made = runce.backfill(title="deco", fetch=fetch, throttle="50ms")(lambda c, b: None)
    assert isinstance(made, runce.Task)
    assert made.throttle_seconds == pytest.approx(0.05)


def test_a_transactional_backfill_commits_each_batch_with_its_checkpoint(
    tmp_path: Path,
) -> None:
    import sqlite3

    project = Project(tmp_path, "sqlite:///runce.db")
    flag = tmp_path / "fixed"
    project.task(
        "1.tx",
        f"""
        import os

        def fetch(ctx, cursor, size):
            ctx.db.execute("CREATE TABLE IF NOT EXISTS done (n INTEGER PRIMARY KEY)")
            start = cursor or 0
            batch = list(range(start, min(start + size, 14)))
            following = start + len(batch)
            return batch, (following if following < 14 else None)

        def process(ctx, batch):
            ctx.db.executemany("INSERT INTO done VALUES (?)", [(n,) for n in batch])
            if 9 in batch and not os.path.exists({str(flag)!r}):
                raise ValueError("bad row 9")

        task = runce.Backfill(
            title="tx", fetch=fetch, process=process, batch_size=4, transactional=True
        )
        """,
    )
    assert project.run().result("1.tx").outcome == "failed"
    with sqlite3.connect(tmp_path / "runce.db") as conn:
        assert [n for (n,) in conn.execute("SELECT n FROM done ORDER BY n")] == list(range(8))
    flag.touch()
    assert project.run().result("1.tx").outcome == "ok"
    with sqlite3.connect(tmp_path / "runce.db") as conn:
        assert [n for (n,) in conn.execute("SELECT n FROM done ORDER BY n")] == list(range(14))


def test_a_dry_run_of_a_transactional_backfill_fetches_in_a_rolled_back_transaction(
    tmp_path: Path,
) -> None:
    import sqlite3

    project = Project(tmp_path, "sqlite:///runce.db")
    project.task(
        "1.tx",
        """
        def fetch(ctx, cursor, size):
            ctx.db.execute("CREATE TABLE seen (n INTEGER)")  # rolled back with the dry run
            return [1, 2, 3], None

        task = runce.Backfill(
            title="tx", fetch=fetch, process=lambda ctx, batch: None, transactional=True
        )
        """,
    )
    result = project.run(dry_run=True).result("1.tx")
    assert result.outcome == "dry-run"
    assert result.note == "backfill: first batch from the start has 3 items"
    with sqlite3.connect(tmp_path / "runce.db") as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert "seen" not in tables


def test_a_dry_run_whose_fetch_fails_says_so_and_fails(project: Project) -> None:
    project.task(
        "1.broken",
        """
        def fetch(ctx, cursor, size):
            raise LookupError("no table invoices")

        task = runce.Backfill(title="broken", fetch=fetch, process=lambda ctx, batch: None)
        """,
    )
    report = project.run(dry_run=True)
    assert not report.ok
    assert report.result("1.broken").error == "fetch failed: LookupError: no table invoices"


def test_status_shows_progress_and_the_request_of_a_paused_backfill(project: Project) -> None:
    _backfill(project, "1.fill", 20)
    _request(project, "1.fill", "pause")
    [status] = runce.task_status(project.config()).tasks
    assert status.state.value == "PAUSED"
    shown = status.to_dict()
    assert shown["requested"] == {
        "command": "pause",
        "by": "tester",
        "at": shown["requested"]["at"],  # type: ignore[index]
    }
    assert shown["backfill"] is None  # no batch done yet, so no checkpoint


def test_parallel_transactional_ranges_take_turns_on_sqlite(tmp_path: Path) -> None:
    import sqlite3

    project = Project(tmp_path, "sqlite:///runce.db")
    project.task(
        "1.partx",
        """
        def ranges(ctx, n):
            return [[k * 50, k * 50 + 50] for k in range(n)]

        def fetch(ctx, cursor, size):
            ctx.db.execute("CREATE TABLE IF NOT EXISTS done (n INTEGER PRIMARY KEY)")
            at, end = cursor
            batch = list(range(at, min(at + size, end)))
            nxt = at + len(batch)
            return batch, ([nxt, end] if nxt < end else None)

        def process(ctx, batch):
            ctx.db.executemany("INSERT INTO done VALUES (?)", [(n,) for n in batch])

        task = runce.Backfill(
            title="partx", fetch=fetch, process=process, batch_size=7, parallel=3,
            ranges=ranges, transactional=True,
        )
        """,
    )
    assert project.run().result("1.partx").outcome == "ok"
    with sqlite3.connect(tmp_path / "runce.db") as conn:
        assert [n for (n,) in conn.execute("SELECT n FROM done ORDER BY n")] == list(range(150))


def test_a_paused_parallel_backfill_stops_every_range_and_resumes_each(
    project: Project,
) -> None:
    log = project.root / "par.log"
    project.task(
        "1.par",
        f"""
        import threading
        LOCK = threading.Lock()

        def ranges(ctx, n):
            return [[k * 40, k * 40 + 40] for k in range(n)]

        def fetch(ctx, cursor, size):
            at, end = cursor
            batch = list(range(at, min(at + size, end)))
            nxt = at + len(batch)
            return batch, ([nxt, end] if nxt < end else None)

        def process(ctx, batch):
            with LOCK, open({str(log)!r}, "a") as f:
                f.write("".join(f"{{i}}\\n" for i in batch))
            if 45 in batch:
                from runce.stores.registry import open_store
                s = open_store(ctx.config.store)
                s.tracker.set_control(ctx.id, "pause", "ops")
                s.close()

        task = runce.Backfill(
            title="par", fetch=fetch, process=process, batch_size=5, parallel=2, ranges=ranges
        )
        """,
    )
    first = project.run()
    assert first.result("1.par").outcome == "paused"
    done_before = sorted(_numbers(log))
    assert len(done_before) < 80
    runce.resume_task("1.par", project.config())
    notices = Notices()
    second = project.run(reporter=notices)
    assert second.result("1.par").outcome == "ok"
    assert any(" of 2 ranges from their checkpoints" in n for n in notices.lines)
    assert sorted(_numbers(log)) == list(range(80)), "each item once: both stopped at a boundary"
