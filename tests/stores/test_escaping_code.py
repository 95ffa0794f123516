"""Task and job code that raises what nobody expects fails its own task or run, with error
text every store can keep: never a record left half-written, never a stuck run."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import runce
from runce.config import Config, load_config
from runce.runs.events import EventBus
from runce.runs.jobs import Job, JobRegistry
from runce.runs.service import RunService
from runce.runs.worker import Worker, WorkerOptions
from runce.tasks import library
from tests.stores.conftest import StoreMaker
from tests.stores.test_queue_contract import QUEUE_BACKENDS

BROKEN_EXCEPTIONS = """
class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no message for you")
"""


@pytest.fixture(autouse=True)
def _forget_task_modules() -> Iterator[None]:
    yield
    for name in [n for n in sys.modules if n.startswith("runce_tasks.")]:
        del sys.modules[name]


def task_config(maker: StoreMaker, root: Path, tasks: dict[str, str]) -> Config:
    folder = root / f"tasks-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    for task_id, body in tasks.items():
        (folder / f"{task_id}.py").write_text("import runce\n" + textwrap.dedent(body))
    spec = maker.spec
    values: dict[str, Any] = {"store": spec.url, "schema": spec.schema, "tasks_dir": str(folder)}
    return load_config(values=values, start=spec.base_dir or root, env={})


def _one_attempt(config: Config, task_id: str) -> Any:
    attempts = [a for a in library.task_history(config) if a.task_id == task_id]
    assert [a.status for a in attempts] == ["failed"], attempts
    return attempts[0]


RAISING = {
    "surrogate": ("raise ValueError('bad \\ud800 text and a NUL \\x00')", "bad \\ud800 text"),
    "str-raises": ("raise Unprintable()", "could not be read"),
    "sys-exit": ("import sys; sys.exit(0)", "the task called sys.exit(0)"),
}


@pytest.mark.parametrize("case", sorted(RAISING))
def test_task_code_that_escapes_fails_its_task(
    maker: StoreMaker, tmp_path: Path, case: str
) -> None:
    action, needle = RAISING[case]
    if case == "str-raises":  # the class is defined at module level, raised in run()
        body = BROKEN_EXCEPTIONS + "\n@runce.task\ndef run(ctx):\n    raise Unprintable()\n"
    else:
        body = f"@runce.task\ndef run(ctx):\n    {action}\n"
    config = task_config(
        maker, tmp_path, {"1.escapes": body, "2.later": "@runce.task\ndef run(ctx):\n    pass\n"}
    )
    report = runce.run_tasks(config, keep_going=case != "sys-exit")
    assert not report.ok
    assert report.exit_code == 1
    assert needle in (report.result("1.escapes").error or "")
    attempt = _one_attempt(config, "1.escapes")
    assert needle in (attempt.error_message or "")
    assert "\x00" not in (attempt.error_message or "") + (attempt.traceback or "")
    later = report.result("2.later").outcome
    assert later == ("not-run" if case == "sys-exit" else "ok")


def test_an_already_done_that_raises_fails_its_task(maker: StoreMaker, tmp_path: Path) -> None:
    body = """
    def check(ctx):
        raise LookupError("cannot tell \\udcff")

    @runce.task(already_done=check)
    def run(ctx):
        raise AssertionError("must not run")
    """
    config = task_config(maker, tmp_path, {"1.check": body})
    report = runce.run_tasks(config)
    result = report.result("1.check")
    assert result.outcome == "failed"
    assert "LookupError: cannot tell \\udcff" in (result.error or "")
    assert "already_done() raised" in (result.note or "")
    attempt = _one_attempt(config, "1.check")
    assert attempt.error_type == "LookupError"
    dry = runce.run_tasks(config, dry_run=True)
    assert dry.result("1.check").outcome == "failed"


def test_a_dry_run_reports_an_already_done_that_exits(maker: StoreMaker, tmp_path: Path) -> None:
    body = """
    import sys

    @runce.task(already_done=lambda ctx: sys.exit(0))
    def run(ctx):
        pass
    """
    config = task_config(maker, tmp_path, {"1.exits": body})
    dry = runce.run_tasks(config, dry_run=True)
    assert dry.exit_code == 1
    assert "SystemExit" in (dry.result("1.exits").error or "")
    assert library.task_history(config) == []


def test_ctrl_c_in_a_task_is_recorded_and_stops_the_runner(
    maker: StoreMaker, tmp_path: Path
) -> None:
    body = "@runce.task\ndef run(ctx):\n    raise KeyboardInterrupt\n"
    config = task_config(maker, tmp_path, {"1.long": body})
    with pytest.raises(KeyboardInterrupt):
        runce.run_tasks(config)
    attempt = _one_attempt(config, "1.long")
    assert attempt.error_message == "interrupted by Ctrl-C"


# -- jobs ------------------------------------------------------------------------------------


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message for you")


# Factories: each test raises an exception of its own (a shared instance would carry the
# tracebacks and contexts of the tests before it).
JOB_ERRORS: dict[str, tuple[Callable[[], BaseException], str]] = {
    "surrogate": (lambda: ValueError("bad \ud800 input \x00"), "ValueError: bad \\ud800 input"),
    "str-raises": (_Unprintable, "_Unprintable: <the message could not be read"),
    "sys-exit": (lambda: SystemExit(3), "SystemExit: 3"),
}


@pytest.fixture(params=QUEUE_BACKENDS)
def queue_maker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreMaker]:
    from runce.stores import memory
    from tests.stores.conftest import BACKENDS

    made = BACKENDS[request.param](request, tmp_path)
    yield made
    made.close_all()
    memory.reset()


@pytest.mark.parametrize("case", sorted(JOB_ERRORS))
def test_a_job_raising_the_unexpected_fails_its_run(queue_maker: StoreMaker, case: str) -> None:
    make_error, needle = JOB_ERRORS[case]
    store: Any = queue_maker.open()
    jobs, bus = JobRegistry(), EventBus()

    def explode(params: Any) -> None:
        raise make_error()

    jobs.register(Job("explode", explode, max_attempts=1))
    jobs.register(Job("fine", lambda params: params))
    service = RunService(store.runs, jobs=jobs, bus=bus)
    bad = service.enqueue("explode", {"n": 1})
    good = service.enqueue("fine", {"n": 2})
    options = WorkerOptions(concurrency=1, poll=0.05, drain=True, max_time=30)
    Worker(store.runs, options, jobs=jobs, bus=bus).run()
    failed = service.get(bad.id)
    assert failed.state == "failed"
    assert needle in (failed.error or ""), failed.error
    assert "\x00" not in (failed.error or "")
    assert service.get(good.id).state == "succeeded"


def test_a_traced_attempt_records_an_exception_whose_str_raises(tmp_path: Path) -> None:
    """With OpenTelemetry's SDK set up, the attempt's span records the error from safe text;
    a broken ``__str__`` used to kill the handler thread and leave the run queued."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    # Spans are made under a recording provider only (set once per process).
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())

    from runce.stores import memory
    from runce.stores.base import StoreSpec
    from runce.stores.registry import open_store

    store: Any = open_store(StoreSpec(type="memory", url="memory://", base_dir=tmp_path))
    try:
        jobs, bus = JobRegistry(), EventBus()

        def explode(params: Any) -> None:
            raise _Unprintable()

        jobs.register(Job("explode", explode, max_attempts=1))
        service = RunService(store.runs, jobs=jobs, bus=bus)
        bad = service.enqueue("explode", {"n": 1})
        options = WorkerOptions(concurrency=1, poll=0.05, drain=True, max_time=30)
        Worker(store.runs, options, jobs=jobs, bus=bus).run()
        assert service.get(bad.id).state == "failed"
    finally:
        store.close()
        memory.reset()
