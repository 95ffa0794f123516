"""The dashboard at /ui in process: sign-in, sessions, CSRF, scopes, escaping, pages and
the live state the pages poll (the browser tests in tests/browser drive the same pages)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from runce.api.ui.render import CSP
from runce.tasks.library import make_task, run_tasks
from tests.server.conftest import Api, make_api

PAGES = ("/ui", "/ui/runs", "/ui/tasks", "/ui/schedules", "/ui/workers")
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def sign_in(api: Api, role: str) -> str:
    """Sign the client in as ``role``; the page's CSRF token for actions."""
    api.client.cookies.clear()
    form = api.client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = api.client.post(
        "/ui/login",
        data={"csrf": csrf.group(1), "token": api.tokens[role], "next": "/ui/runs"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui/runs"
    return action_csrf(api, "/ui/runs")


def action_csrf(api: Api, path: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', api.client.get(path).text)
    assert found is not None
    return found.group(1)


def test_pages_need_a_session_and_send_the_browser_to_sign_in(api: Api) -> None:
    for path in PAGES:
        answer = api.client.get(path, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/ui/login?next=")
    form = api.client.get("/ui/login")
    assert 'type="password"' in form.text
    assert form.headers["content-security-policy"] == CSP


def test_signing_in_sets_a_strict_http_only_cookie(api: Api) -> None:
    api.client.get("/ui/login")
    form = api.client.get("/ui/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None
    answer = api.client.post(
        "/ui/login",
        data={"csrf": csrf.group(1), "token": api.tokens["reader"]},
        follow_redirects=False,
    )
    cookie = answer.headers["set-cookie"].lower()
    assert "runce_session=" in cookie
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/ui" in cookie
    assert "secure" not in cookie  # plain HTTP here; over TLS the cookie is Secure


def test_over_tls_the_session_cookie_is_secure(api: Api) -> None:
    with TestClient(api.client.app, base_url="https://testserver") as tls:
        form = tls.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        assert "secure" in form.headers["set-cookie"].lower()
        answer = tls.post(
            "/ui/login",
            data={"csrf": csrf.group(1), "token": api.tokens["reader"]},
            follow_redirects=False,
        )
        assert "secure" in answer.headers["set-cookie"].lower()


def test_with_secure_cookies_true_the_cookies_are_secure_over_plain_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    always = make_api(tmp_path, {"api": {"secure_cookies": True}})
    form = always.client.get("/ui/login")
    assert "secure" in form.headers["set-cookie"].lower()
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    nonce = form.cookies["runce_sign_in"]
    answer = always.client.post(
        "/ui/login",
        data={"csrf": csrf.group(1), "token": always.tokens["reader"]},
        headers={"Cookie": f"runce_sign_in={nonce}"},  # a Secure cookie is not sent over http
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert "runce_session=" in answer.headers["set-cookie"]
    assert "secure" in answer.headers["set-cookie"].lower()
    always.client.close()


def test_a_token_without_runs_read_may_sign_in_but_sees_nothing(api: Api) -> None:
    form = api.client.get("/ui/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None
    api.client.post("/ui/login", data={"csrf": csrf.group(1), "token": api.tokens["worker"]})
    for path in PAGES:
        answer = api.client.get(path)
        assert answer.status_code == 403, path
        assert "runs:read" in answer.text


def test_a_wrong_token_or_a_missing_sign_in_csrf_is_refused(api: Api) -> None:
    api.client.get("/ui/login")
    csrf = action_csrf(api, "/ui/login")
    wrong = api.client.post("/ui/login", data={"csrf": csrf, "token": "rnc_nope"})
    assert wrong.status_code == 401
    assert "unknown or revoked" in wrong.text
    no_csrf = api.client.post("/ui/login", data={"token": api.tokens["all"]})
    assert no_csrf.status_code == 403


def test_every_page_renders_with_the_security_headers(api: Api) -> None:
    run = api.enqueue(input={"to": "a@example.com"})
    sign_in(api, "all")
    for path in (*PAGES, f"/ui/runs/{run['id']}"):
        answer = api.client.get(path)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.headers["content-security-policy"] == CSP
        assert answer.headers["x-frame-options"] == "DENY"
        assert "<script>" not in answer.text.replace('<script src="/ui/static/app.js" defer>', "")
    assert "style=" not in api.client.get(f"/ui/runs/{run['id']}").text


def test_static_files_are_served_from_the_package(api: Api) -> None:
    css = api.client.get("/ui/static/app.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    js = api.client.get("/ui/static/app.js")
    assert js.headers["content-type"].startswith("text/javascript")
    assert api.client.get("/ui/static/../app.py").status_code == 404


def test_the_dashboard_stays_out_of_the_openapi_document(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/ui")]


def test_stored_strings_are_shown_as_text(api: Api) -> None:
    run = api.enqueue(input={"note": HOSTILE}, correlation_id=HOSTILE[:60])
    sign_in(api, "all")
    for path in (f"/ui/runs/{run['id']}", "/ui/runs"):
        text = api.client.get(path).text
        assert "<img src=x" not in text
        assert "<script>alert" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in api.client.get(f"/ui/runs/{run['id']}").text


def test_a_runs_input_is_shown_with_secrets_masked(api: Api) -> None:
    run = api.enqueue(input={"password": "hunter2", "smtp": {"$secret": "MAIL_KEY"}, "n": 7})
    sign_in(api, "all")
    page = api.client.get(f"/ui/runs/{run['id']}").text
    assert "hunter2" not in page
    assert "*** (secret MAIL_KEY)" in page
    assert "&#34;n&#34;: 7" in page


def test_a_cancel_needs_the_csrf_token_and_runs_write(api: Api) -> None:
    run = api.enqueue()
    csrf = sign_in(api, "all")
    cancel = f"/ui/runs/{run['id']}/cancel"
    assert api.client.post(cancel, data={}).status_code == 403
    assert api.client.post(cancel, data={"csrf": "x" * 64}).status_code == 403
    assert _state(api, run) == "queued"
    done = api.client.post(cancel, data={"csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303
    assert _state(api, run) == "canceled"
    retried = api.client.post(f"/ui/runs/{run['id']}/retry", data={"csrf": csrf})
    assert retried.status_code == 200
    assert _state(api, run) == "queued"


def test_cancels_from_the_dashboard_spend_the_tokens_cancel_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    limited = make_api(tmp_path, {"api": {"rate_limit": {"cancel": "1/h"}}})
    first, second = limited.enqueue(), limited.enqueue()
    csrf = sign_in(limited, "all")
    done = limited.client.post(f"/ui/runs/{first['id']}/cancel", data={"csrf": csrf})
    assert done.status_code == 200  # followed to the run's page
    refused = limited.client.post(f"/ui/runs/{second['id']}/cancel", data={"csrf": csrf})
    error_page(refused, 429, "too many cancel requests")
    assert int(refused.headers["Retry-After"]) >= 1
    assert _state(limited, second) == "queued"
    # The API's cancel takes from the same bucket.
    assert limited.call("POST", f"/v1/runs/{second['id']}:cancel").status_code == 429
    limited.client.close()


def test_a_reader_sees_no_actions_and_a_forged_post_is_refused(api: Api) -> None:
    run = api.enqueue()
    csrf = sign_in(api, "reader")
    page = api.client.get(f"/ui/runs/{run['id']}").text
    assert "/cancel" not in page
    assert "/retry" not in page
    forged = api.client.post(f"/ui/runs/{run['id']}/cancel", data={"csrf": csrf})
    assert forged.status_code == 403
    assert "runs:write" in forged.text
    assert _state(api, run) == "queued"


def test_a_project_bound_token_sees_only_its_projects(api: Api) -> None:
    mine = api.enqueue(project_id="shop")
    other = api.enqueue(project_id="blog")
    sign_in(api, "shop")
    listed = api.client.get("/ui/runs").text
    assert mine["id"] in listed
    assert other["id"] not in listed
    assert api.client.get(f"/ui/runs/{other['id']}").status_code == 403
    assert api.client.get("/ui/runs?project=blog").text.count("may not reach") == 1
    assert api.client.get("/ui/tasks").status_code == 403
    assert "/ui/tasks" not in api.client.get("/ui").text


def test_a_token_bound_to_two_projects_sees_the_runs_of_both_and_no_others(api: Api) -> None:
    shop = api.enqueue(project_id="shop", correlation_id="req-7")
    blog = api.call(
        "POST",
        "/v1/runs",
        json={"kind": "email.send", "project_id": "blog", "correlation_id": "req-7"},
        headers={"Idempotency-Key": "order-7"},
    ).json()
    news = api.enqueue(project_id="news", correlation_id="req-7")
    loose = api.enqueue(correlation_id="req-7")
    sign_in(api, "two")
    ours, theirs = {shop["id"], blog["id"]}, {news["id"], loose["id"]}

    def shown(page: str) -> set[str]:
        return set(re.findall(r'data-run-id="([^"]+)"', page))

    listed = api.client.get("/ui/runs")
    assert "all of them" in listed.text
    assert shown(listed.text) == ours
    assert shown(api.client.get("/ui/runs?project=blog").text) == {blog["id"]}
    assert shown(api.client.get("/ui/runs", params={"q": "req-7"}).text) == ours
    assert shown(api.client.get("/ui/runs", params={"q": "order-7"}).text) == {blog["id"]}
    for run in (shop, blog):
        assert shown(api.client.get("/ui/runs", params={"q": run["id"]}).text) == {run["id"]}
        assert api.client.get(f"/ui/runs/{run['id']}").status_code == 200
        assert api.client.get(f"/ui/live/runs/{run['id']}").status_code == 200
    for run_id in theirs:
        assert shown(api.client.get("/ui/runs", params={"q": run_id}).text) == set()
        assert api.client.get(f"/ui/runs/{run_id}").status_code == 403
    live = api.client.get("/ui/live/runs", params={"id": [*ours, *theirs]}).json()["runs"]
    assert {run["id"] for run in live} == ours


def test_runs_are_filtered_found_and_paged(api: Api) -> None:
    for i in range(55):
        api.enqueue(kind="bulk", input={"i": i})
    keyed = api.call(
        "POST",
        "/v1/runs",
        json={"kind": "other", "correlation_id": "req-42"},
        headers={"Idempotency-Key": "order-9"},
    ).json()
    sign_in(api, "all")
    first = api.client.get("/ui/runs?kind=bulk")
    assert first.text.count('data-run-id="') == 50
    older = re.search(r'rel="next" href="([^"]+)"', first.text)
    assert older is not None
    second = api.client.get(older.group(1).replace("&amp;", "&"))
    assert second.text.count('data-run-id="') == 5
    for text in ("order-9", "req-42", keyed["id"]):
        assert keyed["id"] in api.client.get("/ui/runs", params={"q": text}).text
    assert "not one of" in api.client.get("/ui/runs?state=lost").text
    assert "not a date" in api.client.get("/ui/runs?since=yesterday").text
    assert "not one runce gave out" in api.client.get("/ui/runs?cursor=zzz").text
    assert "NUL" in api.client.get("/ui/runs?kind=a%00b").text
    assert api.client.get("/ui/runs", params={"kind": "k" * 1001}).status_code == 422


def test_the_live_state_follows_the_store(api: Api) -> None:
    run = api.enqueue(kind="live.kind")
    other = api.enqueue(project_id="blog")
    sign_in(api, "shop")
    asked = {"id": [run["id"], other["id"], "gone"]}
    assert api.client.get("/ui/live/runs", params=asked).json()["runs"] == []
    sign_in(api, "all")
    rows = api.client.get("/ui/live/runs", params=asked).json()["runs"]
    assert {r["id"]: r["state"] for r in rows} == {run["id"]: "queued", other["id"]: "queued"}
    api.call("POST", f"/v1/runs/{run['id']}:cancel")
    one = api.client.get(f"/ui/live/runs/{run['id']}").json()
    assert one["runs"][0]["state"] == "canceled"
    api.client.cookies.clear()
    assert api.client.get(f"/ui/live/runs/{run['id']}", follow_redirects=False).status_code == 303


def test_a_run_page_learns_its_worker_times_and_result_live(api: Api) -> None:
    run = api.enqueue()
    sign_in(api, "reader")
    page = api.client.get(f"/ui/runs/{run['id']}").text
    assert re.search(r'<section data-field="outcome" hidden>', page)  # to be filled live
    live = f"/ui/live/runs/{run['id']}"
    queued = api.client.get(live, params={"result": "true"}).json()["runs"][0]
    assert (queued["worker"], queued["started_at"], queued["result"]) == (None, "—", None)
    claimed = api.call(
        "POST", "/v1/runs:claim", json={"worker_id": "w<1>", "lease": 30, "limit": 1}
    ).json()["runs"]
    assert [c["id"] for c in claimed] == [run["id"]]
    fence = {"worker_id": "w<1>", "attempt": 1}
    api.call(
        "POST",
        f"/v1/runs/{run['id']}:succeed",
        json={**fence, "result": {"sent": "<b>yes</b>"}, "output_ref": "s3://out/1"},
    )
    done = api.client.get(live, params={"result": "true"}).json()["runs"][0]
    assert done["state"] == "succeeded"
    assert done["worker"] == "w<1>"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", done["started_at"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", done["finished_at"])
    assert done["result"] == '{\n  "sent": "<b>yes</b>"\n}'  # the page's text, set as text
    assert done["output_ref"] == "s3://out/1"
    unasked = api.client.get(live).json()["runs"][0]  # a page that shows the result already
    assert (unasked["result"], unasked["output_ref"]) == (None, None)
    assert unasked["finished_at"] == done["finished_at"]


def test_the_overview_counts_runs_and_once_tasks(api: Api) -> None:
    api.enqueue(kind="email.send")
    api.enqueue(kind="email.send")
    sign_in(api, "all")
    assert "tasks folder" in api.client.get("/ui").text  # told, and the rest still shown
    made = make_task(api.config, "backfill <b>orders</b>")
    page = api.client.get("/ui").text
    assert re.search(r"<th scope=\"row\"><a [^>]+>email.send</a></th>\s*<td>2</td>", page)
    assert re.search(r"<dt>Pending</dt><dd>1</dd>", page)
    assert "The lock: free" in page
    tasks = api.client.get("/ui/tasks").text
    assert made.stem.split("_")[0] in tasks
    assert "PENDING" in tasks


def test_once_tasks_are_read_on_the_apps_store_and_only_their_latest_attempts(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runce.stores.registry import open_store
    from runce.stores.sql.tracker import SqlTracker
    from tests.stores.records import finished, started

    made = make_task(api.config, "retried often")
    store = open_store(api.config.store)
    for n in range(25):
        failed = finished(started(made.stem), "failed", error_type="E", error_message=f"#{n:02}")
        store.tracker.record(failed, None, None)
    store.close()

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("a page view opened a store, or read the whole history")

    monkeypatch.setattr("runce.runtime.open_store", refused)
    monkeypatch.setattr(SqlTracker, "history", refused)
    sign_in(api, "all")
    page = api.client.get("/ui/tasks")
    assert page.status_code == 200, page.text
    shown = re.findall(r"E: #(\d\d)", page.text)  # the latest 20, newest first
    assert shown == [f"{n:02}" for n in range(24, 4, -1)]
    monkeypatch.setattr(SqlTracker, "latest_attempts", refused)  # the overview counts only
    assert re.search(r"<dt>Pending</dt><dd>1</dd>", api.client.get("/ui").text)
    [live] = api.client.get("/ui/live/tasks").json()["tasks"]
    assert live["state"] == "PENDING"
    [listed] = api.call("GET", "/v1/tasks").json()["tasks"]
    assert listed["state"] == "PENDING"


def test_the_workers_shown_are_those_not_stopped_and_the_last_20_stopped(api: Api) -> None:
    from datetime import timedelta

    from runce.domain.runs import WorkerInfo

    queue = api.client.app.state.runce.queue  # type: ignore[attr-defined]
    now = queue.now()
    for n in range(25):
        seen = now - timedelta(hours=2, minutes=-n)
        queue.worker_seen(WorkerInfo(f"drain-{n:02}", "h", n, seen, seen, 1, (), "stopped"))
    queue.worker_seen(WorkerInfo("live-one", "h", 99, now, now, 4))
    sign_in(api, "all")
    for path in ("/ui/workers", "/ui"):
        page = api.client.get(path).text
        shown = re.findall(r"<code>(drain-\d\d|live-one)</code>", page)
        assert sorted(shown) == sorted(["live-one", *(f"drain-{n:02}" for n in range(5, 25))])
    listed = api.call("GET", "/v1/workers").json()["workers"]
    assert len(listed) == 21
    assert "drain-04" not in {w["id"] for w in listed}


def test_counts_past_the_cap_say_there_are_more(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from runce.api.ui import views

    monkeypatch.setattr(views, "CAP", 2)
    for _ in range(3):
        api.enqueue(kind="many")
    sign_in(api, "all")
    page = api.client.get("/ui").text
    assert '<a href="/ui/runs?state=queued">≥ 2</a>' in page
    assert "counting stopped at 2 queued runs of a kind" in page


def test_a_drifted_task_is_shown_with_what_to_do(api: Api) -> None:
    made = make_task(api.config, "rename column")
    assert run_tasks(api.config).ok
    made.write_text(made.read_text() + "\n# changed after it was applied\n")
    sign_in(api, "all")
    page = api.client.get("/ui/tasks").text
    assert "DRIFTED" in page
    assert "runce repair" in page
    assert "succeeded" in page  # its last attempt, from the history
    assert re.search(r"<dt>Drifted</dt><dd>1</dd>", api.client.get("/ui").text)


def test_signing_out_needs_the_csrf_token(api: Api) -> None:
    csrf = sign_in(api, "all")
    assert api.client.post("/ui/logout", data={}).status_code == 403
    out = api.client.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert api.client.get("/ui", follow_redirects=False).status_code == 303


def _state(api: Api, run: dict[str, Any]) -> str:
    found: str = api.call("GET", f"/v1/runs/{run['id']}").json()["state"]
    return found


def error_page(answer: Any, status: int, words: str) -> None:
    """``answer`` is the dashboard's error page (never problem+json), saying ``words``."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html"), answer.text
    assert answer.headers["content-security-policy"] == CSP
    assert words in answer.text
    assert 'role="alert"' in answer.text


@pytest.mark.parametrize("path", ["/ui/runs/none", "/ui/nothing"])
def test_unknown_pages_answer_404(api: Api, path: str) -> None:
    sign_in(api, "all")
    error_page(api.client.get(path), 404, "Not found")


def test_bad_requests_answer_an_error_page_and_the_api_still_problem_json(api: Api) -> None:
    sign_in(api, "all")
    error_page(api.client.get("/ui/runs/%00"), 422, "is not valid text")
    error_page(api.client.get("/ui/live/runs/%00"), 422, "is not valid text")
    too_long = api.client.get("/ui/runs", params={"kind": "k" * 1001})
    error_page(too_long, 422, "at most 1000 characters")
    error_page(api.client.get("/ui/runs?colour=red"), 422, "no query parameter &#39;colour&#39;")
    error_page(api.client.get("/ui/workers", params={"x": 1}), 422, "Invalid request")
    error_page(api.client.delete("/ui/runs"), 405, "DELETE is not allowed on /ui/runs")
    api_answer = api.call("GET", "/v1/runs/%00")
    assert api_answer.status_code == 422
    assert api_answer.headers["content-type"] == "application/problem+json"
    assert api.call("GET", "/v1/nothing").headers["content-type"] == "application/problem+json"


def test_a_store_that_does_not_answer_is_an_error_page(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runce.errors import StoreUnavailable

    run = api.enqueue()
    sign_in(api, "all")

    def away(*args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("the store at .runce/runce.db does not answer")

    monkeypatch.setattr(api.client.app.state.runce.runs.queue, "get", away)
    for path in (f"/ui/runs/{run['id']}", f"/ui/live/runs/{run['id']}"):
        error_page(api.client.get(path), 503, "the store at .runce/runce.db does not answer")
    assert api.call("GET", f"/v1/runs/{run['id']}").json()["type"].endswith("store-unavailable")


BACKFILL = """
import os
import runce

def fetch(ctx, cursor, size):
    start = cursor or 0
    batch = list(range(start, min(start + size, 100)))
    return batch, (start + len(batch) if start + len(batch) < 100 else None)

def process(ctx, batch):
    if batch[0] == 30 and not os.path.exists({gate!r}):
        raise RuntimeError("stopped at 30 on purpose")

task = runce.Backfill(
    title="fill <b>orders</b>", fetch=fetch, process=process, batch_size=10,
    total=lambda ctx: 100,
)
"""


def _backfill_stopped_at_30(api: Api) -> str:
    """A backfill of 100 items that failed after 30, its checkpoint kept; its id."""
    tasks = api.config.tasks_dir
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / "0001_fill.py").write_text(BACKFILL.format(gate=str(tasks.parent / "gate")))
    assert not run_tasks(api.config).ok
    return "0001_fill"


def _task_state(api: Api, task_id: str) -> str:
    from runce.tasks.library import task_status

    return next(t.state.value for t in task_status(api.config).tasks if t.id == task_id)


def _forms(page: str, task_id: str) -> dict[str, bool]:
    """Each action form of a task on the page: shown (True) or hidden."""
    found = re.findall(
        rf'<form method="post" action="/ui/tasks/{task_id}/(\w+)" data-action="\w+"( hidden)?>',
        page,
    )
    return {action: not hidden for action, hidden in found}


def test_a_backfill_shows_its_progress_and_may_be_paused_resumed_and_canceled(api: Api) -> None:
    task_id = _backfill_stopped_at_30(api)
    csrf = sign_in(api, "all")
    page = api.client.get("/ui/tasks").text
    assert "30 of 100 done (30.0%)" in page
    assert '<progress max="100" value="30" data-field="progress-bar"' in page
    assert "fill &lt;b&gt;orders&lt;/b&gt;" in page
    assert _forms(page, task_id) == {"pause": True, "resume": False, "cancel": True}
    live = api.client.get("/ui/live/tasks").json()["tasks"]
    assert live[0]["progress"].pop("rate_per_second") > 0  # measured, shown while it runs
    assert live == [
        {
            "id": task_id,
            "state": "FAILED",
            "requested": None,
            "progress": {
                "done": 30,
                "total": 100,
                "eta_seconds": None,
                "ranges": 1,
                "finished_ranges": 0,
                "ranges_held": {},
                "cursor": 30,
            },
            "progress_text": "30 of 100 done (30.0%)",
            "percent": 30,
            "actions": ["pause", "cancel"],
        }
    ]

    pause = f"/ui/tasks/{task_id}/pause"
    assert api.client.post(pause, data={}).status_code == 403
    assert api.client.post(pause, data={"csrf": "x" * 64}).status_code == 403
    assert _task_state(api, task_id) == "FAILED"
    answer = api.client.post(pause, data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/tasks"
    assert _task_state(api, task_id) == "PAUSED"
    page = api.client.get("/ui/tasks").text
    assert _forms(page, task_id) == {"pause": False, "resume": True, "cancel": False}
    [live_task] = api.client.get("/ui/live/tasks").json()["tasks"]
    assert (live_task["state"], live_task["requested"]) == ("PAUSED", "pause")
    assert live_task["actions"] == ["resume"]

    resumed = api.client.post(f"/ui/tasks/{task_id}/resume", data={"csrf": csrf})
    assert resumed.status_code == 200  # followed back to the tasks page
    assert _task_state(api, task_id) == "FAILED"
    api.client.post(f"/ui/tasks/{task_id}/cancel", data={"csrf": csrf})
    assert _task_state(api, task_id) == "CANCELED"
    api.client.post(f"/ui/tasks/{task_id}/resume", data={"csrf": csrf})

    (api.config.tasks_dir.parent / "gate").write_text("open")
    assert run_tasks(api.config).ok  # goes on from 30
    page = api.client.get("/ui/tasks").text
    assert _task_state(api, task_id) == "APPLIED"
    assert _forms(page, task_id) == {"pause": False, "resume": False, "cancel": False}
    late = api.client.post(f"/ui/tasks/{task_id}/pause", data={"csrf": csrf})
    assert late.status_code == 409
    assert "already applied" in late.text


def test_task_actions_need_runs_write_on_a_token_bound_to_no_project(api: Api) -> None:
    task_id = _backfill_stopped_at_30(api)
    csrf = sign_in(api, "reader")
    page = api.client.get("/ui/tasks").text
    assert "30 of 100 done" in page
    assert f"/ui/tasks/{task_id}/pause" not in page
    refused = api.client.post(f"/ui/tasks/{task_id}/pause", data={"csrf": csrf})
    assert refused.status_code == 403
    assert "runs:write" in refused.text
    csrf = sign_in(api, "shop")
    assert api.client.get("/ui/tasks").status_code == 403
    assert api.client.get("/ui/live/tasks").status_code == 403
    bound = api.client.post(f"/ui/tasks/{task_id}/pause", data={"csrf": csrf})
    assert bound.status_code == 403
    assert _task_state(api, task_id) == "FAILED"
    api.client.cookies.clear()
    assert api.client.get("/ui/live/tasks", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("task_id", ["0002_nothing", "x%00y", "%F0%9F%92%A5", "a" * 300])
def test_an_action_on_an_unknown_task_answers_404(api: Api, task_id: str) -> None:
    _backfill_stopped_at_30(api)
    csrf = sign_in(api, "all")
    answer = api.client.post(f"/ui/tasks/{task_id}/pause", data={"csrf": csrf})
    assert answer.status_code == 404, answer.text
    assert _task_state(api, "0001_fill") == "FAILED"


def test_a_task_id_with_markup_is_shown_as_text_and_its_actions_work(api: Api) -> None:
    task_id = '0001_<b>&"x'
    tasks = api.config.tasks_dir
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / f"{task_id}.py").write_text("import runce\n\n@runce.task()\ndef run(ctx):\n    pass\n")
    csrf = sign_in(api, "all")
    page = api.client.get("/ui/tasks").text
    assert "<b>&" not in page
    assert "0001_&lt;b&gt;&amp;&#34;x" in page
    action = "/ui/tasks/0001_%3Cb%3E%26%22x/pause"
    assert f'action="{action}"' in page
    assert api.client.post(action, data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert _task_state(api, task_id) == "PAUSED"
    [live] = api.client.get("/ui/live/tasks").json()["tasks"]
    assert (live["id"], live["state"], live["actions"]) == (task_id, "PAUSED", ["resume"])


def test_an_unexpected_failure_is_a_500_page_without_a_traceback(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    run = api.enqueue()
    sign_in(api, "all")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("secret detail")

    monkeypatch.setattr(api.client.app.state.runce.runs, "get", broken)  # type: ignore[attr-defined]
    answer = api.client.get(f"/ui/runs/{run['id']}")
    error_page(answer, 500, "The server failed to answer; its log says why.")
    assert "secret detail" not in answer.text
    assert "ZeroDivisionError" not in answer.text
    assert "secret detail" in caplog.text
    assert api.call("GET", f"/v1/runs/{run['id']}").headers["content-type"] == (
        "application/problem+json"
    )
