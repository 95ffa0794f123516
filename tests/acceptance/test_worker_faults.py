"""Workers under faults, as real processes: a store that stops answering, a worker paused
past its lease, one killed mid-run, every connection cut. Handlers record each execution
(one short ``O_APPEND`` write per line), and the tests check that no run was lost, none
started after another worker could have taken it over, and no outcome was overwritten."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.acceptance.conftest import (
    PYTHON,
    RUNCE,
    Workspace,
    clean_env,
    output_of,
    postgres_workspace,
    run_python,
    run_stores,
    stores_for,
    with_jobs,
    worker_workspace,
)
from tests.proxy import Proxy

pytestmark = pytest.mark.slow

# Short, for quick tests; every wait below is a multiple of it, with room for a busy machine.
LEASE = 2.0

JOBS = """
import os, time
import runce

HERE = os.path.dirname(os.path.abspath(__file__))
LOG = os.path.join(HERE, "log.txt")
FAST = os.path.join(HERE, "go-fast")
HOLD = os.path.join(HERE, "hold")


def record(*words):
    with open(LOG, "a") as handle:  # one short O_APPEND write: lines never interleave
        handle.write(" ".join(map(str, words)) + "\\n")


@runce.job("fault.work")
def work(params, ctx):
    # Ignores cancels on purpose: only the worker's fencing may keep it from counting twice.
    record("start", ctx.run.id, ctx.run.attempt, os.getpid(), time.time())
    deadline = time.monotonic() + params.get("seconds", 0)
    while not os.path.exists(FAST) and (time.monotonic() < deadline or os.path.exists(HOLD)):
        time.sleep(0.01)
    record("done", ctx.run.id, ctx.run.attempt, os.getpid())
    return {"attempt": ctx.run.attempt, "pid": os.getpid()}
"""


def _settings(lease: float, shutdown: float) -> str:
    return (
        f'[worker]\nhandlers = ["jobs"]\nlease = {lease}\npoll = 0.2\n'
        f"backoff_base = 0.05\nshutdown_timeout = {shutdown}\n"
    )


def _prepare(space: Workspace, lease: float, shutdown: float) -> Workspace:
    return with_jobs(space, JOBS, _settings(lease, shutdown))


def _log(space: Workspace) -> Path:
    return space.root / "log.txt"


@pytest.fixture
def proxied(postgres_server: str, tmp_path: Path) -> Iterator[tuple[Workspace, Proxy]]:
    """A workspace on the test PostgreSQL, in a schema of its own, reached through a proxy."""
    from tests import services

    server = urlsplit(postgres_server)
    proxy = Proxy(server.hostname or "127.0.0.1", server.port or 5432)
    url = server._replace(netloc=server.netloc.replace(f":{server.port}", f":{proxy.port}"))
    schema = f"runce_t_{uuid.uuid4().hex[:12]}"
    space = _prepare(Workspace(tmp_path, url.geturl(), f'schema = "{schema}"\n'), 3, 2)
    yield space, proxy
    space.reap()
    proxy.close()
    services.drop_schema(postgres_server, schema)


@pytest.fixture(params=run_stores())
def anyspace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    """A workspace on each store that keeps runs, with a short lease."""
    yield from worker_workspace(request, tmp_path, JOBS, _settings(LEASE, 2))


def _start(space: Workspace, *args: str) -> tuple[subprocess.Popen[str], Path]:
    """A worker whose log goes to a file the test can read while it runs."""
    err = space.root / f"worker-{len(space.procs)}.err"
    proc = subprocess.Popen(
        [RUNCE, "worker", *args],
        cwd=space.root,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=err.open("w"),
        text=True,
    )
    space.procs.append(proc)
    return proc, err


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _enqueue(space: Workspace, count: int, seconds: float) -> list[str]:
    ids = []
    for _ in range(count):
        done = space.runce(
            "runs", "enqueue", "fault.work", "--input", json.dumps({"seconds": seconds})
        )
        assert done.returncode == 0, output_of(done)
        ids.append(done.stdout.strip())
    return ids


def _starts(space: Workspace) -> list[str]:
    return [line for line in _lines(_log(space)) if line.startswith("start")]


def _run(space: Workspace, run_id: str) -> dict[str, object]:
    shown = space.runce("runs", "status", run_id, "--json")
    assert shown.returncode == 0, output_of(shown)
    found: dict[str, object] = json.loads(shown.stdout)
    return found


def _finish_all(space: Workspace, ids: list[str]) -> None:
    """Let every job finish at once, and a fresh worker take what is left: every run ends
    succeeded (those held by a worker that stopped without the store once their leases
    expire)."""
    (space.root / "go-fast").touch()
    rescuer, err = _start(space, "--max-time", "150")
    try:
        for run_id in ids:
            tail = space.runce("runs", "tail", run_id, "--timeout", "120", timeout=150)
            assert tail.returncode == 0, output_of(tail) + err.read_text()  # no run lost
    finally:
        rescuer.send_signal(signal.SIGTERM)
        rescuer.wait(timeout=60)


def _assert_no_outcome_overwritten(space: Workspace, ids: list[str]) -> None:
    """Each run's stored result is that of an execution of its final attempt that finished."""
    finished = {
        (words[1], int(words[2]), int(words[3]))
        for words in map(str.split, _lines(_log(space)))
        if words[0] == "done"
    }
    for run_id in ids:
        run = _run(space, run_id)
        result = run["result"]
        assert isinstance(result, dict)
        assert result["attempt"] == run["attempt"], run
        assert (run_id, result["attempt"], result["pid"]) in finished, run


