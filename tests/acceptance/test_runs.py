"""The job queue with real processes: idempotency, no double execution, no lost runs,
retries, cancel, graceful shutdown, and the `runce runs` commands."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import (
    RUNCE,
    Workspace,
    assert_one_sentence,
    clean_env,
    mongo_workspace,
    output_of,
    postgres_workspace,
    stores_for,
)

pytestmark = pytest.mark.slow

JOBS = """
import os, time
import runce

LOG = os.environ.get("RUNCE_TEST_LOG", os.devnull)


def record(line):
    with open(LOG, "a") as handle:  # one short O_APPEND write: lines never interleave
        handle.write(line + "\\n")


@runce.job("noop.record")
def noop_record(params, ctx):
    record(f"{ctx.run.id} {ctx.run.attempt} {os.getpid()}")


@runce.job("slow.record")
def slow_record(params, ctx):
    record(f"start {ctx.run.id} {ctx.run.attempt} {os.getpid()}")
    deadline = time.monotonic() + params.get("seconds", 30)
    while time.monotonic() < deadline:
        if ctx.cancelled:
            record(f"cancelled {ctx.run.id}")
            return "stopped"
        time.sleep(0.02)
    record(f"done {ctx.run.id} {ctx.run.attempt}")
    return "finished"


@runce.job("flaky.twice", max_attempts=3)
def flaky(params, ctx):
    record(f"try {ctx.run.attempt}")
    if ctx.run.attempt <= params.get("fail", 2):
        raise RuntimeError(f"failure {ctx.run.attempt}")
    return {"attempt": ctx.run.attempt}
