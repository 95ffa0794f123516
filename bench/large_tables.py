"""runce's queue on large tables against the same queue empty.

Fills a PostgreSQL schema with 5,000,000 finished and 500,000 queued runs (a SQLite file
with 1,000,000 finished), by ``INSERT ... SELECT generate_series`` (a recursive CTE on
SQLite) with the listing indexes dropped and rebuilt after, then measures on it and on an
empty schema, in this process:

* claim-and-acknowledge: ``exchange`` rounds (acknowledge the last batch, claim the next)
  of 100 runs over 20,000 runs enqueued due: runs/s and the latency of a round;
* the first page of ``runce runs list`` (50 runs, newest first), unfiltered, by state and
  by kind;
* the metrics' depth query (``run_counts``, ``runce_runs{kind,state}``) and the dashboard's
  ``stats``;

and prints the ``EXPLAIN (ANALYZE, BUFFERS)`` of each statement on the large table. The
500,000 queued runs are due tomorrow (a backlog of delayed runs): the claims take the
20,000 due ones.

    .venv/bin/python bench/large_tables.py                # PostgreSQL (BENCH_PG_DSN)
    .venv/bin/python bench/large_tables.py --sqlite       # SQLite, in BENCH_WORK_DIR
    .venv/bin/python bench/large_tables.py --finished 500000 --queued 50000

The filled schema (``runce_large``) is kept for a second look (``--keep``); ``--reuse``
measures an existing one without filling it again.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/bench")
WORK = Path(os.environ.get("BENCH_WORK_DIR", "/tmp/runce-bench"))
KINDS = 8
BATCH = 100


def _config(folder: Path, store: str, schema: str | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "runce.toml"
    text = f'store = "{store}"\n'
    if schema:
        text += f'schema = "{schema}"\n'
    text += "[runs.retention]\nauto = false\n"
    path.write_text(text)
    return path


# -- filling ---------------------------------------------------------------------------------

PG_COLUMNS = """id, kind, input, state, attempt, max_attempts, priority, run_at, created_at,
    updated_at, claimed_by, claimed_at, started_at, finished_at"""

PG_FINISHED = f"""
INSERT INTO {{schema}}.runs ({PG_COLUMNS})
SELECT md5('f' || i), 'kind.' || (i %% {KINDS}), '{{{{"i": 1}}}}'::jsonb,
       CASE WHEN i %% 50 = 0 THEN 'failed' WHEN i %% 97 = 0 THEN 'canceled' ELSE 'succeeded' END,
       1, 3, 0, t, t, t + interval '2 seconds', 'w', t, t, t + interval '2 seconds'
FROM (SELECT i, now() - interval '30 days' * (i::float8 / %(n)s) AS t
      FROM generate_series(1, %(n)s) AS i) AS g
"""

PG_QUEUED = f"""
INSERT INTO {{schema}}.runs ({PG_COLUMNS})
SELECT md5('q' || i), 'kind.' || (i %% {KINDS}), '{{{{"i": 1}}}}'::jsonb, 'queued', 0, 3, 0,
       now() + interval '1 day', now() - interval '1 hour' + i * interval '1 ms',
       now() - interval '1 hour' + i * interval '1 ms',
       NULL, NULL, NULL, NULL
