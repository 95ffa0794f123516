"""The real ``runce`` command on MongoDB: the seed's configuration, a lease stolen from a
paused runner, a killed runner, a stale lease, transactional tasks and connection errors.
(The shared acceptance tests also run on MongoDB through the ``workspace`` fixture.)"""

from __future__ import annotations

import json
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymongo
import pytest

from tests.acceptance.conftest import (
    Workspace,
    all_lines,
    assert_one_sentence,
    output_of,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.mongo]

Raw = pymongo.database.Database[dict[str, Any]]


class SeedWorkspace(Workspace):
    """A workspace configured with the seed's ``tracker = { type = "mongo", … }`` table."""

    def __init__(self, root: Path, server: str, database: str, settings: str = "") -> None:
        self.server, self.database = server, database
        super().__init__(root, f"{server}/{database}", settings)

    def write_config(self, extra: str = "") -> None:
        tracker = (
            'tracker = { type = "mongo", options = { '
            f'uri = "{self.server}", db = "{self.database}", '
            'appliedCollection = "runce.applied", lockCollection = "runce.lock" } }\n'
        )
        (self.root / "runce.toml").write_text(tracker + self.settings + extra)


@pytest.fixture
def database(mongo_server: str) -> Iterator[str]:
    name = f"runce_t_{uuid.uuid4().hex[:12]}"
    yield name
    with pymongo.MongoClient(mongo_server) as client:
        client.drop_database(name)


@pytest.fixture
def raw(mongo_server: str, database: str) -> Iterator[Raw]:
    with pymongo.MongoClient(mongo_server, tz_aware=True) as client:
        yield client[database]


@pytest.fixture
def seed(tmp_path: Path, mongo_server: str, database: str) -> SeedWorkspace:
    return SeedWorkspace(tmp_path, mongo_server.rstrip("/"), database)


def _server_now(raw: Raw) -> datetime:
    local_time = raw.client.admin.command("hello")["localTime"]
    return local_time if local_time.tzinfo else local_time.replace(tzinfo=UTC)


def _slow_task(workspace: Workspace, task_id: str, started: Path, log: Path) -> None:
    """Signals that it started, then works in short steps until ``go-fast`` exists."""
    workspace.task(
        task_id,
        f"""
        import time

        @runce.task(title="slow")
        def run(ctx):
            open({str(started)!r}, "w").close()
            go_fast = ctx.config.base_dir / "go-fast"
            for _ in range(600):
                if go_fast.exists():
                    break
                time.sleep(0.05)
            with open({str(log)!r}, "a") as handle:
                handle.write({task_id!r} + "\\n")
        """,
    )


def test_the_seeds_tracker_configuration_works_end_to_end(seed: SeedWorkspace, raw: Raw) -> None:
    log = seed.root / "log"
    seed.appending_task("2025-10-01T120000.init-queues", log)
    ran = seed.runce("run")
    assert ran.returncode == 0, output_of(ran)
    assert f"store: {seed.server} (database {seed.database})" in ran.stdout

    status = json.loads(seed.runce("status", "--json").stdout)
    assert [t["state"] for t in status["tasks"]] == ["APPLIED"]
    [listed] = json.loads(seed.runce("list", "--json").stdout)
    assert set(listed) >= {"id", "name", "checksum", "appliedAt", "durationMs", "status", "error"}
    assert (listed["id"], listed["status"]) == ("2025-10-01T120000.init-queues", "success")
    doc = raw["runce.applied"].find_one({"id": "2025-10-01T120000.init-queues"})
    assert doc is not None
    assert doc["name"] == "append 2025-10-01T120000.init-queues"
    assert seed.runce("run").returncode == 0
    assert all_lines(log) == ["2025-10-01T120000.init-queues"]


def test_a_runner_paused_past_its_lease_stops_before_its_next_write(
    seed: SeedWorkspace, raw: Raw
) -> None:
    started, log = seed.root / "started", seed.root / "log"
    _slow_task(seed, "2025-01-01.slow", started, log)
    seed.appending_task("2025-01-02.after", log)
    seed.write_config("[lock]\nttl = 1.5\n")

    paused = seed.start("run")
    wait_for(started)
    paused.send_signal(signal.SIGSTOP)
    try:
        time.sleep(2.0)  # past the 1.5 s lease: nobody renewed it
        (seed.root / "go-fast").touch()
        taker = seed.runce("run")
        assert taker.returncode == 0, output_of(taker)
        assert "interrupted" in taker.stdout
    finally:
        paused.send_signal(signal.SIGCONT)
    code = paused.wait(timeout=30)
    out, err = paused.communicate()

    assert code == 1, out + err
    assert "lock lost" in err
    assert "Traceback" not in err
    history = json.loads(seed.runce("history", "2025-01-01.slow", "--json").stdout)
    assert [h["status"] for h in history] == ["interrupted", "succeeded"]
    assert history[0]["pid"] == paused.pid  # its attempt stays closed as the taker left it
    # The paused runner's body finished its own loop, but it recorded nothing and started
    # nothing more: the next task ran once, by the taker.
    assert Counter(all_lines(log))["2025-01-02.after"] == 1
    [after] = json.loads(seed.runce("history", "2025-01-02.after", "--json").stdout)
    assert (after["status"], after["pid"] != paused.pid) == ("succeeded", True)