"""


def _queue_stores() -> list[str]:
    import importlib.util

    names = ["sqlite"]
    for name, module in (("postgres", "runce.stores.postgres"), ("mongo", "runce.stores.mongo")):
        if importlib.util.find_spec(module):
            names.append(name)
    return names


@pytest.fixture(params=_queue_stores())
def qspace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    # A lease long enough for a loaded 2-core machine; the crash test shortens it.
    settings = '[worker]\nhandlers = ["jobs"]\nlease = 6\npoll = 0.2\nbackoff_base = 0.05\n'
    settings += "shutdown_timeout = 1\n"
    if request.param == "postgres":
        spaces = postgres_workspace(request, tmp_path)
    elif request.param == "mongo":
        spaces = mongo_workspace(request, tmp_path)
    else:
        spaces = iter([Workspace(tmp_path, stores_for(tmp_path)["sqlite"])])
    space = next(spaces)
    space.settings = space.settings.replace("[worker]", "") + settings
    space.write_config()
    (space.root / "jobs.py").write_text(JOBS)
    space.log = space.root / "log.txt"  # type: ignore[attr-defined]
    yield space
    space.reap()
    for _ in spaces:
        pass


def _env(space: Workspace) -> dict[str, str]:
    return {"RUNCE_TEST_LOG": str(space.log)}  # type: ignore[attr-defined]


def _lines(space: Workspace) -> list[str]:
    log: Path = space.log  # type: ignore[attr-defined]
    return log.read_text().splitlines() if log.exists() else []


def _json(result: subprocess.CompletedProcess[str]) -> object:
    assert result.returncode == 0, output_of(result)
    return json.loads(result.stdout)


def _enqueue_many(space: Workspace, kind: str, count: int, payload: str = "{'i': i}") -> list[str]:
    script = (
        "import runce, sys\n"
        f"runs = runce.enqueue_many({kind!r}, [{payload} for i in range({count})])\n"
        "print('\\n'.join(r.id for r in runs))\n"
    )
    done = subprocess.run(
        [str(Path(RUNCE).with_name("python")), "-c", script],
        cwd=space.root,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, output_of(done)
    return done.stdout.split()


def _states_present(space: Workspace) -> set[str]:
    present = set()
    for state in ("queued", "running", "succeeded", "failed", "canceled"):
        page = _json(space.runce("runs", "list", "--state", state, "--limit", "1", "--json"))
        assert isinstance(page, dict)
        if page["runs"]:
            present.add(state)
    return present


def test_twenty_processes_enqueueing_one_key_get_one_run(qspace: Workspace) -> None:
    command = [
        "runs",
        "enqueue",
        "noop.record",
        "--input",
        '{"order": 7}',
        "--idempotency-key",
        "order-7",
    ]
    procs = [qspace.start(*command) for _ in range(20)]
    ids = set()
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, out + err
        ids.add(out.strip())
    assert len(ids) == 1

    conflict = qspace.runce(
        "runs", "enqueue", "noop.record", "--input", '{"order": 8}', "--idempotency-key", "order-7"
    )
    assert conflict.returncode == 1
    assert "idempotency key 'order-7'" in conflict.stderr
    assert "Traceback" not in conflict.stderr
    empty = qspace.runce("runs", "enqueue", "noop.record", "--idempotency-key", "")
    assert empty.returncode == 2
    assert_one_sentence(empty.stderr, "idempotency key '' must be 1 to 255 characters")


@pytest.mark.timeout(300)
def test_four_workers_execute_every_run_exactly_once(qspace: Workspace) -> None:
    # What this tests is that claims never overlap. A run is executed at least once: a lease
    # that runs out (a store held up for seconds on a crowded machine) may run it again, so
    # the lease here is long enough that only overlapping claims could run a no-op twice.
    qspace.settings = qspace.settings.replace("lease = 6", "lease = 60")
    qspace.write_config()
    # Enough runs that the four workers claim against each other for many rounds: each
    # claims at most a batch (100 on MongoDB, 500 on the SQL stores) at a time. The MongoDB
    # test server takes about 25 ms a claim round, so it gets fewer runs than the others
    # (5000 there took 130 s alone, past the timeout on a busy machine).
    count = 1200 if "mongodb" in qspace.store else 5000
    ids = _enqueue_many(qspace, "noop.record", count)
    workers = [
        qspace.start(
            "worker", "--concurrency", "8", "--drain", "--log-level", "warning", **_env(qspace)
        )
        for _ in range(4)
    ]
    logs = ""
    for proc in workers:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, out + err
        logs += err
    executed = Counter(line.split()[0] for line in _lines(qspace))
    missing = sorted(set(ids) - set(executed))
    assert not missing, (
        f"{len(missing)} runs never executed, states present {_states_present(qspace)}; "
        f"the first: {_json(qspace.runce('runs', 'status', missing[0], '--json'))}; "
        f"the workers said:\n{logs[-4000:]}"
    )
    assert set(executed) == set(ids)
    twice = sorted(run_id for run_id, n in executed.items() if n > 1)
    assert not twice, f"runs executed twice: {twice[:5]}; the workers said:\n{logs[-4000:]}"
    assert _states_present(qspace) == {"succeeded"}


def test_a_killed_worker_loses_no_run(qspace: Workspace) -> None:
    qspace.settings = qspace.settings.replace("lease = 6", "lease = 1.5")
    qspace.write_config()
    ids = _enqueue_many(qspace, "slow.record", 3, "{'seconds': 3}")
    victim = qspace.start("worker", "--concurrency", "3", **_env(qspace))
    deadline = time.monotonic() + 30
    while sum(line.startswith("start") for line in _lines(qspace)) < 3:
        assert time.monotonic() < deadline, _lines(qspace)
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)

    rescuer = qspace.start("worker", "--concurrency", "3", "--max-time", "60", **_env(qspace))
    try:
        for run_id in ids:
            tail = qspace.runce("runs", "tail", run_id, "--timeout", "90", timeout=120)
            assert tail.returncode == 0, output_of(tail)
    finally:
        rescuer.send_signal(signal.SIGTERM)
        rescuer.communicate(timeout=30)
    for run_id in ids:
        run = _json(qspace.runce("runs", "status", run_id, "--json"))
        assert isinstance(run, dict)
        assert (run["state"], run["attempt"]) == ("succeeded", 2)
        assert [a["outcome"] for a in run["attempts"]] == ["lease-expired"]
    assert _states_present(qspace) == {"succeeded"}


def test_retries_then_success_and_retries_then_failure(qspace: Workspace) -> None:
    good = qspace.runce("runs", "enqueue", "flaky.twice", "--input", '{"fail": 2}').stdout.strip()
    bad = qspace.runce(
        "runs", "enqueue", "flaky.twice", "--input", '{"fail": 9}', "--max-attempts", "2"
    ).stdout.strip()
    worker = qspace.start("worker", "--max-time", "60", **_env(qspace))
    try:
        assert qspace.runce("runs", "tail", good, "--timeout", "30").returncode == 0
        failed = qspace.runce("runs", "tail", bad, "--timeout", "30")
        assert failed.returncode == 1
        assert "failure 2" in failed.stdout
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)
    good_run = _json(qspace.runce("runs", "status", good, "--json"))
    assert isinstance(good_run, dict)
    assert (good_run["state"], good_run["attempt"], good_run["result"]) == (
        "succeeded",
        3,
        {"attempt": 3},
    )
    assert [a["outcome"] for a in good_run["attempts"]] == ["retry", "retry"]
    bad_run = _json(qspace.runce("runs", "status", bad, "--json"))
    assert isinstance(bad_run, dict)
    tracebacks = [a["traceback"] for a in bad_run["attempts"]]
    assert [t.splitlines()[-1] for t in tracebacks] == [
        "RuntimeError: failure 1",
        "RuntimeError: failure 2",
    ]
    assert all('jobs.py", line' in t and "in flaky" in t for t in tracebacks)
    shown = qspace.runce("runs", "status", bad).stdout
    assert "  traceback of attempt 2:\n    Traceback (most recent call last):\n" in shown
    assert shown.rstrip().endswith("    RuntimeError: failure 2")


def test_cancel_queued_and_running_runs(qspace: Workspace) -> None:
    queued = qspace.runce(
        "runs", "enqueue", "slow.record", "--input", '{"seconds": 30}', "--run-at", "+1h"
    ).stdout.strip()
    canceled = qspace.runce("runs", "cancel", queued, "--yes")
    assert canceled.returncode == 0, output_of(canceled)
    assert "canceled" in canceled.stdout

    running = qspace.runce(
        "runs", "enqueue", "slow.record", "--input", '{"seconds": 30}'
    ).stdout.strip()
    worker = qspace.start("worker", **_env(qspace))
    try:
        deadline = time.monotonic() + 30
        while not any(line.startswith(f"start {running}") for line in _lines(qspace)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        asked = qspace.runce("runs", "cancel", running, "--yes")
        assert "cancel requested" in asked.stdout
        tail = qspace.runce("runs", "tail", running, "--timeout", "30")
        assert tail.returncode == 4, output_of(tail)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)
    assert f"cancelled {running}" in _lines(qspace)
    assert not any(line.startswith(f"start {queued}") for line in _lines(qspace))

    illegal = qspace.runce("runs", "cancel", running, "--yes")
    assert illegal.returncode == 1
    assert "canceled; it cannot be canceled" in illegal.stderr
    again = qspace.runce("runs", "retry", running)
    assert again.returncode == 0, output_of(again)


def test_sigterm_finishes_or_hands_back_and_leaves_nothing_running(qspace: Workspace) -> None:
    short = qspace.runce(
        "runs", "enqueue", "slow.record", "--input", '{"seconds": 0.3}'
    ).stdout.strip()
    long = qspace.runce(
        "runs", "enqueue", "slow.record", "--input", '{"seconds": 60}'
    ).stdout.strip()
    worker = qspace.start("worker", "--concurrency", "2", **_env(qspace))
    deadline = time.monotonic() + 30
    while sum(line.startswith("start") for line in _lines(qspace)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, out + err
    states = {
        run_id: _json(qspace.runce("runs", "status", run_id, "--json")) for run_id in (short, long)
    }
    assert states[short]["state"] == "succeeded"  # type: ignore[index]
    assert states[long]["state"] == "queued"  # type: ignore[index]
    assert states[long]["attempt"] == 0  # type: ignore[index]


def test_commands_print_json_and_refuse_bad_input(qspace: Workspace) -> None:
    bad_json = qspace.runce("runs", "enqueue", "noop.record", "--input", "{nope")
    assert bad_json.returncode == 2
    assert "--input is not valid JSON" in bad_json.stderr
    unknown = qspace.runce("runs", "enqueue", "no.such.kind")
    assert unknown.returncode == 2
    assert "no job is registered for 'no.such.kind'" in unknown.stderr
    anyway = qspace.runce("runs", "enqueue", "no.such.kind", "--any-kind", "--json")
    run = _json(anyway)
    assert isinstance(run, dict)
    assert run["kind"] == "no.such.kind"
    missing = qspace.runce("runs", "status", "no-such-id")
    assert missing.returncode == 5  # not found
    assert "no run has the id" in missing.stderr
    listed = _json(qspace.runce("runs", "list", "--json"))
    assert isinstance(listed, dict)
    assert [r["id"] for r in listed["runs"]] == [run["id"]]
    pruned = qspace.runce("runs", "prune")
    assert pruned.returncode == 0
    assert "pruned 0 runs" in pruned.stdout
    drained = _json(
        qspace.runce("worker", "--drain", "--json", "--kinds", "noop.record", **_env(qspace))
    )
    assert isinstance(drained, dict)
    assert drained["succeeded"] == 0
    workers = _json(qspace.runce("workers", "--json"))
    assert isinstance(workers, list)
    assert workers[0]["state"] == "stopped"
