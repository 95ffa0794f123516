"""The remote CLI and remote workers with real processes: `runce serve` on a real store,
tokens from `runce tokens create`, and `runce ... --remote` giving what local mode gives."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests import services
from tests.acceptance.conftest import Workspace, assert_one_sentence, output_of, stores_for
from tests.acceptance.test_runs import JOBS, _enqueue_many

pytestmark = pytest.mark.slow

SCOPES = ("--scope", "runs:read", "--scope", "runs:write", "--scope", "runs:work")


class Remote:
    """A workspace whose store is served by `runce serve`, and a token for it."""

    def __init__(self, space: Workspace) -> None:
        self.space = space
        self.log = space.root / "log.txt"
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.token = ""
        self.server: subprocess.Popen[str] | None = None

    def start(self) -> None:
        made = self.space.runce("tokens", "create", "ci", *SCOPES)
        assert made.returncode == 0, output_of(made)
        self.token = made.stdout.strip()
        port = self.url.rsplit(":", 1)[1]
        self.server = self.space.start("serve", "--port", port, "--log-level", "warning")
        deadline = time.monotonic() + 30
        while not self._healthy():
            assert self.server.poll() is None, self.server.communicate()
            assert time.monotonic() < deadline, "runce serve did not start"
            time.sleep(0.1)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def env(self, **extra: str) -> dict[str, str]:
        return {"RUNCE_API_TOKEN": self.token, "RUNCE_TEST_LOG": str(self.log), **extra}

    def local(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.space.runce(*args, **self.env())

    def remote(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.space.runce(*args, "--remote", self.url, **self.env(**env))

    def worker(self, *args: str) -> subprocess.Popen[str]:
        return self.space.start("worker", "--remote", self.url, *args, **self.env())

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            self.server.communicate(timeout=30)


def _free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


WORKER = '[worker]\nhandlers = ["jobs"]\nlease = 6\npoll = 0.2\nbackoff_base = 0.05\n'
WORKER += "shutdown_timeout = 1\n"


def _remote(space: Workspace) -> Iterator[Remote]:
    space.settings += WORKER
    space.write_config()
    (space.root / "jobs.py").write_text(JOBS + TYPED)
    remote = Remote(space)
    remote.start()
    yield remote
    remote.stop()
    space.reap()


TYPED = """

from pydantic import BaseModel


class Order(BaseModel):
    order: int


@runce.job("typed.order")
def typed_order(params: Order) -> int:
    return params.order


@runce.job("limited.serial", concurrency=1, concurrency_key="customer")
def limited_serial(params):
    pass
"""


@pytest.fixture
def sqlite_remote(tmp_path: Path) -> Iterator[Remote]:
    yield from _remote(Workspace(tmp_path, stores_for(tmp_path)["sqlite"]))


@pytest.fixture
def postgres_remote(postgres_server: str, tmp_path: Path) -> Iterator[Remote]:
    schema = f"runce_t_{uuid.uuid4().hex[:12]}"
    space = Workspace(tmp_path, postgres_server, f'schema = "{schema}"\n')
    yield from _remote(space)
    services.drop_schema(postgres_server, schema)


def _same(remote: Remote, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a command locally and remotely: same stdout, same exit code, same error."""
    here, there = remote.local(*args), remote.remote(*args)
    assert (there.stdout, there.returncode) == (here.stdout, here.returncode), (
        output_of(here),
        output_of(there),
    )
    assert _error_line(there) == _error_line(here)
    return there


def _error_line(result: subprocess.CompletedProcess[str]) -> str | None:
    errors = [line for line in result.stderr.splitlines() if line.startswith("runce: ")]
    return errors[-1] if errors else None