# -- a store that stops answering ---------------------------------------------------------------


def _cut_while_running(
    space: Workspace, proxy: Proxy, *args: str
) -> tuple[subprocess.Popen[str], Path, list[str]]:
    ids = _enqueue(space, 4, 60)
    worker, err = _start(space, "--concurrency", "2", *args)
    _until(lambda: len(_starts(space)) == 2, 60, "the jobs never started")
    proxy.cut()
    _until(lambda: "store unreachable" in err.read_text(), 60, "the outage was never logged")
    return worker, err, ids


def test_a_worker_stops_within_its_shutdown_timeout_while_postgres_refuses(
    proxied: tuple[Workspace, Proxy],
) -> None:
    said = _stops_on_time_while_refused(*proxied)
    # The first failure, then the outage: not one line per try.
    assert said.count("PostgreSQL store at") == 2, said


def test_a_worker_stops_within_its_shutdown_timeout_while_mongodb_refuses(
    mongo_server: str, tmp_path: Path
) -> None:
    import pymongo

    server = urlsplit(mongo_server)
    proxy = Proxy(server.hostname or "127.0.0.1", server.port or 27017)
    database = f"runce_t_{uuid.uuid4().hex[:12]}"
    # directConnection: the driver keeps to the proxy's address, whatever the server says.
    url = f"mongodb://127.0.0.1:{proxy.port}/{database}?directConnection=true"
    space = _prepare(Workspace(tmp_path, url), 3, 2)
    try:
        said = _stops_on_time_while_refused(space, proxy)
        assert said.count(f"127.0.0.1:{proxy.port}") <= 3, said
    finally:
        space.reap()
        proxy.close()
        with pymongo.MongoClient(mongo_server) as client:
            client.drop_database(database)


def _stops_on_time_while_refused(space: Workspace, proxy: Proxy) -> str:
    """SIGTERM a worker holding runs while its store refuses connections: it stops within
    its shutdown timeout + 2 s, having said so once; then nothing is lost."""
    worker, err, ids = _cut_while_running(space, proxy)
    time.sleep(3)  # an outage of a few seconds: a handful of tries, one log line
    asked = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    took = time.monotonic() - asked
    said = err.read_text()
    assert took < 2 + 2, f"stopped {took:.1f} s after SIGTERM (shutdown_timeout 2 s):\n{said}"
    assert worker.returncode == 0, said
    assert "Traceback" not in said
    assert said.count("store unreachable") == 1, said
    assert len(said.splitlines()) < 12, said
    proxy.restore()
    _finish_all(space, ids)
    _assert_no_outcome_overwritten(space, ids)
    return said


def test_a_second_signal_stops_a_worker_at_once_while_postgres_refuses(
    proxied: tuple[Workspace, Proxy],
) -> None:
    space, proxy = proxied
    # The first signal alone would wait for the jobs; the lease outlives the test's pauses.
    space.settings = space.settings.replace("shutdown_timeout = 2", "shutdown_timeout = 60")
    space.settings = space.settings.replace("lease = 3", "lease = 20")
    space.write_config()
    worker, err, ids = _cut_while_running(space, proxy)
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert worker.poll() is None, err.read_text()
    asked = time.monotonic()
    worker.send_signal(signal.SIGINT)
    worker.wait(timeout=60)
    took = time.monotonic() - asked
    assert took < 1, f"stopped {took:.2f} s after the second signal:\n{err.read_text()}"
    proxy.restore()
    _finish_all(space, ids)


