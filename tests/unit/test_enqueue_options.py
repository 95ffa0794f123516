"""The enqueue options are one typed set (``runce.EnqueueOptions``) that every way of
enqueueing passes on whole, and that refuses a keyword it does not know, as a signature
would, before anything is stored."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import runce


@runce.job("options.echo")
def echo(params: Any) -> Any:
    return params


@pytest.fixture
def config(tmp_path: Path) -> dict[str, str]:
    return {"store": f"sqlite:///{tmp_path / 'runce.db'}"}


def _calls(config: dict[str, str]) -> dict[str, Callable[[], object]]:
    client = runce.Client("http://127.0.0.1:9", token="t", retry_attempts=1)
    aclient = runce.AsyncClient("http://127.0.0.1:9", token="t", retry_attempts=1)
    wrong: Any = {"priorty": 1}  # a misspelt option, as an untyped caller would send it
    return {
        "enqueue": lambda: runce.enqueue("options.echo", {}, config=config, **wrong),
        "enqueue_many": lambda: runce.enqueue_many("options.echo", [{}], config=config, **wrong),
        "aenqueue": lambda: asyncio.run(runce.aenqueue("options.echo", config=config, **wrong)),
        "aenqueue_many": lambda: asyncio.run(
            runce.aenqueue_many("options.echo", [{}], config=config, **wrong)
        ),
        "later": lambda: echo.later({}, config=config, **wrong),
        "alater": lambda: asyncio.run(echo.alater({}, config=config, **wrong)),
        "Client.enqueue": lambda: client.enqueue("options.echo", {}, **wrong),
        "AsyncClient.enqueue": lambda: asyncio.run(aclient.enqueue("options.echo", {}, **wrong)),
    }


@pytest.mark.parametrize(
    "entry",
    [
        "enqueue",
        "enqueue_many",
        "aenqueue",
        "aenqueue_many",
        "later",
        "alater",
        "Client.enqueue",
        "AsyncClient.enqueue",
    ],
)
def test_an_unknown_option_is_a_type_error_and_stores_nothing(
    entry: str, config: dict[str, str]
) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'priorty'"):
        _calls(config)[entry]()
    assert runce.list_runs(config=config).runs == []


def test_every_option_reaches_the_run(config: dict[str, str]) -> None:
    due = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    options: runce.EnqueueOptions = {
        "run_at": due,
        "max_attempts": 7,
        "priority": 9,
        "project_id": "acme",
        "correlation_id": "req-1",
        "concurrency_key": "k",
    }
    made = [
        echo.later({"n": 1}, config=config, **options),
        runce.enqueue("options.echo", {"n": 2}, config=config, **options),
        *runce.enqueue_many("options.echo", [{"n": 3}], config=config, **options),
        asyncio.run(echo.alater({"n": 4}, config=config, **options)),
    ]
    for run in made:
        assert (run.run_at, run.max_attempts, run.priority) == (due, 7, 9)
        assert (run.project_id, run.correlation_id) == ("acme", "req-1")


def test_left_out_options_take_their_defaults(config: dict[str, str]) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    run = runce.enqueue("options.echo", {}, config=config)
    assert (run.priority, run.project_id, run.correlation_id) == (0, None, None)
    assert run.run_at >= before


def test_a_run_query_is_one_typed_set_too(config: dict[str, str]) -> None:
    runce.enqueue("options.echo", {"n": 1}, config=config, project_id="a")
    runce.enqueue("options.echo", {"n": 2}, config=config, project_id="b")
    query: runce.RunQuery = {"project_id": "b", "limit": 1, "order": "oldest"}
    [run] = runce.list_runs(config=config, **query).runs
    assert run.input == {"n": 2}
    assert asyncio.run(runce.alist_runs(config=config, **query)).runs == [run]
    wrong: Any = {"statee": "queued"}
    for call in (
        lambda: runce.list_runs(config=config, **wrong),
        lambda: asyncio.run(runce.alist_runs(config=config, **wrong)),
        lambda: runce.Client("http://127.0.0.1:9", token="t").list_runs(**wrong),
    ):
        with pytest.raises(TypeError, match="unexpected keyword argument 'statee'"):
            call()
