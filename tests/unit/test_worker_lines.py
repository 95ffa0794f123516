"""The worker's line per run transition: written by the worker itself, in batches and with
no LogRecord per line, where runce's own handler is the only place its lines go (as under
``runce worker``); through :mod:`logging` as usual anywhere else. The text is the same."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runce.logformat import (
    JsonFormatter,
    LineFormatter,
    StderrHandler,
    TextFormatter,
    direct_handler,
)
from runce.runs import redact
from runce.runs.events import EventBus
from runce.runs.jobs import Job, JobRegistry
from runce.runs.service import RunService
from runce.runs.worker import Worker, WorkerOptions
from runce.stores import memory

WORKER = logging.getLogger("runce.worker")
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


class _Stderr(io.StringIO):
    """sys.stderr for a test: what was written, and in how many calls."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def store() -> Iterator[memory.MemoryStore]:
    yield memory.MemoryStore(uuid.uuid4().hex)
    memory.reset()


@pytest.fixture
def runce_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[StderrHandler]:
    """Logging as ``runce``'s main sets it up: the root logger at INFO with runce's handler
    (alone once the test calls :func:`_alone`), and the worker's redaction."""
    root = logging.getLogger()
    handler = StderrHandler()
    handler.setFormatter(TextFormatter())
    level = root.level
    root.setLevel(logging.INFO)
    # The process's redaction comes back at teardown: later tests expect the default keys.
    monkeypatch.setattr(redact, "_active", redact._active)
    redactor = redact.install(["api_key"])
    try:
        yield handler
    finally:
        WORKER.removeFilter(redactor)
        logging.getLogger("runce.job").removeFilter(redactor)
        logging.getLogger("runce.scheduler").removeFilter(redactor)
        root.setLevel(level)