def test_a_worker_says_once_that_postgres_is_back_and_goes_on(
    proxied: tuple[Workspace, Proxy],
) -> None:
    space, proxy = proxied
    worker, err, ids = _cut_while_running(space, proxy)
    proxy.restore()
    (space.root / "go-fast").touch()
    # Within one wait of the backoff (30 s at most) plus the work.
    _until(lambda: "store reachable again" in err.read_text(), 90, err.read_text())
    for run_id in ids:
        tail = space.runce("runs", "tail", run_id, "--timeout", "120", timeout=150)
        assert tail.returncode == 0, output_of(tail) + err.read_text()
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    said = err.read_text()
    assert said.count("store unreachable") == 1, said
    assert said.count("store reachable again") == 1, said
    _assert_no_outcome_overwritten(space, ids)


@pytest.mark.parametrize("signals", [1, 2])
def test_a_worker_stops_on_time_while_postgres_accepts_but_never_answers(
    proxied: tuple[Workspace, Proxy], signals: int
) -> None:
    space, proxy = proxied
    if signals == 2:  # the first signal alone would wait for the jobs
        space.settings = space.settings.replace("shutdown_timeout = 2", "shutdown_timeout = 60")
        space.write_config()
    ids = _enqueue(space, 4, 60)
    worker, err = _start(space, "--concurrency", "2")
    _until(lambda: len(_starts(space)) == 2, 60, "the jobs never started")
    proxy.freeze()
    time.sleep(1.5)  # past a heartbeat (every lease/3 = 1 s): the worker waits on a call
    worker.send_signal(signal.SIGTERM)
    asked = time.monotonic()
    if signals == 2:
        time.sleep(0.5)
        assert worker.poll() is None, err.read_text()
        worker.send_signal(signal.SIGTERM)
        asked = time.monotonic()
    worker.wait(timeout=90)
    took = time.monotonic() - asked
    limit = 2 + 2 if signals == 1 else 1
    assert took < limit, f"stopped {took:.1f} s after the last signal:\n{err.read_text()}"
    assert "Traceback" not in err.read_text()
    proxy.restore()
    _finish_all(space, ids)


# -- a worker paused past its lease, killed, or cut off ----------------------------------------


def _enqueue_many(space: Workspace, count: int, seconds: float) -> list[str]:
    script = (
        "import runce\n"
        f"runs = runce.enqueue_many('fault.work', [{{'seconds': {seconds}}}] * {count})\n"
        "print('\\n'.join(r.id for r in runs))\n"
    )
    return run_python(space, script).split()


def _stopped(pid: int) -> bool:
    """Whether every thread of the process is stopped (by SIGSTOP)."""
    tasks = Path(f"/proc/{pid}/task")
    states = [(task / "stat").read_text().rsplit(")", 1)[1].split()[0] for task in tasks.iterdir()]
    return all(state in "tT" for state in states)


def _executions(space: Workspace) -> Counter[str]:
    return Counter(line.split()[1] for line in _starts(space))


def _succeeded(space: Workspace, ids: list[str]) -> bool:
    """Whether every run of the workspace (``ids`` among them) ended, and succeeded."""
    for state in ("queued", "running", "failed", "canceled"):
        shown = space.runce("runs", "list", "--state", state, "--limit", "1", "--json")
        assert shown.returncode == 0, output_of(shown)
        if json.loads(shown.stdout)["runs"]:
            assert state in ("queued", "running"), shown.stdout
            return False
    return all(_run(space, run_id)["state"] == "succeeded" for run_id in ids[:1])


def test_a_worker_paused_past_its_lease_starts_nothing_it_no_longer_holds(
    anyspace: Workspace,
) -> None:
    space = anyspace
    # Quick jobs first, so that the victim claims runs ahead of its handlers.
    warmup = _enqueue_many(space, 60, 0)
    victim, victim_err = _start(space, "--concurrency", "2")
    _until(lambda: _succeeded(space, warmup), 60 * LEASE, "the warm-up runs never finished")
    (space.root / "hold").touch()  # jobs now wait for the hold to be lifted
    ids = _enqueue_many(space, 30, 0)
    _until(lambda: len(_starts(space)) >= len(warmup) + 2, 30 * LEASE, "nothing started")
    victim.send_signal(signal.SIGSTOP)
    _until(lambda: _stopped(victim.pid), 10 * LEASE, "the victim never stopped")
    paused_at = time.time()
    held = {line.split()[1] for line in _starts(space)} - set(warmup)  # running when paused
    (space.root / "hold").unlink()
    rescuer, rescuer_err = _start(space, "--concurrency", "4")
    try:
        _until(lambda: _succeeded(space, ids), 60 * LEASE, rescuer_err.read_text())
        victim.send_signal(signal.SIGCONT)
        resumed_at = time.time()
        time.sleep(LEASE)  # a lease for the victim to do the wrong thing, were it to
    finally:
        victim.send_signal(signal.SIGCONT)
        for proc in (victim, rescuer):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    late = [
        line
        for line in _starts(space)
        if int(line.split()[3]) == victim.pid and float(line.split()[4]) >= paused_at
    ]
    assert late == [], f"started after its lease expired: {late}\n{victim_err.read_text()}"
    executions = _executions(space)
    twice = {run_id for run_id in ids if executions[run_id] > 1}
    assert twice <= held, f"run twice though not running when paused: {twice - held}"
    assert all(executions[run_id] >= 1 for run_id in ids)
    assert "run.lost" in victim_err.read_text()  # what it held was dropped, and said so
    assert resumed_at > paused_at
    _assert_no_outcome_overwritten(space, ids)


