"""A parallel backfill shared by several processes (docs/backfills.md#ranges-on-several-hosts):
a coordinator `runce run` and helpers `runce backfill join ID` claim its key ranges through the
store. A helper killed with SIGKILL mid-range loses its range to another process once its
claim runs out; afterwards every row was processed (exactly once when transactional, at most
one batch twice per kill when not) and the task was applied once. A pause asked from another
process stops the helpers as well as the coordinator."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from runce.config import resolve_config
from runce.stores.registry import open_store
from tests.acceptance.conftest import (
    Workspace,
    mongo_workspace,
    output_of,
    postgres_workspace,
    stores_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TASK = "2025-08-01.shared-fill"
COUNT = 3000
PARTS = 6
BATCH = 25
TTL = 2.0  # lock.ttl: a range's claim, too, runs out this long after its holder died
# On SQLite a transactional batch holds the database's one writer until it commits, so while
# the doomed helper holds its batch open nobody renews a lease: the lock and the claims lapse
# TTL after the hold. The status must be read before then, so there the lease is long.
HELD_TTL = 20.0
PATIENCE = 180.0  # generous: the machine running the tests may be busy


def _task_body(store: str, table: str, log: Path, transactional: bool) -> str:
    """Rows 1..COUNT in PARTS ranges; each batch adds 1 to its rows' hits and logs its pid."""
    if store.startswith("mongodb"):
        access = f"""
import pymongo
_own = None

def _coll(ctx):
    global _own
    client = ctx.session.client if ctx.session is not None else (
        _own := _own or pymongo.MongoClient({store!r}))
    return client.get_default_database()[{table!r}]

def _ids(ctx, at, end, size):
    found = _coll(ctx).find({{"_id": {{"$gt": at, "$lte": end}}}}, {{"_id": 1}},
                            session=ctx.session)
    return [d["_id"] for d in found.sort("_id", 1).limit(size)]

def _hit(ctx, batch):
    _coll(ctx).update_many({{"_id": {{"$in": batch}}}}, {{"$inc": {{"hits": 1}}}},
                           session=ctx.session)
"""
    elif store.startswith("postgres"):
        access = f"""
import psycopg
_own = None

def _conn(ctx):
    global _own
    if {transactional!r}:
        return ctx.db
    _own = _own or psycopg.connect({store!r}, autocommit=True)
    return _own

def _ids(ctx, at, end, size):
    rows = _conn(ctx).execute(
        "SELECT id FROM public.{table} WHERE id > %s AND id <= %s ORDER BY id LIMIT %s",
        (at, end, size)).fetchall()
    return [r[0] for r in rows]

def _hit(ctx, batch):
    _conn(ctx).execute("UPDATE public.{table} SET hits = hits + 1 WHERE id = ANY(%s)", (batch,))
"""
    else:
        access = f"""
import sqlite3
_own = None

def _conn(ctx):
    global _own
    if {transactional!r}:
        return ctx.db
    _own = _own or sqlite3.connect({store!r}, timeout=60, isolation_level=None)
    return _own

def _ids(ctx, at, end, size):
    rows = _conn(ctx).execute(
        "SELECT id FROM {table} WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
        (at, end, size)).fetchall()
    return [r[0] for r in rows]

def _hit(ctx, batch):
    marks = ",".join("?" * len(batch))
    _conn(ctx).execute(f"UPDATE {table} SET hits = hits + 1 WHERE id IN ({{marks}})", batch)
"""
    return f"""
import os, time
{access}

def ranges(ctx, n):
    step = {COUNT} // n
    return [{{"at": k * step, "end": (k + 1) * step}} for k in range(n)]

def fetch(ctx, cursor, size):
    batch = _ids(ctx, cursor["at"], cursor["end"], size)
    done = len(batch) < size or batch[-1] >= cursor["end"]
    return batch, (None if done else {{"at": batch[-1], "end": cursor["end"]}})

_done = 0

def process(ctx, batch):
    global _done
    while not os.path.exists({str(log) + ".go"!r}):  # until every helper has joined
        time.sleep(0.01)
    _hit(ctx, batch)
    with open({str(log)!r}, "a") as f:
        f.write(f"{{os.getpid()}} {{len(batch)}}\\n")
    _done += 1
    if _done == int(os.environ.get("HOLD_AFTER", "0")):  # the doomed helper: wait to be killed
        open({str(log) + ".held"!r}, "w").close()
        while True:
            time.sleep(1)
    while os.path.exists({str(log) + ".hold"!r}):  # the test acts while every batch waits
        time.sleep(0.01)
    time.sleep(0.03)

task = runce.Backfill(
    title="shared fill", fetch=fetch, process=process, batch_size={BATCH},
    transactional={transactional!r}, parallel={PARTS}, ranges=ranges, threads=1,
    total=lambda ctx: {COUNT},
)
"""