# About 30 s of `runce` subprocesses on an idle machine; over 120 s under a loaded suite on
# cores half as fast.
@pytest.mark.timeout(300)
def test_the_remote_cli_prints_what_the_local_one_prints(sqlite_remote: Remote) -> None:
    remote = sqlite_remote
    enqueue = ("runs", "enqueue", "flaky.twice", "--input", '{"fail": 9}', "--max-attempts", "1")
    made = remote.remote(*enqueue, "--idempotency-key", "k-1")
    assert made.returncode == 0, output_of(made)
    assert "server: " + remote.url in made.stderr
    run_id = made.stdout.strip()
    # the same key locally: the same run, printed the same way
    assert _same(remote, *enqueue, "--idempotency-key", "k-1").stdout.strip() == run_id
    queued = _same(remote, "runs", "status", run_id, "--json")
    assert json.loads(queued.stdout)["state"] == "queued"

    drained = remote.worker("--drain", "--json")
    out, err = drained.communicate(timeout=60)
    assert drained.returncode == 0, out + err
    assert json.loads(out)["failed"] == 1

    for args in (
        ("runs", "status", run_id),
        ("runs", "status", run_id, "--json"),
        ("runs", "list"),
        ("runs", "list", "--json", "--state", "failed", "--kind", "flaky.twice"),
        ("runs", "tail", run_id),
        ("runs", "status", "no-such-run"),
        ("runs", "cancel", run_id, "--yes"),
        ("runs", "enqueue", "typed.order", "--input", '{"order": "x"}'),
        ("runs", "enqueue", "no.such.kind"),
        ("runs", "list", "--cursor", "zzz"),
    ):
        _same(remote, *args)
    assert _same(remote, "runs", "tail", run_id).returncode == 1
    assert _same(remote, "runs", "status", "no-such-run").returncode == 5  # not found
    assert _same(remote, "runs", "cancel", run_id, "--yes").returncode == 1

    retried = remote.remote("runs", "retry", run_id)
    assert retried.returncode == 0, output_of(retried)
    assert retried.stdout.startswith(f"queued {run_id} again")
    assert _same(remote, "runs", "retry", run_id).returncode == 1
    canceled = remote.remote("runs", "cancel", run_id, "--yes")
    assert canceled.stdout == f"canceled {run_id}\n"
    assert _same(remote, "runs", "tail", run_id).returncode == 4
    assert _same(remote, "runs", "prune").stdout == "pruned 0 runs\n"
    workers = json.loads(_same(remote, "workers", "--json").stdout)
    assert [w["state"] for w in workers] == ["stopped"]
    # Each worker's limits, as the jobs of the server (remote) or of this machine declare.
    assert workers[0]["limits"] == {"limited.serial": "concurrency 1 per customer"}
    listed = _same(remote, "workers").stdout
    assert "limit of limited.serial: concurrency 1 per customer (across every worker)" in listed


NIGHTLY = '\n\nrunce.schedule("0 3 * * *", "noop.record", {"from": "cron"}, name="nightly")\n'


def _stored(remote: Remote) -> dict[str, object]:
    """The one schedule, as `runce schedules list --json` prints it from the store."""
    listed = remote.local("schedules", "list", "--json")
    assert listed.returncode == 0, output_of(listed)
    [schedule] = json.loads(listed.stdout)
    assert isinstance(schedule, dict)
    return schedule


def test_schedules_are_listed_and_switched_on_the_server(sqlite_remote: Remote) -> None:
    remote = sqlite_remote
    assert "no schedule is stored yet" in _same(remote, "schedules", "list").stdout
    with (remote.space.root / "jobs.py").open("a") as jobs:
        jobs.write(NIGHTLY)
    stored = remote.local("worker", "--drain")  # a worker on the store stores the schedules
    assert stored.returncode == 0, output_of(stored)
    listed = json.loads(_same(remote, "schedules", "list", "--json").stdout)
    assert [(s["name"], s["enabled"], s["input_json"]) for s in listed] == [
        ("nightly", True, '{"from":"cron"}')
    ]

    off = remote.remote("schedules", "disable", "nightly")
    assert (off.returncode, off.stdout) == (0, "disabled nightly\n"), output_of(off)
    assert "server: " + remote.url in off.stderr
    assert _stored(remote)["enabled"] is False  # the store has it off
    table = _same(remote, "schedules", "list").stdout
    assert table.splitlines()[1].split()[:2] == ["OFF", "nightly"], table

    on = remote.remote("schedules", "enable", "nightly")
    assert on.returncode == 0, output_of(on)
    now_on = _stored(remote)
    next_run = datetime.fromisoformat(str(now_on["next_run_at"]))
    assert now_on["enabled"] is True
    assert on.stdout == f"enabled nightly: next run at {next_run:%Y-%m-%d %H:%M:%S} UTC\n"
    _same(remote, "schedules", "list")

    unknown = _same(remote, "schedules", "disable", "nope")
    assert unknown.returncode == 5  # not found
    assert_one_sentence(unknown.stderr, "no schedule is named 'nope'")
    made = remote.space.runce(
        "tokens", "create", "shop", "--scope", "runs:write", "--project", "shop"
    )
    bound = remote.remote("schedules", "disable", "nightly", RUNCE_API_TOKEN=made.stdout.strip())
    assert bound.returncode == 2
    assert_one_sentence(bound.stderr, "forbidden", "bound to projects")
    assert _stored(remote)["enabled"] is True


def test_a_bare_remote_takes_the_url_from_the_environment(sqlite_remote: Remote) -> None:
    remote = sqlite_remote
    listed = remote.space.runce("runs", "list", "--remote", **remote.env(RUNCE_API_URL=remote.url))
    assert (listed.returncode, listed.stdout) == (0, "no runs\n")
    unset = remote.space.runce("runs", "list", "--remote", **remote.env())
    assert unset.returncode == 2
    assert_one_sentence(unset.stderr, "RUNCE_API_URL", "not set")
    not_url = remote.space.runce("runs", "list", "--remote", "nonsense", **remote.env())
    assert not_url.returncode == 2
    assert_one_sentence(not_url.stderr, "--remote 'nonsense' is not a URL")


