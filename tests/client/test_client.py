"""``runce.Client`` against a real server: the library's records and errors, over HTTP."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta

import httpx
import pytest

import runce
from runce.api.client import Client
from runce.errors import (
    AuthError,
    IdempotencyConflict,
    IllegalTransition,
    InvalidInput,
    RateLimited,
    RemoteError,
    ServerUnavailable,
    TaskLoadError,
    UnknownRun,
    UnknownSchedule,
    UsageError,
)
from runce.runs.library import worker
from runce.runs.schedules import ScheduleSpec
from tests.client.conftest import Server, free_port, serve
from tests.stored_schedules import scheduler


def _drain(server: Server) -> runce.WorkerSummary:
    from runce.api.remote_queue import HttpRunQueue

    queue = HttpRunQueue(server.client("worker"), long_poll=0)
    return worker(server.config, drain=True, queue=queue).run()


def test_the_client_returns_the_records_the_library_returns(server: Server) -> None:
    client = server.client()
    later = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    run = client.enqueue(
        "client.echo",
        {"n": 1},
        idempotency_key="order-1",
        run_at=later,
        max_attempts=2,
        priority=3,
        project_id="shop",
        correlation_id="corr-1",
    )
    assert run == runce.get_run(run.id, config=server.config)
    assert (run.state, run.priority, run.max_attempts, run.run_at) == ("queued", 3, 2, later)
    assert client.get_run(run.id) == run
    assert client.list_runs(project_id="shop").runs == [run]
    assert client.attempts(run.id) == []


def test_an_idempotency_key_returns_the_same_run_and_refuses_another_input(
    server: Server,
) -> None:
    client = server.client()
    first, created = client.enqueue_answer("client.echo", {"n": 1}, idempotency_key="k")
    again, created_again = client.enqueue_answer("client.echo", {"n": 1}, idempotency_key="k")
    assert (again, created, created_again) == (first, True, False)
    with pytest.raises(IdempotencyConflict, match="idempotency key 'k'"):
        client.enqueue("client.echo", {"n": 2}, idempotency_key="k")


def test_pages_walk_every_run_newest_first(server: Server) -> None:
    client = server.client()
    ids = [client.enqueue("client.echo", {"n": n}).id for n in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        page = client.list_runs(kind="client.echo", state="queued", cursor=cursor, limit=2)
        seen += [r.id for r in page.runs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ids[::-1]
    since = client.get_run(ids[2]).created_at
    newer = client.list_runs(since=since, before=since + timedelta(days=1)).runs
    assert {r.id for r in newer} >= set(ids[3:])


def test_pages_walk_every_run_oldest_first(server: Server) -> None:
    client = server.client()
    ids = [client.enqueue("client.echo", {"n": n}).id for n in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        page = client.list_runs(kind="client.echo", order="oldest", cursor=cursor, limit=2)
        seen += [r.id for r in page.runs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ids


def test_a_remote_worker_runs_what_the_client_enqueued(server: Server) -> None:
    client = server.client()
    good = client.enqueue("client.echo", {"n": 7})
    bad = client.enqueue("client.echo", {"fail": True})
    summary = _drain(server)
    assert (summary.succeeded, summary.failed) == (1, 1)

    done = client.wait(good.id, timeout=30)
    assert (done.state, done.result, done.progress) == ("succeeded", {"echo": {"n": 7}}, 50)
    assert done.progress_message == "half way"
    failed = client.wait(bad.id)
    assert failed.state == "failed"
    assert [a.outcome for a in client.attempts(bad.id)] == ["failed"]
    # The job registry is the process's: other tests' kinds may be there too.
    assert any({"client.echo", "client.signup"} <= set(w.kinds) for w in client.workers())

    assert client.prune_runs(succeeded_after=0, failed_after=0) == 2
    with pytest.raises(UnknownRun):
        client.get_run(good.id)


def test_wait_gives_up_after_its_timeout(server: Server) -> None:
    client = server.client()
    run = client.enqueue("client.echo", {})
    assert client.wait(run.id, timeout=0.1).state == "queued"


def test_cancel_and_retry_keep_the_state_machine(server: Server) -> None:
    client = server.client()
    run = client.enqueue("client.echo", {}, run_at=datetime.now(UTC) + timedelta(hours=1))
    assert client.cancel_run(run.id).state == "canceled"
    with pytest.raises(IllegalTransition, match="it cannot be canceled"):
        client.cancel_run(run.id)
    again = client.retry_run(run.id)
    assert again.state == "queued"
    with pytest.raises(IllegalTransition, match="only failed or canceled runs"):
        client.retry_run(run.id)
    with pytest.raises(UnknownRun, match="no run has the id 'nope'"):
        client.cancel_run("nope")


def test_invalid_input_has_the_field_errors_a_local_enqueue_gives(server: Server) -> None:
    bad = {"email": "nobody", "age": 3}
    with pytest.raises(InvalidInput) as remote:
        server.client().enqueue("client.signup", bad)
    with pytest.raises(InvalidInput) as local:
        runce.enqueue("client.signup", bad, config=server.config)
    assert [list(e["loc"]) for e in remote.value.errors] == [
        list(e["loc"]) for e in local.value.errors
    ]
    assert {"email", "age"} == {e["loc"][0] for e in remote.value.errors}


def test_requests_the_server_finds_invalid_are_usage_errors(server: Server) -> None:
    client = server.client()
    with pytest.raises(UsageError, match="cursor 'zzz'"):
        client.list_runs(cursor="zzz")
    with pytest.raises(UsageError, match="limit"):
        client.list_runs(limit=500)
    with pytest.raises(UsageError, match="a run id is empty"):
        client.get_run("")


def test_tokens_are_checked(server: Server) -> None:
    run = server.client().enqueue("client.echo", {})
    with pytest.raises(AuthError, match="no token was given") as missing:
        server.client(None).get_run(run.id)
    assert missing.value.status == 401
    with pytest.raises(AuthError, match="unknown or revoked"):
        Client(server.url, "rnc_000000000000_" + "x" * 43).get_run(run.id)
    with pytest.raises(AuthError) as scope:
        server.client("reader").enqueue("client.echo", {})
    assert (scope.value.status, scope.value.problem_type, scope.value.exit_code) == (
        403,
        "forbidden",
        2,
    )
    with pytest.raises(AuthError, match="project"):
        server.client("shop").get_run(run.id)


def test_the_server_side_of_once_tasks_and_health(server: Server) -> None:
    client = server.client()
    assert client.tasks()["tasks"] == []
    health = server.client(None).health()
    assert health["status"] == "ok"


def test_any_key_the_library_takes_goes_over_http_and_is_the_same_key(server: Server) -> None:
    client = server.client()
    for key in ("welcome Zoë", " padded ", "50%off", "ключ-🔑" * 40):
        run = client.enqueue("client.echo", {"n": 1}, idempotency_key=key)
        assert run.idempotency_key == key
        again = runce.enqueue("client.echo", {"n": 1}, idempotency_key=key, config=server.config)
        assert again.id == run.id
    with pytest.raises(UsageError, match="U\\+000A") as refused:
        client.enqueue("client.echo", {"n": 1}, idempotency_key="two\nlines")
    with pytest.raises(UsageError) as local:
        runce.enqueue("client.echo", {"n": 1}, idempotency_key="two\nlines", config=server.config)
    assert str(refused.value) == str(local.value)


def test_a_server_without_its_tasks_folder_raises_what_status_raises(server: Server) -> None:
    server.config.tasks_dir.rmdir()
    with pytest.raises(TaskLoadError) as local:
        runce.task_status(server.config)
    with pytest.raises(TaskLoadError) as remote:
        server.client().tasks()
    assert str(remote.value) == str(local.value)
    assert remote.value.exit_code == 2


NIGHTLY = ScheduleSpec(
    "report.nightly", "client.echo", "0 3 * * *", "Europe/Berlin", {"b": [1, 2.5], "a": "ü"}
)
EVERY_MINUTE = ScheduleSpec("echo:minutely", "client.echo", "* * * * *")


def test_schedules_come_back_as_the_library_returns_them(server: Server) -> None:
    client = server.client("reader")
    assert client.list_schedules() == []
    start = datetime.now(UTC)
    clock = iter([start, start + timedelta(minutes=2)])
    [fired] = scheduler(server.config, NIGHTLY, EVERY_MINUTE, clock=lambda: next(clock)).tick()

    listed = client.list_schedules()
    assert listed == runce.list_schedules(config=server.config)
    assert [(s.name, s.enabled) for s in listed] == [
        ("echo:minutely", True),
        ("report.nightly", True),
    ]
    assert (listed[0].last_run_id, listed[1].last_run_id) == (fired.run.id, None)
    assert listed[1].input_json == '{"a":"ü","b":[1,2.5]}'  # the stored text, unchanged
    assert server.client("shop").list_schedules() == listed  # schedules have no project


def test_schedules_are_switched_off_and_on(server: Server) -> None:
    scheduler(server.config, NIGHTLY, EVERY_MINUTE)
    client = server.client()
    off = client.disable_schedule("echo:minutely")
    assert not off.enabled
    assert off in runce.list_schedules(config=server.config)
    on = client.enable_schedule("echo:minutely")
    assert on.enabled
    assert on == client.list_schedules()[0]
    with pytest.raises(UnknownSchedule, match="no schedule is named 'nope'") as unknown:
        client.enable_schedule("nope")
    assert unknown.value.exit_code == 5  # not found
    with pytest.raises(UnknownSchedule):
        client.disable_schedule("nope")
    with pytest.raises(UsageError, match="a schedule name is empty"):
        client.enable_schedule("")


def test_switching_a_schedule_needs_a_token_bound_to_no_project(server: Server) -> None:
    scheduler(server.config, NIGHTLY)
    with pytest.raises(AuthError, match="bound to projects") as bound:
        server.client("shop").disable_schedule("report.nightly")
    assert bound.value.status == 403
    with pytest.raises(AuthError, match="runs:write"):
        server.client("reader").disable_schedule("report.nightly")
    assert [s.enabled for s in runce.list_schedules(config=server.config)] == [True]


def test_an_unreachable_server_is_one_sentence_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnavailable) as caught, Client(url, "t") as client:
        client.get_run("x")
    assert str(caught.value).startswith(f"cannot reach the runce server at {url}: ")
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert caught.value.exit_code == 2


def test_a_server_that_does_not_answer_times_out() -> None:
    with closing(socket.socket()) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections are accepted by the kernel, never answered
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ServerUnavailable, match="did not answer GET") as caught:
            Client(url, "t", timeout=0.2).get_run("x")
    assert isinstance(caught.value.__cause__, httpx.TimeoutException)


class _NotRunce(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 502 if "broken" in self.path else 404
        self.send_response(code)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>nope</html>")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def not_runce() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotRunce)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_server_that_is_not_runce_is_named(not_runce: str) -> None:
    with pytest.raises(RemoteError, match="is it a runce server") as caught:
        Client(not_runce, "t").get_run("x")
    assert caught.value.status == 404
    with pytest.raises(ServerUnavailable, match="502"):
        Client(not_runce, "t").get_run("broken")


def test_a_url_with_a_path_the_server_does_not_have(server: Server) -> None:
    with pytest.raises(RemoteError, match="has no such route"):
        Client(server.url + "/elsewhere", server.tokens["all"]).get_run("x")


@pytest.mark.parametrize("url", ["localhost:8080", "", "ftp://example.com"])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(UsageError, match="is not the URL of a runce server"):
        Client(url)


def test_rate_limits_say_when_to_try_again(tmp_path: object) -> None:
    from pathlib import Path

    from runce.config import resolve_config
    from runce.runs.tokens import create_token

    root = Path(str(tmp_path))
    config = resolve_config(
        {
            "store": f"sqlite:///{root / 'runce.db'}",
            "api": {"rate_limit": {"enqueue": "1/h", "cancel": "off"}},
        }
    )
    urls = serve(config)
    url = next(urls)
    try:
        with Client(url, create_token("t", ["runs:write"], config=config).text) as client:
            client.enqueue("any.kind", {})
            with pytest.raises(RateLimited) as caught:
                client.enqueue("any.kind", {})
        assert caught.value.retry_after > 0
        assert caught.value.status == 429
    finally:
        for _ in urls:
            pass


def test_a_naive_time_is_taken_as_utc(server: Server) -> None:
    naive = datetime(2030, 1, 2, 3, 4, 5)
    run = server.client().enqueue("client.echo", {}, run_at=naive)
    assert run.run_at == naive.replace(tzinfo=UTC)
    assert repr(server.client()) == f"runce.Client({server.url!r})"