class Table:
    """The rows the backfill counts its hits on, in the store's own database."""

    def __init__(self, store: str, root: Path) -> None:
        self.store = store
        self.name = f"shared_{uuid.uuid4().hex[:10]}"
        self.sqlite_path = root / ".runce" / "runce.db"

    @property
    def url(self) -> str:
        return str(self.sqlite_path) if self.store.startswith("sqlite") else self.store

    def create(self) -> None:
        if self.store.startswith("mongodb"):
            import pymongo

            with pymongo.MongoClient(self.store) as client:
                coll = client.get_default_database()[self.name]
                coll.insert_many([{"_id": i, "hits": 0} for i in range(1, COUNT + 1)])
        elif self.store.startswith("postgres"):
            import psycopg

            with psycopg.connect(self.store, autocommit=True) as conn:
                conn.execute(
                    f"CREATE TABLE public.{self.name} AS SELECT g AS id, 0 AS hits "  # type: ignore[arg-type]
                    f"FROM generate_series(1, {COUNT}) g"
                )
        else:
            import sqlite3

            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.sqlite_path)
            with conn:
                conn.execute(f"CREATE TABLE {self.name} (id INTEGER PRIMARY KEY, hits INTEGER)")
                conn.executemany(
                    f"INSERT INTO {self.name} VALUES (?, 0)", ((i,) for i in range(1, COUNT + 1))
                )
            conn.close()

    def hits(self) -> Counter[int]:
        if self.store.startswith("mongodb"):
            import pymongo

            with pymongo.MongoClient(self.store) as client:
                coll = client.get_default_database()[self.name]
                found = coll.aggregate([{"$group": {"_id": "$hits", "rows": {"$sum": 1}}}])
                return Counter({doc["_id"]: doc["rows"] for doc in found})
        if self.store.startswith("postgres"):
            import psycopg

            with psycopg.connect(self.store, autocommit=True) as conn:
                rows = conn.execute(
                    f"SELECT hits, count(*) FROM public.{self.name} GROUP BY hits"  # type: ignore[arg-type]
                ).fetchall()
                return Counter(dict(rows))
        import sqlite3

        conn = sqlite3.connect(self.sqlite_path, timeout=60)
        try:
            found = conn.execute(f"SELECT hits, count(*) FROM {self.name} GROUP BY hits")
            return Counter(dict(found.fetchall()))
        finally:
            conn.close()

    def drop(self) -> None:
        if self.store.startswith("postgres"):
            import psycopg

            with psycopg.connect(self.store, autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS public.{self.name}")  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgres", "mongo"])
def space(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Workspace, Table]]:
    if request.param == "postgres":
        spaces = postgres_workspace(request, tmp_path)
    elif request.param == "mongo":
        spaces = mongo_workspace(request, tmp_path)
    else:
        spaces = iter([Workspace(tmp_path, stores_for(tmp_path)["sqlite"])])
    for workspace in spaces:
        table = Table(workspace.store, tmp_path)
        table.create()
        workspace.write_config(f"[lock]\nttl = {TTL:g}\n")
        yield workspace, table
        workspace.reap()
        table.drop()


def _pids(log: Path) -> Counter[int]:
    if not log.exists():
        return Counter()
    found: Counter[int] = Counter()
    for line in log.read_text().splitlines():
        pid, _ = line.split()
        found[int(pid)] += 1
    return found


def _joined(helper: subprocess.Popen[str]) -> None:
    """Wait until the helper says it joined the running attempt."""
    assert helper.stdout is not None
    first = helper.stdout.readline()  # the store line
    said = helper.stdout.readline()
    assert "joined attempt" in said, first + said + helper.communicate()[1]


def _wait_until(what: str, done: object, procs: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not done():  # type: ignore[operator]
        for proc in procs:
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"{proc.args} ended before {what}: {out}{err}")
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def _holder_of_a_range(workspace: Workspace, pid: int) -> bool:
    """Whether ``pid`` holds an unfinished range now (by the checkpoints' claims)."""
    store = open_store(resolve_config(workspace.root / "runce.toml").store)
    try:
        return any(
            not c.finished and c.claim_owner is not None and _names(c.claim_owner, pid)
            for c in store.tracker.checkpoints(TASK)
        )
    finally:
        store.close()


