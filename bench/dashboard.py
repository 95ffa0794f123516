"""The dashboard with a million runs in PostgreSQL: server time of its pages, and the plans
of the queries behind them.

    .venv/bin/python bench/dashboard.py [--runs 1000000] [--dsn postgresql://...]

Fills the schema ``runce_dashboard_bench`` of ``BENCH_PG_DSN``'s database (default
``postgresql://postgres@127.0.0.1:5432/bench``) with runs made by ``generate_series`` in
one statement: 23 days of history at one run every two seconds, eight kinds, a backlog of
queued runs over the last eleven hours, a few running, one in 50 failed, one in 97
canceled. Then it asks the dashboard for its pages in process (the time of the request
through the app, as the server spends it, without a network) and prints each page's
median and 95th percentile, and ``EXPLAIN (ANALYZE, BUFFERS)`` of each query. Not part of
the test suite: it writes some 600 MB and takes minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from runce.api.app import create_app
from runce.api.tokens import create_token
from runce.config import resolve_config

SCHEMA = "runce_dashboard_bench"
FILL = """
INSERT INTO {schema}.runs (
    id, kind, input, state, attempt, max_attempts, run_at, created_at, updated_at,
    correlation_id, result, error, claimed_by, claimed_at, lease_expires_at, started_at,
    finished_at
)
SELECT
    lpad(to_hex(g), 12, '0') || '-0000-7000-8000-000000000000',
    'kind.' || (g %% 8),
    jsonb_build_object('i', g),
    s.state,
    CASE WHEN s.state = 'queued' THEN 0 ELSE 1 END,
    3,
    c.created_at,
    c.created_at,
    c.created_at + interval '1 second',
    'req-' || (g / 10),
    CASE WHEN s.state = 'succeeded' THEN '{{"ok": true}}'::jsonb END,
    CASE WHEN s.state = 'failed' THEN 'ValueError: boom' END,
    CASE WHEN s.state IN ('queued') THEN NULL ELSE 'bench-worker' END,
    CASE WHEN s.state IN ('queued') THEN NULL ELSE c.created_at END,
    CASE WHEN s.state = 'running' THEN now() + interval '1 hour' END,
    CASE WHEN s.state IN ('queued') THEN NULL ELSE c.created_at END,
    CASE WHEN s.state IN ('succeeded', 'failed', 'canceled')
         THEN c.created_at + interval '1 second' END
FROM generate_series(1, %(n)s) AS g
CROSS JOIN LATERAL (
    SELECT now() - (%(n)s - g) * interval '2 seconds' AS created_at
) AS c
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN (%(n)s - g) < 20000 AND g %% 2 = 0 THEN 'queued'
        WHEN (%(n)s - g) < 20000 AND g %% 97 = 1 THEN 'running'
        WHEN g %% 50 = 0 THEN 'failed'
        WHEN g %% 97 = 0 THEN 'canceled'
        ELSE 'succeeded'
    END AS state
) AS s
"""
# runce's own statements, as the store sends them (names in stores/postgres/runs.sql).
PLANS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "the overview's counts (run_counts)": ("run_counts", {"since": None}, {}),
    "runs page, newest first (page_runs_by_state)": (
        "page_runs_by_state",
        {"filters": "true"},
        {"limit": 51},
    ),
    "runs page, failed ones (page_runs)": (
        "page_runs",
        {"filters": "state = %(state)s"},
        {"limit": 51, "state": "failed"},
    ),
    "live rows of a page, by their ids (page_runs)": (
        "page_runs",
        {"filters": "id = ANY(%(ids)s::text[])"},
        {
            "limit": 51,
            "ids": [f"{g:012x}-0000-7000-8000-000000000000" for g in range(999_950, 1_000_001)],
        },
    ),
    "find by correlation id (page_runs)": (
        "page_runs",
        {"filters": "correlation_id = %(correlation_id)s"},
        {"limit": 51, "correlation_id": "req-4242"},
    ),
}
PAGES = (
    "/ui",
    "/ui/runs",
    "/ui/runs?state=failed",
    "/ui/runs?kind=kind.3",
    "/ui/runs?q=req-4242",
    "/ui/live/runs?",  # with the ids of the first page, as that page polls it
)


def fill(dsn: str, count: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}.runs CASCADE").format(sql.Identifier(SCHEMA)))
        started = time.monotonic()
        statement = sql.SQL(FILL).format(schema=sql.Identifier(SCHEMA))
        conn.execute(statement, {"n": count})
        conn.execute(sql.SQL("ANALYZE {}.runs").format(sql.Identifier(SCHEMA)))
        print(f"inserted {count:,} runs in {time.monotonic() - started:.0f} s")


def plans(dsn: str) -> None:
    from runce.stores.postgres.queries import query_with
    from runce.stores.postgres.queue import COUNTS_SETTINGS

    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for title, (name, pieces, params) in PLANS.items():
            literal = {
                key: sql.SQL(value) if key == "filters" else sql.Literal(value or hour_ago)
                for key, value in pieces.items()
            }
            if name == "run_counts":
                literal["limit"] = sql.Literal(10_001)
            else:
                literal["direction"] = sql.SQL("DESC")
            statement = query_with(name, SCHEMA, **literal)
            text = psycopg.ClientCursor(conn).mogrify(statement, params)
            with conn.transaction():
                if name == "run_counts":  # as the store sends it
                    conn.execute(COUNTS_SETTINGS)
                explain = f"EXPLAIN (ANALYZE, BUFFERS) {text}".encode()
                rows = conn.execute(explain).fetchall()
            print(f"\n#### {title}\n\n```\n" + "\n".join(r[0] for r in rows) + "\n```")


def timings(dsn: str, rounds: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    config = resolve_config({"store": dsn, "schema": SCHEMA})
    token = create_token("bench", ["runs:read", "runs:write"], config=config).text
    client = TestClient(create_app(config))
    form = client.get("/ui/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None
    client.post("/ui/login", data={"csrf": csrf.group(1), "token": token})
    shown = re.findall(r'data-run-id="([^"]+)"', client.get("/ui/runs").text)
    print("\n| page | median ms | p95 ms |\n|---|---|---|")
    for path in PAGES:
        if path.endswith("?"):
            path += "&".join(f"id={run_id}" for run_id in shown)
        spent: list[float] = []
        for _ in range(rounds):
            started = time.perf_counter()
            answer = client.get(path)
            spent.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, (path, answer.status_code)
        p95 = statistics.quantiles(spent, n=20)[-1]
        name = path if len(path) < 60 else f"{path[:40]}… ({len(shown)} ids)"
        print(f"| `{name}` | {statistics.median(spent):.1f} | {p95:.1f} |")


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/bench")
    parser.add_argument("--dsn", default=default)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--no-fill", action="store_true", help="keep the runs already there")
    args = parser.parse_args(argv)
    config = resolve_config({"store": args.dsn, "schema": SCHEMA})
    from runce.tasks.api import upgrade_schema

    upgrade_schema(config)
    if not args.no_fill:
        fill(args.dsn, args.runs)
    timings(args.dsn, args.rounds)
    plans(args.dsn)


if __name__ == "__main__":
    main()
