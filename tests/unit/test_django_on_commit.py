"""``enqueue_on_commit`` takes ``runce.enqueue``'s arguments (but ``connection``) and hands
them on when Django runs its on-commit callbacks."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import transaction

import runce
from runce.contrib.django import enqueue_on_commit


def test_enqueue_on_commit_passes_the_config_and_concurrency_key_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting: list[Callable[[], None]] = []

    def on_commit(send: Callable[[], None], using: str | None = None) -> None:
        waiting.append(send)  # Django runs it when the transaction commits

    monkeypatch.setattr(transaction, "on_commit", on_commit)
    db = tmp_path / "runce.db"
    config = {"store": f"sqlite:///{db}"}
    enqueue_on_commit("email.send", {"to": "a"}, config=config, concurrency_key="tenant-7")
    assert runce.list_runs(config=config).runs == [], "nothing before the commit"
    [send] = waiting
    send()
    [run] = runce.list_runs(config=config).runs
    assert (run.kind, run.input) == ("email.send", {"to": "a"})
    with sqlite3.connect(db) as conn:
        keys = conn.execute("SELECT concurrency_key FROM runce_runs").fetchall()
    assert keys == [("tenant-7",)]