def _alone(handler: StderrHandler, monkeypatch: pytest.MonkeyPatch) -> None:
    """runce's handler alone on the root logger: pytest's own, added for the test's call,
    set aside until it ends."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler])


def _jobs() -> JobRegistry:
    jobs = JobRegistry()

    def broken(params: Any) -> Any:
        raise RuntimeError("no luck with api_key=hunter2")

    jobs.register(Job("lines.fine", lambda params: None))
    jobs.register(Job("lines.broken", broken, max_attempts=2))
    return jobs


def _work(store: memory.MemoryStore, runs: int) -> None:
    jobs = _jobs()
    service = RunService(store.runs, jobs=jobs, bus=EventBus())
    service.enqueue_many("lines.fine", [{}] * runs)
    service.enqueue("lines.broken", {})
    options = WorkerOptions(concurrency=2, lease=5.0, poll=0.05, backoff_base=0.0, drain=True)
    Worker(store.runs, options, jobs=jobs, bus=EventBus()).run()


def _records_made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The messages of the records the worker's logger makes from now on."""
    made: list[str] = []
    make = WORKER.makeRecord

    def counted(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        made.append(record.getMessage())
        return record

    monkeypatch.setattr(WORKER, "makeRecord", counted)
    return made


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"])
def test_the_worker_writes_its_lines_to_runces_handler_itself_in_batches(
    store: memory.MemoryStore,
    runce_logging: StderrHandler,
    monkeypatch: pytest.MonkeyPatch,
    formatter: LineFormatter,
) -> None:
    runce_logging.setFormatter(formatter)
    _alone(runce_logging, monkeypatch)
    stderr = _Stderr()
    monkeypatch.setattr(sys, "stderr", stderr)
    made = _records_made(monkeypatch)
    _work(store, 60)
    written = stderr.getvalue()
    assert "hunter2" not in written
    # Only the final failure, which carries its exception, went through a record.
    assert [m.split(" ")[0] for m in made] == ["run.failed"]
    if isinstance(formatter, JsonFormatter):
        lines = [json.loads(line) for line in written.splitlines()]
        succeeded = [line for line in lines if line["message"].startswith("run.succeeded")]
        [retried] = [line for line in lines if line["message"].startswith("run.retrying")]
        [failed] = [line for line in lines if line["message"].startswith("run.failed")]
        assert len(succeeded) == 60
        for line in succeeded:
            assert set(line) == {
                *("time", "level", "logger", "message"),
                *("run_id", "kind", "attempt", "duration_ms"),
            }
            assert re.fullmatch(TIME, line["time"])
            assert (line["level"], line["logger"], line["kind"]) == (
                "INFO",
                "runce.worker",
                "lines.fine",
            )
            assert line["message"] == (
                f"run.succeeded id={line['run_id']} kind=lines.fine attempt=1 "
                f"duration_ms={line['duration_ms']:.1f}"
            )
        assert (retried["level"], retried["attempt"]) == ("WARNING", 1)
        assert retried["message"].endswith("error=RuntimeError: no luck with api_key=***")
        assert (failed["level"], failed["attempt"]) == ("ERROR", 2)
        assert "RuntimeError" in failed["exception"]
        count = len(lines)
    else:
        lines = written.splitlines()
        succeeded = [line for line in lines if " run.succeeded " in line]
        assert len(succeeded) == 60
        for line in succeeded:
            assert re.fullmatch(
                rf"{TIME} INFO runce\.worker: run\.succeeded id=\S+ kind=lines\.fine "
                r"attempt=1 duration_ms=\d+\.\d",
                line,
            ), line
        [retried] = [line for line in lines if " run.retrying " in line]
        assert re.fullmatch(
            rf"{TIME} WARNING runce\.worker: run\.retrying id=\S+ kind=lines\.broken attempt=1 "
            r"duration_ms=\d+\.\d error=RuntimeError: no luck with api_key=\*\*\*",
            retried,
        ), retried
        [failed] = [line for line in lines if " run.failed " in line]
        assert re.match(rf"{TIME} ERROR runce\.worker: run\.failed id=\S+ ", failed)
        assert "Traceback (most recent call last):" in written
        count = 62
    # Lines of one acknowledgement go out in one write: fewer writes than lines.
    assert stderr.writes < count


def test_a_line_written_directly_reads_as_its_record_would(
    store: memory.MemoryStore, runce_logging: StderrHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    _alone(runce_logging, monkeypatch)
    stderr = _Stderr()
    monkeypatch.setattr(sys, "stderr", stderr)
    _work(store, 5)
    direct = stderr.getvalue().splitlines()
    # The same work where another handler also listens: every line is a record.
    other = _Heard()
    heard = other.records
    WORKER.addHandler(other)
    try:
        _work(store, 5)
    finally:
        WORKER.removeHandler(other)
    assert len(heard) == 7
    formatted = [TextFormatter().format(record).split("\n")[0] for record in heard]

    def shape(line: str) -> str:  # times, ids and durations differ between the two
        line = re.sub(TIME, "T", line)
        line = re.sub(r"id=\S+", "id=I", line)
        return re.sub(r"duration_ms=\S+", "duration_ms=D", line)

    assert sorted(map(shape, formatted)) == sorted(
        shape(line) for line in direct if line.startswith(direct[0][:4])
    )


class _Heard(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _Filter(logging.Filter):
    pass


def _redactors_only(candidate: Any) -> bool:
    return isinstance(candidate, redact.Redactor)


@pytest.mark.parametrize(
    "change",
    [
        "another handler",
        "a handler filter",
        "a formatter of the application's",
        "a handler of the application's",
        "a logger filter",
        "a record factory",
        "a disabled logger",
        "no propagation",
    ],
)
def test_lines_go_through_logging_unless_runces_handler_alone_takes_them(
    runce_logging: StderrHandler, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    _alone(runce_logging, monkeypatch)
    assert direct_handler(WORKER, _redactors_only) == (runce_logging, runce_logging.formatter)
    root = logging.getLogger()
    if change == "another handler":
        monkeypatch.setattr(logging.getLogger("runce"), "handlers", [logging.NullHandler()])
    elif change == "a handler filter":
        monkeypatch.setattr(runce_logging, "filters", [_Filter()])
    elif change == "a formatter of the application's":
        monkeypatch.setattr(runce_logging, "formatter", logging.Formatter())
    elif change == "a handler of the application's":
        monkeypatch.setattr(root, "handlers", [logging.StreamHandler(io.StringIO())])
    elif change == "a logger filter":
        monkeypatch.setattr(WORKER, "filters", [*WORKER.filters, _Filter()])
    elif change == "a record factory":
        factory = logging.getLogRecordFactory()
        monkeypatch.setattr(logging, "_logRecordFactory", lambda *a, **k: factory(*a, **k))
    elif change == "a disabled logger":
        monkeypatch.setattr(WORKER, "disabled", True)
    else:
        monkeypatch.setattr(WORKER, "propagate", False)
    assert direct_handler(WORKER, _redactors_only) is None


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"])
def test_lines_of_one_batch_read_as_each_line_alone(formatter: LineFormatter) -> None:
    from runce.logformat import Fields

    entries: list[tuple[str, str, Any]] = [
        ("INFO", "run.succeeded id=a kind=k attempt=1 duration_ms=0.1", Fields("a", "k", 1, 0.1)),
        ("WARNING", "run.retrying id=b kind=k attempt=2 duration_ms=3.0", Fields("b", "k", 2, 3.0)),
    ]
    for created in (1_780_000_000.0, 1_780_000_000.9994, 1_780_000_001.5):
        assert formatter.lines(created, "runce.worker", entries) == [
            formatter.line(created, level, "runce.worker", message, fields)
            for level, message, fields in entries
        ]


@pytest.mark.parametrize(
    "texts",
    [
        ["run.succeeded id=a kind=k", "run.succeeded id=b kind=k"],
        ["run.retrying id=a error=RuntimeError: api_key=hunter2", "run.succeeded id=b"],
        ["run.succeeded id=a kind=token.refresh", "run.failed error=é token: x"],
        ["a line with the secret s3cr3t-value", "and one without"],
        ["ends with api_key", "=hunter2 starts the next"],
        [],
    ],
)
def test_a_batch_is_masked_as_each_of_its_lines_alone(
    texts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from runce.runs import secrets

    monkeypatch.setattr(secrets, "known_values", lambda: frozenset({"s3cr3t-value"}))
    redactor = redact.Redactor(["api_key", "token"])
    assert redactor.scrub_many(texts) == [redactor.scrub(text) for text in texts]
