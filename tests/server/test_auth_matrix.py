"""Every route by (no token, wrong scope, wrong project, right token), on a real store.

Each case runs on a fresh server holding: ``running`` (claimed by worker w1, attempt 1),
``queued`` and ``canceled``, all in project ``blog``, and the cron schedule ``nightly`` (no
project). Tokens: see ``ROLES`` in conftest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from runce.runs.schedules import ScheduleSpec
from runce.runs.tokens import revoke_token
from tests.server.conftest import Api
from tests.stored_schedules import scheduler

FENCE = {"worker_id": "w1", "attempt": 1}
WORKER = {
    "id": "w1",
    "host": "box",
    "pid": 1,
    "started_at": "2026-01-01T00:00:00Z",
    "last_seen": "2026-01-01T00:00:00Z",
    "concurrency": 1,
}


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # {running}, {queued}, {canceled} are run ids
    body: Any
    right: str
    wrong_scope: str
    wrong_project: tuple[str, Any] | None  # a bound token, and the body or params it sends
    query: dict[str, str] | None = None


def _outcome(kind: str) -> dict[str, Any]:
    return {"outcomes": [{"run_id": "{running}", "kind": kind, **FENCE}]}


CASES = {
    "enqueue": Case(
        "POST",
        "/v1/runs",
        {"kind": "k", "project_id": "blog"},
        "writer",
        "reader",
        ("shop", {"kind": "k", "project_id": "blog"}),
    ),
    "list": Case(
        "GET", "/v1/runs", None, "reader", "worker", ("shop", None), query={"project_id": "blog"}
    ),
    "get": Case("GET", "/v1/runs/{queued}", None, "reader", "writer", ("shop", None)),
    "attempts": Case("GET", "/v1/runs/{queued}/attempts", None, "reader", "writer", ("shop", None)),
    "cancel": Case("POST", "/v1/runs/{queued}:cancel", None, "writer", "reader", ("shop", None)),
    "retry": Case("POST", "/v1/runs/{canceled}:retry", None, "writer", "reader", ("shop", None)),
    "prune": Case("POST", "/v1/runs:prune", {}, "writer", "reader", ("shop", {})),
    "workers": Case("GET", "/v1/workers", None, "reader", "writer", None),
    "tasks": Case("GET", "/v1/tasks", None, "reader", "worker", None),
    "schedules": Case("GET", "/v1/schedules", None, "reader", "writer", None),
    "task-pause": Case("POST", "/v1/tasks/1.fill:pause", None, "writer", "reader", ("shop", None)),
    "task-resume": Case(
        "POST", "/v1/tasks/1.fill:resume", None, "writer", "reader", ("shop", None)
    ),
    "task-cancel": Case(
        "POST", "/v1/tasks/1.fill:cancel", None, "writer", "reader", ("shop", None)
    ),
    "schedule-enable": Case(
        "POST", "/v1/schedules/nightly:enable", None, "writer", "reader", ("shop", None)
    ),
    "schedule-disable": Case(
        "POST", "/v1/schedules/nightly:disable", None, "writer", "reader", ("shop", None)
    ),
    "claim": Case(
        "POST",
        "/v1/runs:claim",
        {"worker_id": "w2", "lease": 30},
        "worker",
        "all_but_work",
        ("shop_worker", {"worker_id": "w2", "lease": 30}),
    ),
    "heartbeat": Case(
        "POST",
        "/v1/runs/{running}:heartbeat",
        {**FENCE, "lease": 30},
        "worker",
        "all_but_work",
        ("shop_worker", {**FENCE, "lease": 30}),
    ),
    "progress": Case(
        "POST",
        "/v1/runs/{running}:progress",
        {**FENCE, "percent": 5},
        "worker",
        "reader",
        ("shop_worker", {**FENCE, "percent": 5}),
    ),
    "succeed": Case(
        "POST",
        "/v1/runs/{running}:succeed",
        FENCE,
        "worker",
        "writer",
        ("shop_worker", FENCE),
    ),
    "fail": Case(
        "POST",
        "/v1/runs/{running}:fail",
        {**FENCE, "error": "e", "outcome": "failed"},
        "worker",
        "writer",
        ("shop_worker", {**FENCE, "error": "e", "outcome": "failed"}),
    ),
    "complete": Case("POST", "/v1/runs:complete", _outcome("succeeded"), "worker", "writer", None),
    "heartbeat-batch": Case(
        "POST",
        "/v1/runs:heartbeat",
        {"worker_id": "w1", "lease": 30, "runs": [{"run_id": "{running}", "attempt": 1}]},
        "worker",
        "reader",
        ("shop_worker", {"worker_id": "w1", "lease": 30, "runs": []}),
    ),
    "reclaim": Case("POST", "/v1/runs:reclaim", {}, "worker", "writer", ("shop_worker", {})),
    "worker-seen": Case(
        "PUT", "/v1/workers/w1", WORKER, "worker", "reader", ("shop_worker", WORKER)
    ),
}


@pytest.fixture
def world(api: Api, tmp_path: Any) -> dict[str, str]:
    from runce.runs.tokens import create_token

    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "1.fill.py").write_text(
        "import runce\n\nrunce.Backfill(fetch=lambda c, k, n: ([], None), process=print)\n"
    )
    api.tokens["all_but_work"] = create_token(
        "all_but_work", ["runs:read", "runs:write"], config=api.config
    ).text
    running = api.enqueue(project_id="blog", input={"n": 1})["id"]
    claim = api.call("POST", "/v1/runs:claim", json={"worker_id": "w1", "lease": 60})
    assert [r["id"] for r in claim.json()["runs"]] == [running]
    queued = api.enqueue(project_id="blog", input={"n": 2})["id"]
    canceled = api.enqueue(project_id="blog", input={"n": 3})["id"]
    assert api.call("POST", f"/v1/runs/{canceled}:cancel").status_code == 200
    scheduler(api.config, ScheduleSpec("nightly", "report.build", "0 3 * * *"))
    return {"running": running, "queued": queued, "canceled": canceled}


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


def _send(api: Api, case: Case, ids: dict[str, str], role: str | None, body: Any = None) -> Any:
    payload = _fill(case.body if body is None else body, ids)
    return api.call(
        case.method,
        _fill(case.path, ids),
        role,
        json=payload,
        params=case.query if case.method == "GET" else None,
    )


def _problem_slug(response: Any) -> str:
    assert response.headers["content-type"] == "application/problem+json", response.text
    slug: str = response.json()["type"].rsplit("/", 1)[1]
    return slug


@pytest.mark.parametrize("name", list(CASES))
def test_without_a_token_401(api: Api, world: dict[str, str], name: str) -> None:
    response = _send(api, CASES[name], world, None)
    assert response.status_code == 401, response.text
    assert _problem_slug(response) == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("name", list(CASES))
def test_with_a_revoked_or_forged_token_401(api: Api, world: dict[str, str], name: str) -> None:
    case = CASES[name]
    forged = api.tokens[case.right][:-4] + "AAAA"
    api.tokens["forged"] = forged
    assert _send(api, case, world, "forged").status_code == 401
    revoke_token(api.tokens[case.right], config=api.config)
    response = _send(api, case, world, case.right)
    assert response.status_code == 401, response.text
    assert _problem_slug(response) == "unauthorized"


@pytest.mark.parametrize("name", list(CASES))
def test_with_the_wrong_scope_403(api: Api, world: dict[str, str], name: str) -> None:
    case = CASES[name]
    response = _send(api, case, world, case.wrong_scope)
    assert response.status_code == 403, response.text
    assert _problem_slug(response) == "forbidden"


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.wrong_project])
def test_with_a_token_of_another_project_403(api: Api, world: dict[str, str], name: str) -> None:
    case = CASES[name]
    assert case.wrong_project is not None
    role, body = case.wrong_project
    before = [api.call("GET", path).json() for path in ("/v1/runs", "/v1/schedules")]
    response = _send(api, case, world, role, body)
    assert response.status_code == 403, response.text
    assert _problem_slug(response) == "forbidden"
    after = [api.call("GET", path).json() for path in ("/v1/runs", "/v1/schedules")]
    assert after == before  # nothing changed


@pytest.mark.parametrize("name", list(CASES))
def test_with_the_right_token_2xx(api: Api, world: dict[str, str], name: str) -> None:
    case = CASES[name]
    response = _send(api, case, world, case.right)
    assert 200 <= response.status_code < 300, response.text


def test_a_project_token_lists_and_reads_only_its_project(api: Api) -> None:
    mine = api.enqueue(project_id="shop")["id"]
    theirs = api.enqueue(project_id="blog")["id"]
    api.enqueue()  # no project: not a bound token's either
    listed = api.call("GET", "/v1/runs", "shop").json()["runs"]
    assert [r["id"] for r in listed] == [mine]
    assert api.call("GET", f"/v1/runs/{mine}", "shop").status_code == 200
    assert api.call("GET", f"/v1/runs/{theirs}", "shop").status_code == 403
    # A token bound to one project enqueues into it when the body names none.
    made = api.enqueue(role="shop")
    assert made["project_id"] == "shop"
    blog = api.call("GET", "/v1/runs", "two", params={"project_id": "blog"}).json()["runs"]
    assert [r["id"] for r in blog] == [theirs]
    # A token bound to several projects lists the runs of all of them, and no others.
    both = api.call("GET", "/v1/runs", "two").json()["runs"]
    assert {r["id"] for r in both} == {mine, made["id"], theirs}


def test_a_token_records_when_it_was_last_used(api: Api) -> None:
    from runce.runs.tokens import list_tokens

    assert api.call("GET", "/v1/runs", "reader").status_code == 200
    used = {t.name: t.last_used_at for t in list_tokens(config=api.config)}
    assert used["reader"] is not None
    assert used["writer"] is None