def _names(claimer: str, pid: int) -> bool:
    """Whether a claim's owner (``host pid N``, maybe after a label) is process ``pid``."""
    return re.search(rf"\bpid {pid}\b", claimer) is not None


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=PATIENCE)
    return proc.returncode, out + err


@pytest.mark.parametrize("transactional", [True, False], ids=["transactional", "plain"])
def test_helpers_share_the_ranges_and_a_killed_helper_loses_only_its_batch(
    space: tuple[Workspace, Table], transactional: bool
) -> None:
    workspace, table = space
    if transactional and table.store.startswith("sqlite"):  # see HELD_TTL
        workspace.write_config(f"[lock]\nttl = {HELD_TTL:g}\n")
    log = workspace.root / "batches.log"
    workspace.task(TASK, _task_body(table.url, table.name, log, transactional))
    join = ("backfill", "join", TASK, "--wait", str(PATIENCE))
    # The doomed helper stops after its second batch (processed, its checkpoint not yet
    # written) and holds its range until it is killed, however busy the machine is.
    doomed, helper = workspace.start(*join, HOLD_AFTER="2"), workspace.start(*join)
    coordinator = workspace.start("run")
    everyone = [doomed, helper, coordinator]
    _joined(doomed)
    _joined(helper)
    Path(f"{log}.go").touch()  # the batches wait for this: everyone starts together

    held_mark = Path(f"{log}.held")
    _wait_until("the doomed helper holds its range", held_mark.exists, everyone)
    assert _pids(log)[doomed.pid] == 2
    assert _holder_of_a_range(workspace, doomed.pid), "killed while it holds a range"
    status = json.loads(workspace.runce("status", "--json").stdout)
    [running] = [t for t in status["tasks"] if t["id"] == TASK]
    held = running["backfill"]["ranges_held"]
    assert held, running
    assert all(any(_names(who, p.pid) for p in everyone) for who in held), held
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()

    code, said = _finish(coordinator)
    assert code == 0, said
    assert f"OK       {TASK}" in said, said
    helper_code, helper_said = _finish(helper)
    assert helper_code == 0, helper_said
    assert "every range is finished" in helper_said, helper_said

    hits = table.hits()
    assert hits[0] == 0, f"every row was processed: {hits}"
    assert sum(hits.values()) == COUNT, hits
    if transactional:
        assert hits == {1: COUNT}, f"exactly once: {hits}"
    else:
        twice = sum((n - 1) * rows for n, rows in hits.items() if n > 1)
        assert twice <= BATCH, f"at most the killed helper's batch twice: {hits}"
    workers = _pids(log)
    assert workers[coordinator.pid], f"the coordinator worked ranges: {workers}"
    assert workers[helper.pid], f"the helper worked ranges: {workers}"

    history = json.loads(output_of(workspace.runce("history", TASK, "--json")))
    succeeded = [a for a in history if a["status"] == "succeeded"]
    assert len(succeeded) == 1, history
    status = json.loads(workspace.runce("status", "--json").stdout)
    [task] = [t for t in status["tasks"] if t["id"] == TASK]
    assert task["state"] == "APPLIED", task


@pytest.mark.parametrize("command", ["pause", "cancel"])
def test_a_pause_from_another_process_stops_the_helpers_too(
    space: tuple[Workspace, Table], command: str
) -> None:
    workspace, table = space
    log = workspace.root / "batches.log"
    workspace.task(TASK, _task_body(table.url, table.name, log, transactional=False))
    helper = workspace.start("backfill", "join", TASK, "--wait", str(PATIENCE))
    coordinator = workspace.start("run")
    _joined(helper)
    hold = Path(f"{log}.hold")
    hold.touch()  # each waits after its batch until the pause is asked: a busy machine
    Path(f"{log}.go").touch()  # cannot let the backfill finish first
    _wait_until("the helper worked a batch", lambda: _pids(log)[helper.pid] >= 1, [helper])

    asked = workspace.runce(command, TASK)
    hold.unlink()
    assert asked.returncode == 0, output_of(asked)
    verb = "paused" if command == "pause" else "canceled"
    code, said = _finish(coordinator)
    assert code == 0, said
    assert verb in said.lower(), said
    helper_code, helper_said = _finish(helper)
    assert helper_code == 0, helper_said
    assert f"{verb} by" in helper_said, helper_said

    assert workspace.runce("resume", TASK).returncode == 0
    finished = workspace.runce("run", timeout=PATIENCE)
    assert finished.returncode == 0, output_of(finished)
    hits = table.hits()
    assert hits[0] == 0, hits
    assert sum(hits.values()) == COUNT, hits


