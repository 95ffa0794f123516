"""The routes of the HTTP API on a real SQLite store: answers, problems, idempotency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import runce
from runce.api.schemas import ScheduleModel
from runce.errors import IdempotencyConflict, TaskLoadError
from runce.runs import library as runs_library
from runce.runs.schedules import ScheduleSpec
from runce.tasks import library as tasks_library
from tests.server.conftest import Api, make_api
from tests.stored_schedules import scheduler

PROBLEM = "application/problem+json"


def _problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"https://runce.dev/problems/{slug}"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert "Traceback" not in response.text
    return body


# -- enqueue and idempotency -------------------------------------------------------------------


def test_enqueue_answers_201_with_the_run(api: Api) -> None:
    response = api.call(
        "POST",
        "/v1/runs",
        json={"kind": "email.send", "input": {"to": "a@b"}, "priority": 3, "project_id": "shop"},
    )
    assert response.status_code == 201
    run = response.json()
    assert (run["kind"], run["input"], run["state"], run["priority"]) == (
        "email.send",
        {"to": "a@b"},
        "queued",
        3,
    )
    assert run["project_id"] == "shop"
    assert run["created_at"].endswith(("Z", "+00:00"))
    assert api.call("GET", f"/v1/runs/{run['id']}").json() == run


def test_the_same_key_and_body_answer_200_with_the_same_run(api: Api) -> None:
    body = {"kind": "email.send", "input": {"to": "a@b"}}
    key = {"Idempotency-Key": "order-1"}
    first = api.call("POST", "/v1/runs", json=body, headers=key)
    again = api.call("POST", "/v1/runs", json=body, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert first.json()["idempotency_key"] == "order-1"


LATER = "2031-01-01T09:00:00+00:00"


@pytest.mark.parametrize(
    ("change", "conflict"),
    [
        ({"input": {"to": "c@d"}}, True),
        ({"kind": "sms.send"}, True),
        ({"project_id": "blog"}, True),
        ({"project_id": None}, True),
        ({"input": {"to": "a@b"}}, False),
        ({"priority": 9}, False),
        ({"correlation_id": "retry-2"}, False),
        ({"max_attempts": 7}, False),
        ({"run_at": LATER}, False),
    ],
)
def test_the_library_and_the_api_agree_on_what_a_reused_key_is(
    api: Api, change: dict[str, Any], conflict: bool
) -> None:
    body = {"kind": "email.send", "input": {"to": "a@b"}, "project_id": "shop"}
    first = api.call("POST", "/v1/runs", json=body, headers={"Idempotency-Key": "http-1"})
    again = api.call(
        "POST", "/v1/runs", json={**body, **change}, headers={"Idempotency-Key": "http-1"}
    )
    if conflict:
        assert "http-1" in _problem(again, 409, "idempotency-conflict")["detail"]
    else:
        assert (again.status_code, again.json()) == (200, first.json())

    options = {**body, **change}
    if "run_at" in options:
        options["run_at"] = datetime.fromisoformat(options["run_at"])
    made = runs_library.enqueue(idempotency_key="lib-1", config=api.config, **body)
    if conflict:
        with pytest.raises(IdempotencyConflict, match="'lib-1'"):
            runs_library.enqueue(idempotency_key="lib-1", config=api.config, **options)
    else:
        assert runs_library.enqueue(idempotency_key="lib-1", config=api.config, **options) == made
    assert len(api.call("GET", "/v1/runs").json()["runs"]) == 2


def test_a_key_travels_percent_encoded_and_is_the_librarys_key(api: Api) -> None:
    body = {"kind": "email.send", "input": {"to": "a@b"}}
    sent = api.call("POST", "/v1/runs", json=body, headers={"Idempotency-Key": "Zo%C3%AB%2042"})
    assert sent.status_code == 201, sent.text
    assert sent.json()["idempotency_key"] == "Zoë 42"
    same = runs_library.enqueue(
        "email.send", {"to": "a@b"}, idempotency_key="Zoë 42", config=api.config
    )
    assert same.id == sent.json()["id"]
    plain = api.call("POST", "/v1/runs", json=body, headers={"Idempotency-Key": "a:b/c@d"})
    assert plain.json()["idempotency_key"] == "a:b/c@d"


@pytest.mark.parametrize(
    ("header", "said"),
    [
        ("Zoë".encode(), "percent-encode"),
        ("50%off", "send a % of the key as %25"),
        ("%FF", "not UTF-8"),
        ("a%00b", "U+0000"),
        ("k" * 256, "1 to 255 characters"),
        ("%F0%9F%94%91" * 256, "1 to 255 characters"),
    ],
)
def test_a_key_the_library_refuses_is_422_with_its_sentence(
    api: Api, header: str | bytes, said: str
) -> None:
    body = {"kind": "email.send", "input": {"to": "a@b"}}
    refused = api.call("POST", "/v1/runs", json=body, headers={"Idempotency-Key": header})
    assert said in _problem(refused, 422, "invalid-request")["detail"]
    assert api.call("GET", "/v1/runs").json()["runs"] == []


def test_an_input_the_registered_job_refuses_is_422_with_field_errors(typed_api: Api) -> None:
    response = typed_api.call(
        "POST", "/v1/runs", json={"kind": "typed.signup", "input": {"email": "x", "age": 3}}
    )
    problem = _problem(response, 422, "invalid-input")
    assert {tuple(e["loc"]) for e in problem["errors"]} == {("input", "email"), ("input", "age")}
    assert typed_api.call("GET", "/v1/runs").json()["runs"] == []
    good = {"kind": "typed.signup", "input": {"email": "a@b", "age": 30}}
    assert typed_api.call("POST", "/v1/runs", json=good).status_code == 201


def test_a_malformed_request_is_422_invalid_request_with_field_errors(api: Api) -> None:
    response = api.call("POST", "/v1/runs", json={"kind": "", "priority": "high", "extra": 1})
    problem = _problem(response, 422, "invalid-request")
    locs = {tuple(e["loc"]) for e in problem["errors"]}
    assert {("body", "kind"), ("body", "priority"), ("body", "extra")} <= locs
    not_json = api.call(
        "POST", "/v1/runs", content=b"{nope", headers={"content-type": "application/json"}
    )
    _problem(not_json, 422, "invalid-request")
    naive = api.call("POST", "/v1/runs", json={"kind": "k", "run_at": "2030-01-01T00:00:00"})
    _problem(naive, 422, "invalid-request")


# -- reading -----------------------------------------------------------------------------------


def test_listing_pages_newest_first_with_filters(api: Api) -> None:
    ids = [
        api.enqueue(input={"n": n}, project_id="shop" if n % 2 else None)["id"] for n in range(5)
    ]
    first = api.call("GET", "/v1/runs", params={"limit": 2}).json()
    assert [r["id"] for r in first["runs"]] == ids[::-1][:2]
    second = api.call("GET", "/v1/runs", params={"limit": 2, "cursor": first["next_cursor"]})
    assert [r["id"] for r in second.json()["runs"]] == ids[::-1][2:4]
    shop = api.call("GET", "/v1/runs", params={"project_id": "shop"}).json()
    assert [r["id"] for r in shop["runs"]] == [ids[3], ids[1]]
    assert shop["next_cursor"] is None
    queued = api.call("GET", "/v1/runs", params={"state": "queued", "kind": "email.send"})
    assert len(queued.json()["runs"]) == 5
    assert api.call("GET", "/v1/runs", params={"state": "failed"}).json()["runs"] == []
    _problem(api.call("GET", "/v1/runs", params={"limit": 101}), 422, "invalid-request")
    _problem(api.call("GET", "/v1/runs", params={"cursor": "bogus!"}), 422, "invalid-request")


def test_listing_pages_oldest_first_with_order(api: Api) -> None:
    ids = [api.enqueue(input={"n": n})["id"] for n in range(5)]
    first = api.call("GET", "/v1/runs", params={"limit": 2, "order": "oldest"}).json()
    assert [r["id"] for r in first["runs"]] == ids[:2]
    params = {"limit": 3, "order": "oldest", "cursor": first["next_cursor"]}
    rest = api.call("GET", "/v1/runs", params=params).json()
    assert [r["id"] for r in rest["runs"]] == ids[2:]
    assert rest["next_cursor"] is None
    newest = api.call("GET", "/v1/runs", params={"order": "newest"}).json()
    assert [r["id"] for r in newest["runs"]] == ids[::-1]
    bad = api.call("GET", "/v1/runs", params={"order": "random"})
    _problem(bad, 422, "invalid-request")


def test_an_unknown_run_is_404_not_found(api: Api) -> None:
    for method, path in (
        ("GET", "/v1/runs/nope"),
        ("GET", "/v1/runs/nope/attempts"),
        ("POST", "/v1/runs/nope:cancel"),
        ("POST", "/v1/runs/nope:retry"),
    ):
        assert "nope" in _problem(api.call(method, path), 404, "not-found")["detail"]


# -- changing ----------------------------------------------------------------------------------


def test_cancel_retry_and_the_illegal_transitions(api: Api) -> None:
    run = api.enqueue()
    canceled = api.call("POST", f"/v1/runs/{run['id']}:cancel")
    assert (canceled.status_code, canceled.json()["state"]) == (200, "canceled")
    _problem(api.call("POST", f"/v1/runs/{run['id']}:cancel"), 409, "illegal-transition")
    retried = api.call("POST", f"/v1/runs/{run['id']}:retry")
    assert (retried.status_code, retried.json()["state"]) == (200, "queued")
    _problem(api.call("POST", f"/v1/runs/{run['id']}:retry"), 409, "illegal-transition")


def test_prune_deletes_finished_runs_older_than_asked(api: Api) -> None:
    run = api.enqueue()
    api.call("POST", f"/v1/runs/{run['id']}:cancel")
    kept = api.call("POST", "/v1/runs:prune", json={})
    assert kept.json() == {"deleted": 0}  # the retention is 90 days
    gone = api.call("POST", "/v1/runs:prune", json={"failed_after": 0, "succeeded_after": 0})
    assert gone.json() == {"deleted": 1}
    _problem(api.call("GET", f"/v1/runs/{run['id']}"), 404, "not-found")


# -- the worker endpoints ------------------------------------------------------------------------


def _claim(api: Api, worker: str = "w1", **extra: Any) -> list[dict[str, Any]]:
    body = {"worker_id": worker, "lease": 30, "limit": 10, **extra}
    response = api.call("POST", "/v1/runs:claim", json=body)
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()["runs"]
    return runs


def test_a_worker_claims_beats_reports_progress_and_succeeds(api: Api) -> None:
    run = api.enqueue(input={"n": 1})
    [claimed] = _claim(api)
    assert (claimed["id"], claimed["state"], claimed["attempt"]) == (run["id"], "running", 1)
    fence = {"worker_id": "w1", "attempt": 1}
    beat = api.call("POST", f"/v1/runs/{run['id']}:heartbeat", json={**fence, "lease": 30})
    assert beat.json() == {"status": "ok"}
    step = api.call("POST", f"/v1/runs/{run['id']}:progress", json={**fence, "percent": 40})
    assert (step.status_code, step.content) == (204, b"")
    assert api.call("GET", f"/v1/runs/{run['id']}").json()["progress"] == 40
    api.call("POST", f"/v1/runs/{run['id']}:cancel")  # asked to stop while running
    beat = api.call("POST", f"/v1/runs/{run['id']}:heartbeat", json={**fence, "lease": 30})
    assert beat.json() == {"status": "cancel"}
    done = api.call("POST", f"/v1/runs/{run['id']}:succeed", json={**fence, "result": {"ok": 1}})
    assert (done.json()["state"], done.json()["result"]) == ("succeeded", {"ok": 1})


def test_writes_whose_fence_no_longer_holds_are_409_lease_lost(api: Api) -> None:
    run = api.enqueue()
    _claim(api)
    stale = {"worker_id": "w2", "attempt": 1}
    path = f"/v1/runs/{run['id']}"
    for suffix, extra in (
        (":heartbeat", {"lease": 30}),
        (":progress", {"percent": 5}),
        (":succeed", {}),
        (":fail", {"error": "boom", "outcome": "failed"}),
    ):
        response = api.call("POST", path + suffix, json={**stale, **extra})
        assert "nothing was written" in _problem(response, 409, "lease-lost")["detail"]
    after = api.call("GET", path).json()
    assert (after["state"], after["claimed_by"], after["progress"]) == ("running", "w1", None)


def test_fail_retry_and_release_outcomes(api: Api) -> None:
    first, second = api.enqueue(input={"n": 1}), api.enqueue(input={"n": 2})
    _claim(api)
    fence = {"worker_id": "w1", "attempt": 1}
    retry = api.call(
        "POST",
        f"/v1/runs/{first['id']}:fail",
        json={**fence, "error": "E: flaky", "outcome": "retry", "run_at": "2000-01-01T00:00:00Z"},
    )
    assert (retry.json()["state"], retry.json()["error"]) == ("queued", "E: flaky")
    released = api.call(
        "POST", f"/v1/runs/{second['id']}:fail", json={**fence, "error": "", "outcome": "released"}
    )
    assert (released.json()["state"], released.json()["attempt"]) == ("queued", 0)
    attempts = api.call("GET", f"/v1/runs/{first['id']}/attempts").json()["attempts"]
    assert [(a["attempt"], a["outcome"], a["worker_id"]) for a in attempts] == [(1, "retry", "w1")]


def test_a_workers_traceback_is_kept_redacted_with_its_attempt(api: Api) -> None:
    first, second = api.enqueue(input={"n": 1}), api.enqueue(input={"n": 2})
    _claim(api)
    fence = {"worker_id": "w1", "attempt": 1}
    stack = 'Traceback (most recent call last):\n  File "j.py", line 3\nE: password=hunter2\n'
    failed = api.call(
        "POST",
        f"/v1/runs/{first['id']}:fail",
        json={**fence, "error": "E: boom", "outcome": "failed", "traceback": stack},
    )
    assert failed.status_code == 200, failed.text
    outcome = {"run_id": second["id"], **fence, "kind": "failed", "error": "E", "traceback": "x"}
    batch = api.call("POST", "/v1/runs:complete", json={"outcomes": [outcome]})
    assert batch.json()["results"][0]["state"] == "failed"
    [attempt] = api.call("GET", f"/v1/runs/{first['id']}/attempts").json()["attempts"]
    assert attempt["traceback"] == stack.replace("hunter2", "***")
    [attempt] = api.call("GET", f"/v1/runs/{second['id']}/attempts").json()["attempts"]
    assert attempt["traceback"] == "x"


def test_the_batch_endpoints_answer_per_run(api: Api) -> None:
    runs = [api.enqueue(input={"n": n}) for n in range(3)]
    _claim(api)
    beats = api.call(
        "POST",
        "/v1/runs:heartbeat",
        json={
            "worker_id": "w1",
            "lease": 30,
            "runs": [
                {"run_id": runs[0]["id"], "attempt": 1},
                {"run_id": runs[1]["id"], "attempt": 7},
            ],
        },
    ).json()["beats"]
    assert beats == {runs[0]["id"]: "ok", runs[1]["id"]: "lost"}
    outcomes = [
        {
            "run_id": runs[0]["id"],
            "worker_id": "w1",
            "attempt": 1,
            "kind": "succeeded",
            "result": 5,
        },
        {"run_id": runs[1]["id"], "worker_id": "zz", "attempt": 1, "kind": "failed", "error": "x"},
        {"run_id": runs[2]["id"], "worker_id": "w1", "attempt": 1, "kind": "failed", "error": "x"},
    ]
    results = api.call("POST", "/v1/runs:complete", json={"outcomes": outcomes}).json()["results"]
    assert results[0]["state"] == "succeeded"
    assert results[0]["result"] == 5
    assert results[1] is None
    assert results[2]["state"] in ("queued", "failed")


def test_reclaim_puts_expired_leases_back(api: Api) -> None:
    run = api.enqueue()
    _claim(api, lease=0.001)
    import time

    time.sleep(0.05)
    back = api.call("POST", "/v1/runs:reclaim", json={}).json()["runs"]
    assert [(r["id"], r["state"]) for r in back] == [(run["id"], "queued")]


def test_claim_with_wait_returns_when_a_run_is_enqueued(api: Api) -> None:
    import threading

    got: list[list[dict[str, Any]]] = []
    waiter = threading.Thread(target=lambda: got.append(_claim(api, wait=20)))
    waiter.start()
    run = api.enqueue()
    waiter.join(timeout=30)
    claimed = got[0] or _claim(api)  # the enqueue may land before the first look
    assert [r["id"] for r in claimed] == [run["id"]]


def test_claim_with_wait_and_nothing_due_answers_empty(api: Api) -> None:
    assert _claim(api, wait=0.05) == []


def test_workers_report_and_are_listed(api: Api) -> None:
    info = {
        "id": "w1",
        "host": "box",
        "pid": 42,
        "started_at": "2026-01-01T00:00:00Z",
        "last_seen": "2026-01-01T00:00:05Z",
        "concurrency": 8,
        "kinds": ["email.send"],
    }
    put = api.call("PUT", "/v1/workers/w1", json=info)
    assert put.status_code == 204
    listed = api.call("GET", "/v1/workers").json()["workers"]
    assert [(w["id"], w["concurrency"], w["kinds"], w["state"]) for w in listed] == [
        ("w1", 8, ["email.send"], "running")
    ]
    _problem(api.call("PUT", "/v1/workers/w2", json=info), 422, "invalid-request")


# -- schedules ------------------------------------------------------------------------------------

NIGHTLY = ScheduleSpec("report.nightly", "report.build", "0 3 * * *", "Europe/Berlin", {"days": 1})
MINUTELY = ScheduleSpec("cache:warm", "cache.warm", "* * * * *")  # a colon, as in `:enable`


def test_schedules_are_listed_as_the_library_lists_them(api: Api) -> None:
    assert api.call("GET", "/v1/schedules", "reader").json() == {"schedules": []}
    start = datetime.now(UTC)
    clock = iter([start, start + timedelta(minutes=2)])
    ticking = scheduler(api.config, NIGHTLY, MINUTELY, clock=lambda: next(clock))
    [fired] = ticking.tick()  # the minutely one was due: it has a last run now

    listed = api.call("GET", "/v1/schedules", "reader").json()["schedules"]
    assert [s["name"] for s in listed] == ["cache:warm", "report.nightly"]
    warm, nightly = listed
    assert (warm["last_run_id"], warm["input"]) == (fired.run.id, None)
    assert warm["last_run_at"].endswith(("Z", "+00:00"))
    assert (nightly["kind"], nightly["expression"], nightly["timezone"]) == (
        "report.build",
        "0 3 * * *",
        "Europe/Berlin",
    )
    assert (nightly["input"], nightly["enabled"], nightly["last_run_id"]) == (
        {"days": 1},
        True,
        None,
    )
    remote = [ScheduleModel.model_validate(s).to_schedule() for s in listed]
    assert remote == runce.list_schedules(config=api.config)
    assert api.call("GET", "/v1/schedules", "shop").status_code == 200  # no project's data


def test_disable_and_enable_answer_the_schedule_after_the_change(api: Api) -> None:
    scheduler(api.config, NIGHTLY, MINUTELY)
    off = api.call("POST", "/v1/schedules/cache:warm:disable", "writer")
    assert off.status_code == 200, off.text
    assert (off.json()["name"], off.json()["enabled"]) == ("cache:warm", False)
    [stored] = [s for s in runce.list_schedules(config=api.config) if s.name == "cache:warm"]
    assert ScheduleModel.model_validate(off.json()).to_schedule() == stored
    assert not stored.enabled

    before = datetime.now(UTC)
    on = api.call("POST", "/v1/schedules/cache:warm:enable", "writer").json()
    assert on["enabled"] is True
    assert datetime.fromisoformat(on["next_run_at"]) > before  # from its next tick, no catch-up
    again = api.call("POST", "/v1/schedules/cache:warm:enable", "writer").json()
    assert again["next_run_at"] == on["next_run_at"]  # already on: left where it was
    nightly = [s for s in runce.list_schedules(config=api.config) if s.name == "report.nightly"]
    assert [s.enabled for s in nightly] == [True]


def test_an_unknown_schedule_is_404_not_found(api: Api) -> None:
    for verb in ("enable", "disable"):
        problem = _problem(api.call("POST", f"/v1/schedules/nope:{verb}"), 404, "not-found")
        assert problem["detail"].startswith("no schedule is named 'nope'")


def test_a_token_bound_to_projects_may_not_switch_schedules(api: Api) -> None:
    scheduler(api.config, NIGHTLY)
    refused = api.call("POST", "/v1/schedules/report.nightly:disable", "shop")
    assert "bound to projects" in _problem(refused, 403, "forbidden")["detail"]
    assert [s.enabled for s in runce.list_schedules(config=api.config)] == [True]


# -- health, tasks, errors of every kind --------------------------------------------------------


def test_healthz_needs_no_token_and_names_the_store(api: Api) -> None:
    response = api.call("GET", "/healthz", role=None)
    body = response.json()
    assert (response.status_code, body["status"]) == (200, "ok")
    assert body["store"].startswith("sqlite://")
    assert body["time"]


def test_tasks_lists_the_once_tasks_as_status_json_does(api: Api, tmp_path: Any) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "20260101_seed.py").write_text(
        "import runce\n\n@runce.task(title='seed')\ndef run(ctx):\n    pass\n"
    )
    body = api.call("GET", "/v1/tasks").json()
    assert [(t["id"], t["state"]) for t in body["tasks"]] == [("20260101_seed", "PENDING")]


def test_tasks_without_a_tasks_folder_is_the_problem_status_reports(api: Api) -> None:
    with pytest.raises(TaskLoadError) as local:  # what `runce status` says, exit 2
        tasks_library.task_status(api.config)
    problem = _problem(api.call("GET", "/v1/tasks"), 500, "tasks-unreadable")
    assert problem["detail"] == str(local.value)
    assert "does not exist" in problem["detail"]


def test_unknown_routes_and_methods_are_problems(api: Api) -> None:
    _problem(api.call("GET", "/v1/nothing"), 404, "not-found")
    _problem(api.call("DELETE", "/v1/runs"), 405, "method-not-allowed")


def test_a_body_over_the_limit_is_413(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    small = make_api(tmp_path, {"api": {"max_body": 100}})
    big = {"kind": "email.send", "input": "x" * 200}
    _problem(small.call("POST", "/v1/runs", json=big), 413, "payload-too-large")

    def chunks() -> Any:  # no Content-Length: the limit holds on the streamed body too
        yield b'{"kind": "email.send", "input": "'
        yield b"x" * 200
        yield b'"}'

    streamed = small.call(
        "POST", "/v1/runs", content=chunks(), headers={"content-type": "application/json"}
    )
    _problem(streamed, 413, "payload-too-large")
    assert small.call("GET", "/v1/runs").json()["runs"] == []


def test_rate_limits_answer_429_with_retry_after(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    limited = make_api(tmp_path, {"api": {"rate_limit": {"enqueue": "2/h", "cancel": "1/h"}}})
    limited.enqueue()
    run = limited.enqueue()
    refused = limited.call("POST", "/v1/runs", json={"kind": "email.send"})
    assert int(_problem(refused, 429, "rate-limited") and refused.headers["Retry-After"]) >= 1
    assert limited.enqueue(role="writer")["id"]  # another token has its own bucket
    assert limited.call("POST", f"/v1/runs/{run['id']}:cancel").status_code == 200
    _problem(limited.call("POST", f"/v1/runs/{run['id']}:cancel"), 429, "rate-limited")


def test_an_unexpected_failure_is_500_internal_without_a_traceback(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("secret detail")

    monkeypatch.setattr(api.client.app.state.runce.runs, "get", broken)  # type: ignore[attr-defined]
    response = api.call("GET", "/v1/runs/x")
    body = _problem(response, 500, "internal")
    assert "secret detail" not in response.text
    assert "ZeroDivisionError" not in response.text
    assert body["instance"] == "/v1/runs/x"
    assert "secret detail" in caplog.text


def test_a_store_that_cannot_be_reached_is_503(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from runce.api.app import create_app

    monkeypatch.chdir(tmp_path)
    # Nothing listens on port 9 (discard) here: every connection is refused at once.
    down = {"store": "postgresql://postgres@127.0.0.1:9/test?connect_timeout=2"}
    with TestClient(create_app(down), raise_server_exceptions=False) as client:
        _problem(client.get("/healthz"), 503, "store-unavailable")
        token = {"Authorization": "Bearer rnc_0123456789ab_" + "x" * 43}
        _problem(client.get("/v1/runs", headers=token), 503, "store-unavailable")


def test_a_backfill_is_paused_and_resumed_over_http(api: Api, tmp_path: Any) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "20260101_fill.py").write_text(
        "import runce\n\ntask = runce.Backfill(fetch=lambda ctx, c, n: ([], None), process=print)\n"
    )
    paused = api.call("POST", "/v1/tasks/20260101_fill:pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["requested"] == "pause"
    assert paused.json()["state_before"] == "PENDING"
    [task] = api.call("GET", "/v1/tasks").json()["tasks"]
    assert (task["state"], task["requested"]["command"]) == ("PAUSED", "pause")
    resumed = api.call("POST", "/v1/tasks/20260101_fill:resume").json()
    assert (resumed["requested"], resumed["state_before"]) == ("resume", "PAUSED")
    assert api.call("GET", "/v1/tasks").json()["tasks"][0]["state"] == "PENDING"
    problem = _problem(api.call("POST", "/v1/tasks/nope:cancel"), 422, "invalid-request")
    assert "no task 'nope'" in problem["detail"]
