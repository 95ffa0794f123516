"""Workers on several hosts against one PostgreSQL: three network namespaces, each joined to
the root namespace by a veth pair and reaching the server through a forwarder of its own.
One host's link is cut while it runs jobs: the other hosts finish its runs once its leases
run out, and when the link comes back the fence refuses the outcomes it sends late. No run
is lost and no outcome overwritten."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests import netns, services
from tests.acceptance.conftest import RUNCE, Workspace, clean_env, output_of
from tests.acceptance.test_worker_faults import (
    _enqueue_many,
    _executions,
    _lines,
    _log,
    _prepare,
    _run,
    _starts,
    _until,
)
from tests.proxy import Proxy

pytestmark = pytest.mark.slow

LEASE = 2.0  # every wait below is a multiple of it, with room for a busy machine
HOSTS = 3


@pytest.fixture
def hosts() -> Iterator[list[netns.Host]]:
    """Three hosts; without root or ``ip netns`` the test skips, and fails in CI."""
    reason = None
    try:
        netns.check()
    except netns.Unavailable as exc:
        reason = f"no hosts for the several-hosts test: {exc}"
    if reason is not None:
        services.unavailable(reason)
    with netns.hosts(HOSTS) as made:
        yield made


@pytest.fixture
def space(postgres_server: str, tmp_path: Path) -> Iterator[Workspace]:
    schema = f"runce_t_{uuid.uuid4().hex[:12]}"
    workspace = _prepare(Workspace(tmp_path, postgres_server, f'schema = "{schema}"\n'), LEASE, 2)
    yield workspace
    workspace.reap()
    services.drop_schema(postgres_server, schema)


def _start_on(
    space: Workspace, host: netns.Host, url: str, *args: str
) -> tuple[subprocess.Popen[str], Path]:
    """A real ``runce worker`` inside the host's namespace, its store at ``url``."""
    err = space.root / f"worker-{host.namespace}.err"
    proc = subprocess.Popen(
        host.command(RUNCE, "worker", *args),  # `ip netns exec` execs it: same pid
        cwd=space.root,
        env=clean_env(RUNCE_STORE_URL=url),
        stdout=subprocess.DEVNULL,
        stderr=err.open("w"),
        text=True,
    )
    space.procs.append(proc)
    return proc, err


def _runs(space: Workspace) -> dict[str, dict[str, Any]]:
    """Every run of the workspace, as the store keeps it, by id (one command, not one per
    run: the checks stay quick on a busy machine)."""
    found: dict[str, dict[str, Any]] = {}
    cursor: list[str] = []
    while True:
        shown = space.runce("runs", "list", "--limit", "100", "--json", *cursor)
        assert shown.returncode == 0, output_of(shown)
        page = json.loads(shown.stdout)
        found.update((run["id"], run) for run in page["runs"])
        if not page["next_cursor"]:
            return found
        cursor = ["--cursor", page["next_cursor"]]


def _all_succeeded(space: Workspace, ids: list[str]) -> bool:
    runs = _runs(space)
    return all(run_id in runs and runs[run_id]["state"] == "succeeded" for run_id in ids)


def _done_by(space: Workspace, pid: int) -> set[str]:
    return {
        words[1]
        for words in map(str.split, _lines(_log(space)))
        if words[0] == "done" and int(words[3]) == pid
    }


def _started_by(space: Workspace, pid: int) -> list[str]:
    return [line.split()[1] for line in _starts(space) if int(line.split()[3]) == pid]


def test_a_host_cut_off_mid_run_loses_nothing_and_overwrites_nothing(
    hosts: list[netns.Host], postgres_server: str, space: Workspace
) -> None:
    server = urlsplit(postgres_server)
    proxies = [
        Proxy(server.hostname or "127.0.0.1", server.port or 5432, host=host.gateway)
        for host in hosts
    ]
    try:
        user = server.netloc.rpartition("@")[0]
        urls = [
            server._replace(
                netloc=f"{user}@{p.host}:{p.port}" if user else f"{p.host}:{p.port}"
            ).geturl()
            for p in proxies
        ]
        ids = _enqueue_many(space, 6, 0)
        (space.root / "hold").touch()  # jobs wait for the hold to be lifted
        # The host to be cut off first, so that it holds runs of its own.
        victim, victim_err = _start_on(space, hosts[0], urls[0], "--concurrency", "2")
        _until(lambda: len(_started_by(space, victim.pid)) == 2, 30 * LEASE, "it started nothing")
        others = [
            _start_on(space, host, url, "--concurrency", "2")
            for host, url in zip(hosts[1:], urls[1:], strict=True)
        ]
        _until(lambda: len(_starts(space)) == 6, 30 * LEASE, "the other hosts started nothing")
        held = set(_started_by(space, victim.pid))
        assert {len(_started_by(space, proc.pid)) for proc, _ in others} == {2}

        hosts[0].cut()
        cut_at = time.time()
        (space.root / "hold").unlink()  # every job ends now: the cut-off host's while cut off
        more = _enqueue_many(space, 30, 0)  # and the others go on with new work meanwhile
        _until(lambda: _done_by(space, victim.pid) == held, 10 * LEASE, "its jobs never ended")
        _until(
            lambda: _all_succeeded(space, ids + more),
            30 * LEASE,
            "the other hosts never finished the runs of the host cut off",
        )
        victim_said = victim_err.read_text()
        assert "run.lost" not in victim_said, victim_said  # its outcomes wait for the link
        for run_id in held:
            run = _run(space, run_id)
            assert run["attempt"] == 2, run  # taken over once its lease ran out...
            assert isinstance(run["attempts"], list)
            assert [a["outcome"] for a in run["attempts"]] == ["lease-expired"], run
            result = run["result"]
            assert isinstance(result, dict)
            assert result["pid"] != victim.pid, run  # ...and finished by another host
        retaken = [
            line.split()
            for line in _starts(space)
            if line.split()[1] in held and int(line.split()[2]) == 2
        ]
        assert len(retaken) == len(held)
        assert all(float(words[4]) >= cut_at for words in retaken), retaken

        hosts[0].restore()
        # Its jobs ended while it was cut off; their outcomes reach the store now, late.
        _until(
            lambda: all(f"id={run_id} " in victim_err.read_text() for run_id in held),
            30 * LEASE,
            "the late outcomes never arrived",
        )
        for proc, _ in [(victim, victim_err), *others]:
            proc.send_signal(signal.SIGTERM)
        for proc, err in [(victim, victim_err), *others]:
            proc.wait(timeout=30 * LEASE)
            assert proc.returncode == 0, err.read_text()
            assert "Traceback" not in err.read_text()
    finally:
        for proxy in proxies:
            proxy.close()

    late = victim_err.read_text()
    for run_id in held:  # refused by the fence, one by one
        assert f"run.lost id={run_id} attempt=1: its lease was lost; outcome succeeded" in late, (
            late
        )
    everything = ids + more
    runs = _runs(space)
    assert {runs[run_id]["state"] for run_id in everything} == {"succeeded"}  # none lost
    executions = _executions(space)
    assert all(executions[run_id] == 1 + (run_id in held) for run_id in everything), executions
    finished = {
        (words[1], int(words[2]), int(words[3]))
        for words in map(str.split, _lines(_log(space)))
        if words[0] == "done"
    }
    for run_id in everything:  # what is stored is the final attempt's own result
        run = runs[run_id]
        assert run["attempt"] == 1 + (run_id in held), run
        result = run["result"]
        assert isinstance(result, dict)
        assert result["attempt"] == run["attempt"], run
        assert (run_id, result["attempt"], result["pid"]) in finished, run