def test_a_bare_remote_works_before_the_arguments_too(sqlite_remote: Remote) -> None:
    remote = sqlite_remote
    env = remote.env(RUNCE_API_URL=remote.url)
    made = remote.space.runce("runs", "enqueue", "--remote", "noop.record", "--input", "{}", **env)
    assert made.returncode == 0, output_of(made)
    assert "server: " + remote.url in made.stderr
    run_id = made.stdout.strip()
    before = remote.space.runce("runs", "status", "--remote", run_id, "--json", **env)
    after = remote.space.runce("runs", "status", run_id, "--json", "--remote", **env)
    assert (before.returncode, before.stdout) == (0, after.stdout), output_of(before)
    assert json.loads(before.stdout)["id"] == run_id
    given = remote.space.runce("runs", "status", "--remote", remote.url, run_id, **remote.env())
    assert given.returncode == 0, output_of(given)
    canceled = remote.space.runce("runs", "cancel", "--remote", run_id, "--yes", **env)
    assert canceled.stdout == f"canceled {run_id}\n", output_of(canceled)
    # a word that looks like a server without its scheme is still taken as the URL
    schemeless = remote.space.runce("runs", "status", "--remote", "127.0.0.1:8080", run_id, **env)
    assert schemeless.returncode == 2
    assert_one_sentence(schemeless.stderr, "--remote '127.0.0.1:8080' is not a URL")


def test_a_dead_server_or_a_bad_token_is_one_sentence(sqlite_remote: Remote) -> None:
    remote = sqlite_remote
    dead = f"http://127.0.0.1:{_free_port()}"
    for args in (("runs", "list"), ("runs", "status", "x"), ("workers",)):
        gone = remote.space.runce(*args, "--remote", dead, **remote.env())
        assert gone.returncode == 2, output_of(gone)
        assert_one_sentence(gone.stderr, f"cannot reach the runce server at {dead}")
    bad = remote.remote("runs", "list", RUNCE_API_TOKEN="rnc_000000000000_" + "x" * 43)
    assert bad.returncode == 2
    assert_one_sentence(bad.stderr, remote.url, "unauthorized", "unknown or revoked")
    missing = remote.remote("runs", "list", RUNCE_API_TOKEN="")
    assert missing.returncode == 2
    assert_one_sentence(missing.stderr, "unauthorized", "no token was given")


def test_a_remote_worker_on_a_dead_server_keeps_trying_and_stops_on_sigterm(
    sqlite_remote: Remote,
) -> None:
    remote = sqlite_remote
    remote.stop()
    worker = remote.worker("--kinds", "noop.record")
    deadline = time.monotonic() + 30
    seen = ""
    while "cannot reach the runce server" not in seen:
        assert time.monotonic() < deadline, seen
        assert worker.stderr is not None
        seen += worker.stderr.readline()
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, seen + out + err
    assert "Traceback" not in seen + err


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_two_remote_workers_execute_every_run_exactly_once(postgres_remote: Remote) -> None:
    remote = postgres_remote
    ids = _enqueue_many(remote.space, "noop.record", 1000)
    workers = [
        remote.worker("--concurrency", "8", "--drain", "--log-level", "warning") for _ in range(2)
    ]
    for proc in workers:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, out + err
    executed = Counter(line.split()[0] for line in remote.lines())
    assert set(executed) == set(ids)
    assert set(executed.values()) == {1}, "a run was executed twice"
    assert len({line.split()[2] for line in remote.lines()}) == 2, "one worker did all"
    for state in ("queued", "running", "failed", "canceled"):
        page = json.loads(remote.remote("runs", "list", "--state", state, "--json").stdout)
        assert page["runs"] == [], state
    succeeded = json.loads(
        remote.remote("runs", "list", "--state", "succeeded", "--json", "--limit", "100").stdout
    )
    assert succeeded["next_cursor"] is not None


@pytest.mark.postgres
def test_a_killed_remote_worker_loses_no_run(postgres_remote: Remote) -> None:
    remote = postgres_remote
    remote.space.settings = remote.space.settings.replace("lease = 6", "lease = 1.5")
    remote.space.write_config()
    ids = _enqueue_many(remote.space, "slow.record", 3, "{'seconds': 3}")
    victim = remote.worker("--concurrency", "3")
    deadline = time.monotonic() + 30
    while sum(line.startswith("start") for line in remote.lines()) < 3:
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, remote.lines()
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)

    rescuer = remote.worker("--concurrency", "3", "--max-time", "60")
    try:
        for run_id in ids:
            tail = remote.remote("runs", "tail", run_id, "--timeout", "90")
            assert tail.returncode == 0, output_of(tail)
    finally:
        rescuer.send_signal(signal.SIGTERM)
        rescuer.communicate(timeout=30)
    for run_id in ids:
        run = json.loads(remote.remote("runs", "status", run_id, "--json").stdout)
        assert (run["state"], run["attempt"]) == ("succeeded", 2)
        assert [a["outcome"] for a in run["attempts"]] == ["lease-expired"]
    done = [line for line in remote.lines() if line.startswith("done")]
    assert sorted(line.split()[1] for line in done) == sorted(ids)