FROM generate_series(1, %(n)s) AS i
"""


def fill_postgres(schema: str, finished: int, queued: int) -> None:
    import psycopg

    with psycopg.connect(DSN, autocommit=True) as conn:
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s "
            "AND tablename = 'runs' AND indexname <> 'runs_pkey'",
            (schema,),
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {schema}.{name}")
        began = time.perf_counter()
        conn.execute(PG_FINISHED.format(schema=schema), {"n": finished})
        conn.execute(PG_QUEUED.format(schema=schema), {"n": queued})
        filled = time.perf_counter() - began
        conn.execute("SET maintenance_work_mem = '256MB'")
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute(f"VACUUM ANALYZE {schema}.runs")
        print(
            f"filled {finished:,} finished + {queued:,} queued in {filled:.0f}s, "
            f"indexed and analyzed in {time.perf_counter() - began - filled:.0f}s"
        )


def fill_sqlite(path: Path, finished: int) -> None:
    import sqlite3

    conn = sqlite3.connect(path)
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runce_runs' "
        "AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    began = time.perf_counter()
    now = datetime.now(UTC)
    start = (now - timedelta(days=30)).timestamp()
    conn.execute(
        "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?) "
        "INSERT INTO runce_runs (id, kind, input, state, attempt, max_attempts, priority, "
        "run_at, created_at, updated_at, claimed_by, claimed_at, started_at, finished_at) "
        "SELECT printf('%032x', i), 'kind.' || (i % ?), '{\"i\":1}', "
        "CASE WHEN i % 50 = 0 THEN 'failed' WHEN i % 97 = 0 THEN 'canceled' "
        "ELSE 'succeeded' END, 1, 3, 0, t, t, t, 'w', t, t, t "
        "FROM (SELECT i, strftime('%Y-%m-%dT%H:%M:%f000Z', ? + i * ?, 'unixepoch') AS t "
        "FROM g)",
        (finished, KINDS, start, 30 * 86400 / finished),
    )
    conn.commit()
    filled = time.perf_counter() - began
    for _, definition in indexes:
        conn.execute(definition)
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    print(
        f"filled {finished:,} finished in {filled:.0f}s, "
        f"indexed in {time.perf_counter() - began - filled:.0f}s"
    )


# -- measuring -------------------------------------------------------------------------------


def _timed(call: Callable[[], Any], times: int = 15) -> float:
    """The median milliseconds of ``times`` calls (after one untimed)."""
    call()
    samples = []
    for _ in range(times):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def measure(config: Path, label: str, runs: int) -> dict[str, float]:
    import runce
    from runce.domain.runs import ClaimRequest, Outcome
    from runce.runs import library

    service = library.service(config)
    queue = service.queue
    for start in range(0, runs, 1000):
        service.enqueue_many("bench.claim", [{"i": 1}] * min(1000, runs - start))
    request = ClaimRequest("bench-worker", ["bench.claim"], BATCH, 60.0)
    rounds: list[float] = []
    outcomes: list[Outcome] = []
    done = 0
    began = time.perf_counter()
    while True:
        started = time.perf_counter()
        _, claimed = queue.exchange(outcomes, request)
        rounds.append((time.perf_counter() - started) * 1000)
        done += len(outcomes)
        outcomes = [Outcome(run.fence, "succeeded") for run in claimed]
        if not claimed:
            break
    took = time.perf_counter() - began
    rounds.sort()
    figures = {
        "claim+ack runs/s": done / took,
        "round p50 ms": rounds[len(rounds) // 2],
        "round p99 ms": rounds[int(len(rounds) * 0.99)],
        "list first page ms": _timed(lambda: runce.list_runs(config=config, limit=50)),
        "list succeeded ms": _timed(
            lambda: runce.list_runs(config=config, limit=50, state="succeeded")
        ),
        "list queued ms": _timed(lambda: runce.list_runs(config=config, limit=50, state="queued")),
        "list kind ms": _timed(lambda: runce.list_runs(config=config, limit=50, kind="kind.3")),
        "metrics run_counts ms": _timed(queue.run_counts, 5),
        "dashboard stats ms": _timed(lambda: queue.stats(queue.now() - timedelta(hours=1)), 5),
    }
    print(f"\n{label}")
    for name, value in figures.items():
        print(f"  {name:<24} {value:>10,.1f}")
    return figures


EXPLAINED = {
    "claim (part_claim, 100 due runs)": """
        EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
        SELECT id FROM {schema}.runs
        WHERE state = 'queued' AND run_at <= now() AND kind = ANY('{{bench.claim}}'::text[])
        ORDER BY priority DESC, run_at, id LIMIT 100 FOR UPDATE SKIP LOCKED""",
    "first page, newest first (page_runs_by_state: per state, merged)": """
        EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
        SELECT * FROM (
            (SELECT * FROM {schema}.runs WHERE state = 'queued'
             ORDER BY created_at DESC, id DESC LIMIT 50)
            UNION ALL
            (SELECT * FROM {schema}.runs WHERE state = 'running'
             ORDER BY created_at DESC, id DESC LIMIT 50)
            UNION ALL
            (SELECT * FROM {schema}.runs WHERE state = 'succeeded'
             ORDER BY created_at DESC, id DESC LIMIT 50)
            UNION ALL
            (SELECT * FROM {schema}.runs WHERE state = 'failed'
             ORDER BY created_at DESC, id DESC LIMIT 50)
            UNION ALL
            (SELECT * FROM {schema}.runs WHERE state = 'canceled'
             ORDER BY created_at DESC, id DESC LIMIT 50)
        ) AS newest ORDER BY created_at DESC, id DESC LIMIT 50""",
    "first page of one kind": """
        EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
        SELECT * FROM {schema}.runs WHERE kind || '' = 'kind.3'
        ORDER BY created_at DESC, id DESC LIMIT 50""",
    "prune batch (1,000 runs)": """
        EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
        SELECT id FROM {schema}.runs
        WHERE finished_at < now() - interval '20 days'
          AND ((state = 'succeeded' AND finished_at < now() - interval '20 days')
            OR (state IN ('failed', 'canceled') AND finished_at < now() - interval '20 days'))
        ORDER BY finished_at LIMIT 1000""",
}


def _run_counts(schema: str) -> str:
    """The statement of the metrics' and the dashboard's counts, as the store sends it."""
    import psycopg
    from psycopg import sql

    from runce.domain.runs import STATS_CAP
    from runce.stores.postgres.queries import query_with

    since = sql.SQL("now() - interval '1 hour'")
    statement = query_with("run_counts", schema, since=since, limit=sql.Literal(STATS_CAP + 1))
    with psycopg.connect(DSN) as conn:
        return "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement.as_string(conn)


def explain_postgres(schema: str) -> None:
    import psycopg

    from runce.stores.postgres.queue import COUNTS_SETTINGS

    statements = {
        **EXPLAINED,
        "metrics and dashboard counts (run_counts, cap 10,000)": _run_counts(schema),
    }
    with psycopg.connect(DSN, autocommit=True) as conn:
        for title, statement in statements.items():
            print(f"\n-- {title}")
            with conn.transaction():
                if title.startswith("claim"):  # as the worker's session plans it
                    conn.execute("SET LOCAL enable_seqscan = off")
                    conn.execute("SET LOCAL enable_bitmapscan = off")
                if title.startswith("metrics"):  # as the store sends it
                    conn.execute(COUNTS_SETTINGS)
                else:
                    statement = statement.format(schema=schema)
                rows = conn.execute(statement).fetchall()
            for (line,) in rows:
                print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--finished", type=int)
    parser.add_argument("--queued", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=20_000, help="claimed and acknowledged")
    parser.add_argument("--keep", action="store_true", help="keep the filled schema or file")
    parser.add_argument("--reuse", action="store_true", help="measure the kept one again")
    args = parser.parse_args()
    finished = args.finished or (1_000_000 if args.sqlite else 5_000_000)
    tag = uuid.uuid4().hex[:6]
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load {load:.1f} at the start")
    if args.sqlite:
        empty_dir, large_dir = WORK / f"empty-{tag}", WORK / "large-sqlite"
        empty = _config(empty_dir, "sqlite:///runce.db", None)
        large = _config(large_dir, "sqlite:///runce.db", None)
        if not args.reuse:
            (large_dir / "runce.db").unlink(missing_ok=True)
            from runce.runs import library

            library.service(large).enqueue("bench.warm", None)  # the schema
            fill_sqlite(large_dir / "runce.db", finished)
        base = measure(empty, "empty", args.runs)
        big = measure(large, f"{finished:,} finished", args.runs)
    else:
        empty_schema, large_schema = f"runce_empty_{tag}", "runce_large"
        empty = _config(WORK / f"empty-{tag}", DSN, empty_schema)
        large = _config(WORK / "large-pg", DSN, large_schema)
        if not args.reuse:
            import psycopg

            with psycopg.connect(DSN, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {large_schema} CASCADE")
            from runce.runs import library

            library.service(large).enqueue("bench.warm", None)  # the schema
            fill_postgres(large_schema, finished, args.queued)
        base = measure(empty, "empty", args.runs)
        big = measure(large, f"{finished:,} finished + {args.queued:,} queued", args.runs)
        explain_postgres(large_schema)
        import psycopg

        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {empty_schema} CASCADE")
            if not args.keep:
                conn.execute(f"DROP SCHEMA {large_schema} CASCADE")
    print("\nlarge / empty")
    for name in base:
        print(f"  {name:<24} {big[name] / base[name]:>10.2f}x")
    print(f"load {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
