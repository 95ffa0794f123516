"""Flow-control options and concurrency keys: what is refused at declaration or enqueue
(one sentence, nothing stored), and the key each run is stored with."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runce.errors import InvalidInput, UsageError
from runce.runs.events import EventBus
from runce.runs.jobs import Job, JobRegistry, job, parse_rate, registry
from runce.runs.service import RunService
from runce.stores.base import StoreSpec
from runce.stores.registry import open_store


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (0, "from 1 to 10,000, got 0"),
        (-3, "from 1 to 10,000, got -3"),
        (10**100, "got a huge number"),
        (10_001, "got 10001"),
        (True, "got True"),
        ("3", "got '3'"),
        (1.5, "got 1.5"),
    ],
)
def test_a_concurrency_that_cannot_work_is_refused(value: Any, said: str) -> None:
    with pytest.raises(UsageError, match="job 'k': concurrency must be a whole number") as err:
        job("k", concurrency=value)
    assert said in str(err.value)
    assert "\n" not in str(err.value)


def test_a_key_needs_a_concurrency_and_must_be_a_field_or_a_function() -> None:
    with pytest.raises(UsageError, match="concurrency_key= needs concurrency=N"):
        job("k", concurrency_key="customer")
    with pytest.raises(UsageError, match="a field name or a function of the input, not int"):
        job("k", concurrency=1, concurrency_key=5)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="lone surrogate"):
        job("k", concurrency=1, concurrency_key="\ud800")
    with pytest.raises(UsageError, match="1 to 200 characters"):
        job("k", concurrency=1, concurrency_key="")


@pytest.fixture
def sqlite_service(tmp_path: Path) -> Iterator[tuple[RunService, JobRegistry, Path]]:
    spec = StoreSpec(type="sqlite", url="sqlite:///runce.db", base_dir=tmp_path)
    store = open_store(spec)
    jobs = JobRegistry()
    yield RunService(store.runs, jobs=jobs, bus=EventBus()), jobs, tmp_path / "runce.db"  # type: ignore[attr-defined]
    store.close()


def _keys(path: Path) -> list[tuple[str, str | None]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT json_extract(input, '$.n'), concurrency_key FROM runce_runs ORDER BY 1"
        ).fetchall()


def test_the_key_is_worked_out_at_enqueue_and_stored(
    sqlite_service: tuple[RunService, JobRegistry, Path],
) -> None:
    service, jobs, path = sqlite_service
    jobs.register(Job("by.field", lambda p: None, concurrency=1, concurrency_key="customer"))
    jobs.register(
        Job("by.function", lambda p: None, concurrency=2, concurrency_key=lambda p: p["n"] % 2)
    )
    service.enqueue("by.field", {"n": 1, "customer": "acme"})
    service.enqueue("by.field", {"n": 2, "customer": 42})
    service.enqueue_many("by.function", [{"n": 3}, {"n": 4}])
    service.enqueue("by.field", {"n": 5, "customer": "acme"}, concurrency_key="override")
    assert _keys(path) == [(1, "acme"), (2, "42"), (3, "1"), (4, "0"), (5, "override")]


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("\ud800", "lone surrogate"),
        ("a\x00b", "control character U+0000"),
        ("x" * 5_000_000, "must be 1 to 200 characters (it has 5000000)"),
        ("", "must be 1 to 200 characters"),
        ({"a": 1}, "must be text or a whole number, not dict"),
        (None, "must be text or a whole number, not NoneType"),
        (True, "must be text or a whole number, not bool"),
    ],
)
def test_a_key_that_cannot_be_kept_is_refused_and_nothing_stored(
    sqlite_service: tuple[RunService, JobRegistry, Path], value: Any, said: str
) -> None:
    service, jobs, _path = sqlite_service
    jobs.register(Job("by.field", lambda p: None, concurrency=1, concurrency_key="customer"))
    with pytest.raises(InvalidInput) as err:
        service.enqueue("by.field", {"n": 1, "customer": value})
    message = str(err.value)
    assert "\n" not in message
    # Text no store keeps is refused as the input's already; the rest as the key.
    assert message.startswith("the run's input") or (
        said in message and "the concurrency key of 'by.field'" in message
    ), message
    if isinstance(value, str):
        with pytest.raises(InvalidInput, match=re.escape(said)):
            service.enqueue("plain", {"n": 1}, concurrency_key=value)
    assert service.page().runs == []


def test_a_missing_field_or_a_failing_function_is_refused(
    sqlite_service: tuple[RunService, JobRegistry, Path],
) -> None:
    service, jobs, _path = sqlite_service
    jobs.register(Job("by.field", lambda p: None, concurrency=1, concurrency_key="customer"))
    jobs.register(
        Job("by.function", lambda p: None, concurrency=1, concurrency_key=lambda p: 1 / 0)
    )
    with pytest.raises(InvalidInput, match="has no field 'customer', which its concurrency_key"):
        service.enqueue("by.field", {"n": 1})
    with pytest.raises(InvalidInput, match="has no field 'customer'"):
        service.enqueue("by.field", [1, 2])
    with pytest.raises(InvalidInput, match=r"function of 'by.function' failed .*ZeroDivisionError"):
        service.enqueue("by.function", {"n": 1})
    assert service.page().runs == []


def test_the_decorator_records_the_limits() -> None:
    @job("flow.decorated", concurrency=3, concurrency_key="customer")
    def handler(params: dict[str, Any]) -> None: ...

    try:
        assert (handler.concurrency, handler.concurrency_key) == (3, "customer")
    finally:
        registry.forget("flow.decorated")


@pytest.mark.parametrize(
    ("rate", "parsed"),
    [
        ("100/m", (100, 60.0)),
        ("5/10s", (5, 10.0)),
        ("1 / hour", (1, 3600.0)),
        ("7/d", (7, 86400.0)),
    ],
)
def test_a_rate_is_starts_per_window(rate: str, parsed: tuple[int, float]) -> None:
    assert parse_rate("k", rate) == parsed


@pytest.mark.parametrize(
    ("rate", "said"),
    [
        ("0/m", "must allow 1 to 1,000,000 starts per window"),
        ("abc", "is not a rate like"),
        ("10/0s", "needs a window of 1 second to 1 day"),
        ("10/2d", "needs a window of 1 second to 1 day"),
        ("10/99999h", "needs a window of 1 second to 1 day"),
        ("10/fortnight", "is not a rate like"),
        ("99999999/s", "is not a rate like"),
        ("\ud800/s", "is not a rate like"),
        ("x" * 5_000_000, "is not a rate like"),
        (100, "is not a rate like"),
    ],
)
def test_a_rate_that_cannot_work_is_refused(rate: Any, said: str) -> None:
    with pytest.raises(UsageError, match=f"job 'k': rate .*{re.escape(said)}") as err:
        job("k", rate=rate)
    assert "\n" not in str(err.value)
    assert len(str(err.value)) < 300