def test_join_is_refused_on_a_store_that_keeps_no_claims(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path, stores_for(tmp_path)["file"])
    workspace.task(TASK, _task_body("unused", "t", tmp_path / "log", transactional=False))
    refused = workspace.runce("backfill", "join", TASK)
    assert refused.returncode == 2, output_of(refused)
    said = refused.stderr.strip()
    assert said.count("\n") == 0, said
    assert "cannot share a backfill's ranges" in said, said


def test_join_refuses_a_backfill_that_is_not_running_or_not_parallel(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path, stores_for(tmp_path)["sqlite"])
    table = Table(workspace.store, tmp_path)
    table.create()
    workspace.task(TASK, _task_body(table.url, table.name, tmp_path / "log", False))
    idle = workspace.runce("backfill", "join", TASK, "--wait", "0.5")
    assert idle.returncode == 1, output_of(idle)
    assert "is not running: start it with `runce run`" in idle.stderr, output_of(idle)
    assert "after waiting 0.5s" in idle.stderr, output_of(idle)

    single = "2025-08-02.single"
    workspace.task(
        single,
        """
        task = runce.Backfill(fetch=lambda ctx, c, n: ([], None), process=lambda ctx, b: None)
        """,
    )
    one = workspace.runce("backfill", "join", single)
    assert one.returncode == 2, output_of(one)
    assert "has one key range (parallel=1)" in one.stderr, output_of(one)


def test_a_helper_stopped_by_sigterm_gives_its_range_back_at_once(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path, stores_for(tmp_path)["sqlite"])
    workspace.write_config("[lock]\nttl = 600\n")  # an unreleased claim would last the test
    table = Table(workspace.store, tmp_path)
    table.create()
    log = tmp_path / "batches.log"
    workspace.task(TASK, _task_body(table.url, table.name, log, transactional=False))
    helper = workspace.start("backfill", "join", TASK, "--wait", str(PATIENCE))
    coordinator = workspace.start("run")
    _joined(helper)
    Path(f"{log}.go").touch()
    _wait_until("the helper worked a batch", lambda: _pids(log)[helper.pid] >= 1, [helper])

    at_signal = _pids(log)[helper.pid]
    helper.send_signal(signal.SIGTERM)
    code, said = _finish(helper)
    assert code == 130, said
    assert "this helper stopped at a batch boundary and released its ranges" in said, said
    assert _pids(log)[helper.pid] <= at_signal + 1, "it stopped after the batch it was in"
    assert coordinator.poll() is None, "... long before the backfill was done"
    assert not _holder_of_a_range(workspace, helper.pid), "its claim was released, not left"
    code, said = _finish(coordinator)
    assert code == 0, said
    hits = table.hits()
    assert hits[0] == 0, hits
    assert sum((n - 1) * rows for n, rows in hits.items() if n > 1) <= BATCH, hits


def test_helpers_stop_when_the_coordinator_dies_and_the_next_run_finishes(
    space: tuple[Workspace, Table],
) -> None:
    workspace, table = space
    log = workspace.root / "batches.log"
    workspace.task(TASK, _task_body(table.url, table.name, log, transactional=False))
    helper = workspace.start("backfill", "join", TASK, "--wait", str(PATIENCE))
    coordinator = workspace.start("run")
    _joined(helper)
    hold = Path(f"{log}.hold")
    hold.touch()  # each waits after its first batch: the helper cannot finish every range
    Path(f"{log}.go").touch()  # before it notices that its coordinator died
    _wait_until(
        "both worked a batch",
        lambda: _pids(log)[helper.pid] >= 1 and _pids(log)[coordinator.pid] >= 1,
        [helper, coordinator],
    )

    coordinator.send_signal(signal.SIGKILL)
    coordinator.wait()
    hold.unlink()
    code, said = _finish(helper)
    assert code == 1, said
    assert "has ended or died" in said, said

    finished = workspace.runce("run", timeout=PATIENCE)
    assert finished.returncode == 0, output_of(finished)
    assert " of 6 ranges from their checkpoints" in output_of(finished)
    hits = table.hits()
    assert hits[0] == 0, hits
    assert sum(hits.values()) == COUNT, hits
    assert sum((n - 1) * rows for n, rows in hits.items() if n > 1) <= BATCH, hits