def test_a_killed_runners_lease_is_taken_once_it_expires(seed: SeedWorkspace, raw: Raw) -> None:
    started, log = seed.root / "started", seed.root / "log"
    _slow_task(seed, "2025-01-01.slow", started, log)
    seed.write_config("[lock]\nttl = 2\n")
    victim = seed.start("run")
    wait_for(started)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    status = json.loads(seed.runce("status", "--json").stdout)
    assert status["lock"]["state"] == "dead"
    assert [t["state"] for t in status["tasks"]] == ["INTERRUPTED"]

    # Seen from another machine, the dead pid cannot be tested: only the lease's end frees
    # it. (Pushed 3 s ahead from now, so a slow start of the next runner cannot hide it.)
    until = _server_now(raw) + timedelta(seconds=3)
    raw["runce.lock"].update_one(
        {"_id": "global"}, {"$set": {"machine": "elsewhere/boot/1", "leaseUntil": until}}
    )
    (seed.root / "go-fast").touch()
    rerun = seed.runce("run", "--wait", "15")
    assert rerun.returncode == 0, output_of(rerun)
    assert "interrupted" in rerun.stdout
    assert all_lines(log) == ["2025-01-01.slow"]
    history = json.loads(seed.runce("history", "--json").stdout)
    assert [h["status"] for h in history] == ["interrupted", "succeeded"]
    assert datetime.fromisoformat(history[1]["started_at"]) >= until - timedelta(milliseconds=50)


def test_a_killed_runner_on_this_machine_frees_the_lock_at_once(seed: SeedWorkspace) -> None:
    started, log = seed.root / "started", seed.root / "log"
    _slow_task(seed, "2025-01-01.slow", started, log)
    seed.write_config("[lock]\nttl = 60\n")
    victim = seed.start("run")
    wait_for(started)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    (seed.root / "go-fast").touch()
    begun = time.monotonic()
    rerun = seed.runce("run")
    assert rerun.returncode == 0, output_of(rerun)
    assert time.monotonic() - begun < 10
    assert all_lines(log) == ["2025-01-01.slow"]


def test_unlock_shows_and_clears_a_stale_lease(seed: SeedWorkspace, raw: Raw) -> None:
    now = _server_now(raw)
    lease = {
        "_id": "global",
        "owner": "ci-box",
        "host": "other-host",
        "pid": 4242,
        "machine": "other-host/boot/1",
        "token": "t-1",
        "since": now - timedelta(minutes=5),
    }
    raw["runce.lock"].insert_one({**lease, "leaseUntil": now + timedelta(minutes=5)})
    held = seed.runce("unlock")
    assert held.returncode == 1
    assert "lock: held by ci-box (other-host pid 4242)" in held.stdout
    assert "runce unlock --force" in held.stderr

    raw["runce.lock"].update_one({"_id": "global"}, {"$set": {"leaseUntil": now}})
    cleared = seed.runce("unlock")
    assert cleared.returncode == 0, output_of(cleared)
    assert "lock: expired, left by ci-box (other-host pid 4242)" in cleared.stdout
    assert "cleared" in cleared.stdout
    assert "lock: free" in seed.runce("unlock").stdout
    assert raw["runce.lock"].count_documents({}) == 0

    raw["runce.lock"].insert_one({**lease, "leaseUntil": now + timedelta(minutes=5)})
    forced = seed.runce("unlock", "--force", "--yes")
    assert forced.returncode == 0, output_of(forced)
    assert raw["runce.lock"].count_documents({}) == 0


def test_a_transactional_task_commits_its_writes_with_its_record(
    seed: SeedWorkspace, raw: Raw
) -> None:
    body = """
        @runce.task(title="{title}", transactional=True)
        def run(ctx):
            widgets = ctx.session.client[{database!r}]["widgets"]
            widgets.insert_one({{"task": {title!r}}}, session=ctx.session)
            {ending}
        """
    seed.task("2025-01-01.good", body.format(title="good", database=seed.database, ending="pass"))
    seed.task(
        "2025-01-02.bad",
        body.format(title="bad", database=seed.database, ending="raise ValueError('no')"),
    )
    ran = seed.runce("run")
    assert ran.returncode == 1, output_of(ran)
    assert [w["task"] for w in raw["widgets"].find()] == ["good"]
    states = {
        t["id"]: t["state"] for t in json.loads(seed.runce("status", "--json").stdout)["tasks"]
    }
    assert states == {"2025-01-01.good": "APPLIED", "2025-01-02.bad": "FAILED"}
    history = json.loads(seed.runce("history", "2025-01-02.bad", "--json").stdout)
    assert [(h["status"], h["error_type"]) for h in history] == [("failed", "ValueError")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("command", ["run", "status"])
def test_an_unreachable_server_exits_2_with_one_sentence(tmp_path: Path, command: str) -> None:
    port = _free_port()
    workspace = Workspace(tmp_path, "sqlite:///unused.db")
    workspace.task("2025-01-01.fine", "@runce.task\ndef run(ctx):\n    pass\n")
    url = f"mongodb://127.0.0.1:{port}/infra?serverSelectionTimeoutMS=300"
    result = workspace.runce(command, RUNCE_STORE_URL=url)
    assert result.returncode == 2, output_of(result)
    assert_one_sentence(result.stderr, f"127.0.0.1:{port}", "database infra", "did not answer")


@pytest.mark.parametrize(
    ("url", "needles"),
    [
        ("mongodb://127.0.0.1:99999/infra", ["mongodb://127.0.0.1:99999/infra", "is not valid"]),
        ("mongodb://127.0.0.1:27017", ["names no database"]),
    ],
    ids=["bad-port", "no-database"],
)
def test_a_bad_url_exits_2_with_one_sentence(tmp_path: Path, url: str, needles: list[str]) -> None:
    workspace = Workspace(tmp_path, "sqlite:///unused.db")
    workspace.task("2025-01-01.fine", "@runce.task\ndef run(ctx):\n    pass\n")
    result = workspace.runce("run", RUNCE_STORE_URL=url)
    assert result.returncode == 2, output_of(result)
    assert_one_sentence(result.stderr, *needles)
