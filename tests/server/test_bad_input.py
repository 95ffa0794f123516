"""What no request may do to the queue over HTTP: store what a store cannot read back, answer
with a traceback, or let one unreadable row stop the others."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import Api

DEEP = "[" * 1000 + "]" * 1000
BAD_BODIES: dict[str, str] = {
    "input surrogate": '{"kind": "k", "input": {"a": "\\ud800"}}',
    "input surrogate key": '{"kind": "k", "input": {"\\udc00": 1}}',
    "input 1000 deep": '{"kind": "k", "input": ' + DEEP + "}",
    "input 2^63": '{"kind": "k", "input": {"n": 9223372036854775808}}',
    "input -2^63-1": '{"kind": "k", "input": [-9223372036854775809]}',
    "kind surrogate": '{"kind": "k\\ud800"}',
    "project surrogate": '{"kind": "k", "project_id": "p\\udfff"}',
    "correlation surrogate": '{"kind": "k", "correlation_id": "c\\ud800"}',
    "priority 2^63": '{"kind": "k", "priority": 9223372036854775808}',
    "max_attempts 1e20": '{"kind": "k", "max_attempts": 100000000000000000000}',
    "run_at year 1": '{"kind": "k", "run_at": "0001-01-01T00:00:00+00:00"}',
}


@pytest.mark.parametrize("bad", sorted(BAD_BODIES))
def test_an_enqueue_no_store_can_keep_is_a_422_problem_and_stores_nothing(
    api: Api, bad: str
) -> None:
    response = api.call(
        "POST",
        "/v1/runs",
        content=BAD_BODIES[bad].encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "Traceback" not in response.text
    assert api.call("GET", "/v1/runs").json()["runs"] == []
    api.enqueue(input={"still": "works"})


def test_an_idempotency_key_with_a_lone_surrogate_is_a_422_problem(api: Api) -> None:
    response = api.call(
        "POST", "/v1/runs", json={"kind": "k"}, headers={"Idempotency-Key": "k%ED%A0%80"}
    )
    assert response.status_code == 422, response.text
    assert api.call("GET", "/v1/runs").json()["runs"] == []


def _spoil(root: Path, run_id: str) -> None:
    with closing(sqlite3.connect(root / ".runce" / "runce.db")) as conn, conn:
        conn.execute(
            "UPDATE runce_runs SET input = CAST(x'7b2261223a22eda080227d' AS TEXT) WHERE id = ?",
            (run_id,),
        )


def test_an_unreadable_row_is_listed_with_a_marker_and_failed_at_its_claim(
    api: Api, tmp_path: Path
) -> None:
    runs = [api.enqueue(input={"n": n}) for n in range(3)]
    _spoil(tmp_path, runs[1]["id"])
    listed = {run["id"]: run for run in api.call("GET", "/v1/runs").json()["runs"]}
    assert listed[runs[1]["id"]]["input"].startswith("<unreadable: ")
    shown = api.call("GET", f"/v1/runs/{runs[1]['id']}")
    assert shown.status_code == 200
    body: dict[str, Any] = {"worker_id": "w1", "lease": 30, "limit": 10}
    claimed = api.call("POST", "/v1/runs:claim", json=body).json()["runs"]
    assert [run["input"] for run in claimed] == [{"n": 0}, {"n": 2}]
    failed = api.call("GET", f"/v1/runs/{runs[1]['id']}").json()
    assert failed["state"] == "failed"
    assert failed["error"].startswith("its stored input cannot be read: ")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/runs/x%ED%A0%80",
        "/v1/runs/x%FF",
        "/v1/runs/x%00",
        "/v1/runs?project_id=p%ED%A0%80",
        "/v1/runs?kind=k%FF",
        "/v1/runs?kind=k%00",
    ],
)
def test_a_read_for_text_no_store_can_take_finds_nothing_or_is_a_4xx_problem(
    api: Api, path: str
) -> None:
    api.enqueue()
    response = api.call("GET", path)
    if response.status_code == 200:  # the query's bytes that are not UTF-8 read as U+FFFD
        assert response.json()["runs"] == []
        return
    assert response.status_code in (404, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
