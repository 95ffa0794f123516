"""Flow control over HTTP: remote workers' claims carry their limits, which the server's
store enforces, and ``GET /v1/runs/{id}/flow`` says why a due run waits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runce.runs.jobs import Job, registry
from tests.server.conftest import Api


@pytest.fixture
def limited() -> Iterator[None]:
    registry.register(Job("flow.api", lambda p: None, concurrency=1, concurrency_key="customer"))
    yield
    registry.forget("flow.api")


def _claim(api: Api, **body: object) -> list[dict[str, object]]:
    request = {"worker_id": "w1", "lease": 30, "limit": 10, **body}
    response = api.call("POST", "/v1/runs:claim", "worker", json=request)
    assert response.status_code == 200, response.text
    runs: list[dict[str, object]] = response.json()["runs"]
    return runs


def test_a_remote_claim_keeps_its_limits_and_the_waiting_run_says_why(
    api: Api, limited: None
) -> None:
    first = api.enqueue(kind="flow.api", input={"customer": "acme", "n": 1})
    second = api.enqueue(kind="flow.api", input={"customer": "acme", "n": 2})
    other = api.enqueue(kind="flow.api", input={"customer": "zeta", "n": 3})
    limits = [{"kind": "flow.api", "concurrency": 1}]
    taken = _claim(api, kinds=["flow.api"], limits=limits)
    assert sorted(run["id"] for run in taken) == sorted([first["id"], other["id"]])
    assert _claim(api, kinds=["flow.api"], limits=limits) == []

    waiting = api.call("GET", f"/v1/runs/{second['id']}/flow", "reader").json()
    assert waiting == {
        "limit": "concurrency 1 per customer",
        "waiting": "waiting: concurrency of customer=acme, 1 of 1 running",
    }
    running = api.call("GET", f"/v1/runs/{first['id']}/flow", "reader").json()
    assert running == {"limit": "concurrency 1 per customer", "waiting": None}
    assert api.call("GET", "/v1/runs/nope/flow", "reader").status_code == 404


def test_the_workers_listing_says_the_limit_of_each_limited_job(api: Api, limited: None) -> None:
    listed = api.call("GET", "/v1/workers", "reader")
    assert listed.status_code == 200, listed.text
    limits = listed.json()["limits"]
    assert limits["flow.api"] == "concurrency 1 per customer"
    assert all(isinstance(text, str) and text for text in limits.values())
    assert api.call("GET", "/v1/workers", "worker").status_code == 403  # runs:read, as before


def test_a_claim_with_limits_names_its_kinds_and_sane_limits(api: Api) -> None:
    response = api.call(
        "POST",
        "/v1/runs:claim",
        "worker",
        json={"worker_id": "w1", "lease": 30, "limits": [{"kind": "k", "concurrency": 1}]},
    )
    assert response.status_code in (400, 422), response.text
    assert "must name its kinds" in response.text
    for bad in (0, -1, 10**30, "2", True):
        response = api.call(
            "POST",
            "/v1/runs:claim",
            "worker",
            json={
                "worker_id": "w1",
                "lease": 30,
                "kinds": ["k"],
                "limits": [{"kind": "k", "concurrency": bad}],
            },
        )
        assert response.status_code == 422, (bad, response.text)


def test_a_remote_claim_keeps_its_rate(api: Api) -> None:
    for n in range(4):
        api.enqueue(kind="flow.rated", input={"n": n})
    limits = [{"kind": "flow.rated", "rate": 2, "per": 3600}]
    assert len(_claim(api, kinds=["flow.rated"], limits=limits)) == 2
    assert _claim(api, kinds=["flow.rated"], limits=limits) == []
    for limit in ({"kind": "k", "rate": 2}, {"kind": "k"}, {"kind": "k", "rate": 0, "per": 1}):
        body = {"worker_id": "w1", "lease": 30, "kinds": ["k"], "limits": [limit]}
        response = api.call("POST", "/v1/runs:claim", "worker", json=body)
        assert response.status_code == 422, (limit, response.text)


def test_an_enqueue_may_set_the_runs_key(api: Api, limited: None) -> None:
    # The job's key would be the customer; the runs' own keys put both under "batch".
    api.enqueue(kind="flow.api", input={"customer": "a"}, concurrency_key="batch")
    api.enqueue(kind="flow.api", input={"customer": "b"}, concurrency_key="batch")
    limits = [{"kind": "flow.api", "concurrency": 1}]
    assert len(_claim(api, kinds=["flow.api"], limits=limits)) == 1
    assert _claim(api, kinds=["flow.api"], limits=limits) == []
    for bad in ("", "x" * 201, "a\u0000b", 5):
        response = api.call(
            "POST", "/v1/runs", json={"kind": "flow.api", "input": {}, "concurrency_key": bad}
        )
        assert response.status_code == 422, (bad, response.text)


def test_a_run_held_back_by_a_rate_says_when_it_may_start(api: Api) -> None:
    registry.register(Job("flow.paced", lambda p: None, concurrency_key="customer", rate=(1, 60.0)))
    try:
        first = api.enqueue(kind="flow.paced", input={"customer": "acme", "n": 1})
        second = api.enqueue(kind="flow.paced", input={"customer": "acme", "n": 2})
        limits = [{"kind": "flow.paced", "rate": 1, "per": 60}]
        assert [run["id"] for run in _claim(api, kinds=["flow.paced"], limits=limits)] == [
            first["id"]
        ]
        flow = api.call("GET", f"/v1/runs/{second['id']}/flow", "reader").json()
        assert flow["limit"] == "rate 1 per 60 s (burst 1) per customer"
        assert flow["waiting"].startswith(
            "waiting: rate of customer=acme, 1 per minute, next start in "
        ), flow
        assert 0 < float(flow["waiting"].split()[-2]) <= 60.0, flow
    finally:
        registry.forget("flow.paced")
