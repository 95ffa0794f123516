"""What PostgreSQL itself allows runce's own SQL, with no client work in the loop.

``ceiling``: runce's acknowledge-and-claim statement driven by ``pgbench`` with one client,
in batches. ``enqueue_single``: runce's one-run enqueue statement (``enqueue_run``) driven by
``pgbench``, prepared, one transaction each, as ``runce.enqueue`` sends it. ``enqueue_batched``:
the statements of a batch enqueue (``enqueue_copy_begin``, then ``COPY`` of the rows, then
the commit), timed from Python with every batch's COPY data built beforehand, so that only
the round trips and the server's work are timed. Ratios of these to a peer's figures are
the most runce could reach on this machine with its schema, whatever its Python does.

The script is built from ``src/runce/stores/postgres/runs.sql`` at run time, so it follows
the SQL as it changes: the ``part_outcomes`` and ``part_claim`` pieces are used unchanged
(they are what ``exchange_runs`` is made of), with the parameters a worker would bind
filled in the way pgbench can: the fences claimed by the previous transaction come back
through ``\\gset`` as two arrays, and the other outcome arrays (every outcome "succeeded",
result ``null``) are built to the same length. The one difference from the worker's
statement: the final SELECT returns the claimed fences as two arrays instead of every
acknowledged and claimed row, so the ceiling does not pay for shipping rows to a client.

In ``ceiling`` each transaction acknowledges the previous batch and claims the next:
``runs_per_s`` is runs acknowledged per second of pgbench's run time (connection set-up
excluded).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.adapters import runce_postgres, runce_queue
from harness.workload import Workload, pg_dsn

NAME = "pgbench"
BACKEND = "postgresql"
PACKAGE = None
BATCH = 100
RUNS = 50_000  # enough for about a second at the ceiling
RUNS_SQL = Path(__file__).resolve().parents[3] / "src/runce/stores/postgres/runs.sql"
SETTINGS = {
    "tool": "pgbench -n -M extended -c 1",
    "script": "runs.sql part_outcomes + part_claim (exchange_runs); claimed fences via \\gset",
    "batch": BATCH,
    "runs": RUNS,
    "enqueue_single": "runs.sql enqueue_run, pgbench -n -M prepared -c 1, increasing ids",
    "enqueue_batched": "runs.sql enqueue_copy_begin + enqueue_copy_runs, COPY data pre-built",
}

_SAME_LENGTH = "ARRAY[cardinality(:ids::text[])]"
_PARAMS = {
    "ids": ":ids",
    "attempts": ":attempts",
    "workers": f"array_fill(:worker::text, {_SAME_LENGTH})",
    "kinds": f"array_fill('succeeded'::text, {_SAME_LENGTH})",
    "results": f"array_fill('null'::text, {_SAME_LENGTH})",
    "output_refs": f"array_fill(NULL::text, {_SAME_LENGTH})",
    "errors": f"array_fill(NULL::text, {_SAME_LENGTH})",
    "run_ats": f"array_fill(NULL::timestamptz, {_SAME_LENGTH})",
    "tracebacks": f"array_fill(NULL::text, {_SAME_LENGTH})",
    "worker_id": ":worker",
    "lease": "30.0",
    "claim_kinds": ":kinds",
    "limit": ":batch",
}


def named_statements(text: str) -> dict[str, str]:
    """``-- name: x`` blocks of a .sql file, comment lines dropped."""
    found: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        header = re.match(r"--\s*name:\s*(\S+)", line)
        if header:
            name = header.group(1)
            found[name] = ""
        elif name and not line.lstrip().startswith("--"):
            found[name] += line + "\n"
    return {k: v.strip() for k, v in found.items()}


def script(schema: str) -> str:
    parts = named_statements(RUNS_SQL.read_text())
    body = f"WITH {parts['part_outcomes']},\n{parts['part_claim']}\n"
    body = body.replace("{schema}", schema)
    body = re.sub(r"%\((\w+)\)[sb]", lambda m: _PARAMS[m.group(1)], body)  # text or binary
    leftover = re.findall(r"\{\w+\}", body)
    if leftover:
        raise RuntimeError(f"runs.sql pieces this script does not fill in: {leftover}")
    return (
        body
        + "SELECT coalesce(array_agg(id), '{}') AS ids,\n"
        + "       coalesce(array_agg(attempt), '{}') AS attempts\n"
        + "FROM claimed \\gset\n"
    )


def ceiling(w: Workload) -> dict[str, Any]:
    if shutil.which("pgbench") is None:
        return {"supported": False, "reason": "pgbench is not installed"}
    if not RUNS_SQL.exists():
        return {"supported": False, "reason": f"{RUNS_SQL} does not exist yet"}
    hooks = runce_postgres.BACKEND_HOOKS
    runce_queue.open_project(hooks)
    runce = runce_queue.fresh(hooks)
    runce_queue.prefill(hooks, runce, RUNS)
    transactions = RUNS // BATCH + 1  # the last one only acknowledges
    defines = {
        "ids": "{}",
        "attempts": "{}",
        "worker": "pgbench",
        "batch": str(BATCH),
        "kinds": f"{{{runce_queue.KIND}}}",
    }
    tps, latency = _pgbench(script(runce_postgres.SCHEMA), "extended", transactions, defines)
    left = hooks.unfinished()
    if left:
        raise RuntimeError(f"{left} runs left unfinished by pgbench")
    seconds = transactions / tps
    return {
        "runs": RUNS,
        "runs_per_s": round(RUNS / seconds, 1),
        "seconds": round(seconds, 4),
        "batch": BATCH,
        "transactions_per_s": round(tps, 1),
        "ms_per_batch": latency,
    }


def _pgbench(
    text: str, mode: str, transactions: int, defines: dict[str, str]
) -> tuple[float, float | None]:
    """Run ``text`` as a pgbench script with one client: (transactions/s, latency in ms)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", prefix="bench-pgbench-") as fh:
        fh.write(text)
        fh.flush()
        command = ["pgbench", "-n", "-M", mode, "-c", "1", "-t", str(transactions)]
        for name, value in defines.items():
            command += ["-D", f"{name}={value}"]
        done = subprocess.run([*command, "-f", fh.name, pg_dsn()], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    tps = re.search(r"tps = ([\d.]+) \(without initial", done.stdout)
    if tps is None:
        raise RuntimeError(f"pgbench printed no tps:\n{done.stdout[-1500:]}")
    latency = re.search(r"latency average = ([\d.]+) ms", done.stdout)
    return float(tps.group(1)), float(latency.group(1)) if latency else None


# -- enqueue: what the server allows runce's enqueue statements ----------------------------

# Ids that increase as runce's (UUIDv7s) do, 36 characters like them, made by the server.
_INCREASING_ID = (
    "lpad((extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text || "
    "lpad(:client_id::text, 3, '0'), 36, '0')"
)
_ONE_RUN = {
    "id": _INCREASING_ID,
    "kind": f"'{runce_queue.KIND}'",
    "input": "'{\"t\":0.0}'",
    "max_attempts": "3",
    "priority": "0",
    "run_at": "NULL",
    "project_id": "NULL",
    "idempotency_key": "NULL",
    "correlation_id": "NULL",
    "trace_context": "NULL",
    "concurrency_key": "NULL",
}


def enqueue_script(schema: str, channel: str) -> str:
    """runs.sql's ``enqueue_run`` with the values ``runce.enqueue(KIND, {"t": 0.0})`` binds."""
    body = named_statements(RUNS_SQL.read_text())["enqueue_run"].replace("{schema}", schema)
    values = {**_ONE_RUN, "channel": f"'{channel}'"}
    return re.sub(r"%\((\w+)\)[sb]", lambda m: values[m.group(1)], body) + "\n"


def _fresh_queue() -> Any:
    hooks = runce_postgres.BACKEND_HOOKS
    runce_queue.open_project(hooks)
    runce_queue.fresh(hooks)  # the schema exists, the tables are empty
    return hooks


def _channel() -> str:
    from runce.stores.postgres.queue import channel_of

    return channel_of(runce_postgres.SCHEMA)


def enqueue_single(w: Workload) -> dict[str, Any]:
    if shutil.which("pgbench") is None:
        return {"supported": False, "reason": "pgbench is not installed"}
    hooks = _fresh_queue()
    tps, latency = _pgbench(
        enqueue_script(runce_postgres.SCHEMA, _channel()), "prepared", w.jobs, {}
    )
    runce_queue.expect_queued(hooks, w.jobs)
    hooks.clear()
    through_python = _enqueue_through_psycopg(w.jobs)
    runce_queue.expect_queued(hooks, w.jobs)
    return {
        "runs": w.jobs,
        "runs_per_s": round(tps, 1),
        "seconds": round(w.jobs / tps, 4),
        "batch": 1,
        "ms_per_run": latency,
        "psycopg_runs_per_s": round(through_python, 1),
    }


def _enqueue_through_psycopg(runs: int) -> float:
    """Runs/s of ``enqueue_run`` sent as runce sends it (prepared, through psycopg's libpq
    calls and its wait) from a Python loop that does nothing else: every run's parameters
    encoded before the clock starts. No Python client of PostgreSQL through psycopg can
    enqueue one run at a time faster than this."""
    import psycopg
    from psycopg import generators
    from psycopg.pq import ExecStatus

    from runce.runs.service import new_run_ids
    from runce.stores.postgres.prepared import numbered, text_value

    body = named_statements(RUNS_SQL.read_text())["enqueue_run"]
    text, names = numbered(body.replace("{schema}", runce_postgres.SCHEMA))
    values = {**dict.fromkeys(names), "kind": runce_queue.KIND, "input": '{"t":0.0}'}
    values.update(max_attempts=3, priority=0, channel=_channel())
    sent = [
        [text_value(run_id if name == "id" else values[name]) for name in names]
        for run_id in new_run_ids(runs)
    ]
    with psycopg.connect(pg_dsn(), autocommit=True) as conn:
        pgconn = conn.pgconn
        pgconn.send_prepare(b"bench_enqueue_run", text.encode())
        conn.wait(generators.execute(pgconn))
        began = time.perf_counter()
        for params in sent:
            pgconn.send_query_prepared(b"bench_enqueue_run", params, result_format=1)
            result = conn.wait(generators.execute(pgconn))[-1]
            if result.status != ExecStatus.TUPLES_OK:
                raise RuntimeError(f"enqueue_run failed: {result.error_message!r}")
        took = time.perf_counter() - began
    return runs / took


def _copy_rows(columns: list[str], ids: list[str], now: str) -> bytes:
    """COPY text for runs of ``KIND`` with input {"t": 0.0}, in ``columns``' order."""
    known = {
        "kind": runce_queue.KIND,
        "input": '{"t":0.0}',
        "state": "queued",
        "max_attempts": "3",
        "priority": "0",
        "run_at": now,
        "created_at": now,
        "updated_at": now,
    }
    unknown = [c for c in columns if c != "id" and c not in known and not c.endswith("_id")]
    unknown = [c for c in unknown if c not in ("trace_context", "concurrency_key")]
    if unknown:
        raise RuntimeError(f"enqueue_copy_runs has columns this ceiling does not fill: {unknown}")
    template = "\t".join("{id}" if c == "id" else known.get(c, "\\N") for c in columns)
    return "".join(template.replace("{id}", run_id) + "\n" for run_id in ids).encode()


def enqueue_batched(w: Workload) -> dict[str, Any]:
    import psycopg

    from runce.runs.service import new_run_ids

    hooks = _fresh_queue()
    statements = named_statements(RUNS_SQL.read_text())
    begin = statements["enqueue_copy_begin"].replace("{schema}", runce_postgres.SCHEMA)
    copy = statements["enqueue_copy_runs"].replace("{schema}", runce_postgres.SCHEMA)
    listed = re.search(r"\(([^)]*)\)", copy)
    if listed is None:
        raise RuntimeError("enqueue_copy_runs names no columns")
    columns = [c.strip() for c in listed.group(1).split(",")]
    now = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())
    sizes = [min(w.batch, w.jobs - start) for start in range(0, w.jobs, w.batch)]
    batches = [_copy_rows(columns, new_run_ids(size), now) for size in sizes]
    params = {"channel": _channel(), "kinds": [runce_queue.KIND]}
    took = 0.0
    with psycopg.connect(pg_dsn()) as conn:
        for data in batches:
            began = time.perf_counter()
            with conn.transaction():
                conn.execute(begin, params)
                with conn.cursor().copy(copy) as writer:
                    writer.write(data)
            took += time.perf_counter() - began
    runce_queue.expect_queued(hooks, w.jobs)
    return {
        "runs": w.jobs,
        "runs_per_s": round(w.jobs / took, 1),
        "seconds": round(took, 4),
        "batch": w.batch,
        "ms_per_batch": round(1000 * took / len(batches), 3),
    }