def test_a_worker_killed_mid_run_loses_no_run_and_overwrites_nothing(
    anyspace: Workspace,
) -> None:
    space = anyspace
    ids = _enqueue_many(space, 6, 30)
    victim, _ = _start(space, "--concurrency", "3")
    _until(lambda: len(_starts(space)) >= 3, 30 * LEASE, "nothing started")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    killed = {line.split()[1] for line in _starts(space)}
    _finish_all(space, ids)
    executions = _executions(space)
    assert all(executions[run_id] == 1 + (run_id in killed) for run_id in ids), executions
    for run_id in killed:
        run = _run(space, run_id)
        assert run["attempt"] == 2, run
        assert isinstance(run["attempts"], list)
        assert [a["outcome"] for a in run["attempts"]] == ["lease-expired"]
    _assert_no_outcome_overwritten(space, ids)


def test_every_connection_cut_while_processing_loses_and_repeats_nothing(
    postgres_server: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    import psycopg

    spaces = postgres_workspace(request, tmp_path)
    space = _prepare(next(spaces), LEASE, 2)
    try:
        ids = _enqueue_many(space, 40, 0.1)
        worker, err = _start(space, "--concurrency", "4")
        # Every connection of the worker's, cut from another connection, three times.
        mine = f"% pid {worker.pid} %"
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            for round_ in range(1, 4):
                started = 8 * round_
                _until(lambda: len(_starts(space)) > started, 30 * LEASE, "stalled")  # noqa: B023
                cut = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name LIKE %s",
                    (mine,),
                ).fetchone()
                assert cut is not None
                assert cut[0] >= 1
        _until(lambda: _succeeded(space, ids), 60 * LEASE, err.read_text())  # none lost
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        executions = _executions(space)
        # A claim whose answer was cut off is never started here: it is reclaimed after
        # its lease and run once; no run body runs twice, since none was killed.
        twice = {run_id: n for run_id, n in executions.items() if n > 1}
        assert twice == {}, err.read_text()
        assert "Traceback" not in err.read_text()
        _assert_no_outcome_overwritten(space, ids)
    finally:
        space.reap()
        for _ in spaces:
            pass


def test_a_worker_stops_on_time_while_its_sqlite_file_is_locked(tmp_path: Path) -> None:
    space = _prepare(Workspace(tmp_path, stores_for(tmp_path)["sqlite"]), LEASE * 3, 2)
    try:
        ids = _enqueue(space, 2, 60)
        worker, err = _start(space, "--concurrency", "2")
        _until(lambda: len(_starts(space)) == 2, 30 * LEASE, "the jobs never started")
        locker = subprocess.Popen(  # another process keeps the file's write lock
            [
                PYTHON,
                "-c",
                "import sqlite3, sys, time\n"
                "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                "conn.execute('BEGIN EXCLUSIVE')\n"
                "print('locked', flush=True)\n"
                "time.sleep(600)\n",
                str(space.root / ".runce" / "runce.db"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        space.procs.append(locker)
        assert locker.stdout is not None
        assert locker.stdout.readline().strip() == "locked"
        time.sleep(LEASE)  # the worker's next calls wait for the lock
        worker.send_signal(signal.SIGTERM)
        asked = time.monotonic()
        worker.wait(timeout=120)
        took = time.monotonic() - asked
        assert took < 2 + 2, f"stopped {took:.1f} s after SIGTERM:\n{err.read_text()}"
        assert "Traceback" not in err.read_text()
        locker.kill()
        locker.wait(timeout=30)
        _finish_all(space, ids)
    finally:
        space.reap()
