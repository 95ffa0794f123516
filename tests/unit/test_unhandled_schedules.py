"""A schedule of a kind no job defines is refused where the jobs are known: when a worker
starts with its handlers loaded, and when the schedule is enabled."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import runce
from runce.domain.schedules import ScheduleDefinition
from runce.errors import UsageError
from runce.runs import library
from runce.runs.jobs import registry as jobs
from runce.runs.schedules import ScheduleSpec, check_handled
from runce.runs.schedules import registry as schedules
from runce.runtime import shared_store


@pytest.fixture
def handlers(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A module declaring a schedule for a kind nobody defines, beside one real job."""
    token = uuid.uuid4().hex[:8]
    module, kind, name = f"handlers_{token}", f"real.{token}", f"orphan-{token}"
    (tmp_path / f"{module}.py").write_text(
        "import runce\n"
        f"runce.schedule('*/5 * * * *', 'ghost.{token}', name={name!r})\n"
        f"@runce.job({kind!r})\n"
        "def real(params):\n"
        "    return None\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield module, kind, name
    sys.path.remove(str(tmp_path))
    sys.modules.pop(module, None)
    schedules.forget(name)
    jobs.forget(kind)
    library.close_stores()


def test_a_worker_refuses_to_start_with_an_unhandled_schedule(
    tmp_path: Path, handlers: tuple[str, str, str]
) -> None:
    module, _, name = handlers
    config = {"store": f"sqlite:///{tmp_path / 'runce.db'}", "worker": {"handlers": [module]}}
    with pytest.raises(UsageError) as excinfo:
        runce.worker(config, drain=True)
    text = str(excinfo.value)
    assert f"schedule {name!r} runs kind 'ghost." in text
    assert "no job in worker.handlers defines" in text
    assert runce.list_schedules(config=config) == []  # nothing was stored


def test_enabling_a_schedule_no_job_runs_is_refused(
    tmp_path: Path, handlers: tuple[str, str, str]
) -> None:
    module, kind, _ = handlers
    config = {"store": f"sqlite:///{tmp_path / 'runce.db'}", "worker": {"handlers": [module]}}
    store = library.schedules_of(shared_store(library._config(config).store))
    gone = ScheduleDefinition("old-report", "report.gone", "0 * * * *", "UTC", "null")
    kept = ScheduleDefinition("real-one", kind, "0 * * * *", "UTC", "null")
    now = library.queue_of(shared_store(library._config(config).store)).now()
    for definition in (gone, kept):
        store.insert(definition, now)
        store.set_enabled(definition.name, False, None)
    with pytest.raises(UsageError, match=r"schedule 'old-report' runs kind 'report\.gone'"):
        runce.enable_schedule("old-report", config=config)
    assert runce.enable_schedule("real-one", config=config).enabled
    # Disabling stays possible, and without handlers nothing can tell: enabling is allowed.
    assert not runce.disable_schedule("old-report", config=config).enabled
    bare = {"store": config["store"]}
    assert runce.enable_schedule("old-report", config=bare).enabled


def test_check_handled_names_the_first_unhandled() -> None:
    specs = [ScheduleSpec("a", "known", "* * * * *"), ScheduleSpec("b", "unknown", "* * * * *")]
    check_handled(specs[:1], ["known"])
    with pytest.raises(UsageError, match="schedule 'b' runs kind 'unknown'"):
        check_handled(specs, ["known"])
