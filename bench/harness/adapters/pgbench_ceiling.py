"""What PostgreSQL itself allows: runce's own acknowledge-and-claim statement driven by
``pgbench`` with one client, in batches, with no Python in the loop.

The script is built from ``src/runce/stores/postgres/runs.sql`` at run time, so it follows
the SQL as it changes: the ``part_outcomes`` and ``part_claim`` pieces are used unchanged
(they are what ``exchange_runs`` is made of), with the parameters a worker would bind
filled in the way pgbench can: the fences claimed by the previous transaction come back
through ``\\gset`` as two arrays, and the other outcome arrays (every outcome "succeeded",
result ``null``) are built to the same length. The one difference from the worker's
statement: the final SELECT returns the claimed fences as two arrays instead of every
acknowledged and claimed row, so the ceiling does not pay for shipping rows to a client.

Each transaction acknowledges the previous batch and claims the next: ``runs_per_s`` is
runs acknowledged per second of pgbench's run time (connection set-up excluded).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
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
    with tempfile.NamedTemporaryFile("w", suffix=".sql", prefix="bench-pgbench-") as fh:
        fh.write(script(runce_postgres.SCHEMA))
        fh.flush()
        done = subprocess.run(
            [
                "pgbench",
                "-n",
                "-M",
                "extended",
                "-c",
                "1",
                "-t",
                str(transactions),
                "-f",
                fh.name,
                "-D",
                "ids={}",
                "-D",
                "attempts={}",
                "-D",
                "worker=pgbench",
                "-D",
                f"batch={BATCH}",
                "-D",
                f"kinds={{{runce_queue.KIND}}}",
                pg_dsn(),
            ],
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    left = hooks.unfinished()
    if left:
        raise RuntimeError(f"{left} runs left unfinished by pgbench")
    tps = float(re.search(r"tps = ([\d.]+) \(without initial", done.stdout).group(1))
    seconds = transactions / tps
    latency = re.search(r"latency average = ([\d.]+) ms", done.stdout)
    return {
        "runs": RUNS,
        "runs_per_s": round(RUNS / seconds, 1),
        "seconds": round(seconds, 4),
        "batch": BATCH,
        "transactions_per_s": round(tps, 1),
        "ms_per_batch": float(latency.group(1)) if latency else None,
    }
