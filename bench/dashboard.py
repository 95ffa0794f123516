"""The dashboard with a million runs in PostgreSQL: server time of its pages, and the plans
of the queries behind them.

    .venv/bin/python bench/dashboard.py [--runs 1000000] [--dsn postgresql://...]

Fills the schema ``runce_dashboard_bench`` of ``BENCH_PG_DSN``'s database (default
``postgresql://postgres@127.0.0.1:5432/bench``; give it a database of its own while other
benchmarks use that one) with runs made by ``generate_series`` in one statement: 23 days of
history at one run every two seconds, eight kinds over five projects, a backlog of queued
runs over the last eleven hours, a few running, one in 50 failed, one in 97 canceled. Beside
them: a tasks folder of 40 once tasks (30 applied, 10 pending) with 4,000 attempts in their
history, and a day of workers (1,440 stopped ``--drain`` runs, one a minute, and 3 live).
Then it asks the dashboard for its pages in process (the time of the request through the
app, as the server spends it, without a network), signed in with a token bound to no
project and with one bound to ``proj.1``: the overview and once tasks, the runs page with
each filter, combined filters, a time range and a second (cursor) page. It prints each
page's median and 95th percentile, and ``EXPLAIN (ANALYZE, BUFFERS)`` of each query. Not
part of the test suite: it writes some 600 MB and takes minutes.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import statistics
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from runce.api.app import create_app
from runce.config import Config, resolve_config
from runce.domain.runs import RunFilter
from runce.runs.tokens import create_token

SCHEMA = "runce_dashboard_bench"
TASKS = 40  # once tasks in the tasks folder
APPLIED = 30  # of them applied (baselined); the others pending
ATTEMPTS = 4_000  # history rows beside the baselines, spread over every task
DRAINS = 1_440  # stopped workers: a day of `runce worker --drain` from cron, one a minute
LIVE = 3  # workers heartbeating now
BOUND = "proj.1"  # the project of the bound token
FILL = """
INSERT INTO {schema}.runs (
    id, project_id, kind, input, state, attempt, max_attempts, run_at, created_at,
    updated_at, correlation_id, result, error, claimed_by, claimed_at, lease_expires_at,
    started_at, finished_at
)
SELECT
    lpad(to_hex(g), 12, '0') || '-0000-7000-8000-000000000000',
    'proj.' || ((g / 8) %% 5),
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
HISTORY = """
INSERT INTO {schema}.history (
    attempt_id, task_id, title, checksum, status, started_at, applied_by, owner, host, pid,
    machine, runce_version, finished_at, duration_ms, error_type, error_message
)
SELECT
    'bench-' || g,
    (%(ids)s::text[])[1 + g %% %(tasks)s],
    'bench task',
    'sha256:bench',
    CASE WHEN g %% 10 = 0 THEN 'succeeded' ELSE 'failed' END,
    now() - g * interval '10 minutes',
    'cli', 'bench', 'bench-host', 1, 'bench-machine', 'bench',
    now() - g * interval '10 minutes' + interval '2 seconds',
    2000,
    CASE WHEN g %% 10 = 0 THEN NULL ELSE 'RuntimeError' END,
    CASE WHEN g %% 10 = 0 THEN NULL ELSE 'boom ' || g END
FROM generate_series(1, %(n)s) AS g
"""
WORKERS = """
INSERT INTO {schema}.workers (id, host, pid, started_at, last_seen, concurrency, kinds, state)
SELECT
    'bench-worker-' || g,
    'bench-host',
    g,
    now() - g * interval '1 minute' - interval '40 seconds',
    CASE WHEN g <= %(live)s THEN now() ELSE now() - g * interval '1 minute' END,
    4,
    '{{}}'::text[],
    CASE WHEN g <= %(live)s THEN 'running' ELSE 'stopped' END
FROM generate_series(1, %(n)s) AS g
"""
TASK = """import runce


@runce.task(title="bench task {n}")
def run(ctx):
    pass
"""
# The pages asked for, by whom ("all": a token bound to no project; else the project the
# token is bound to). "{next:PATH}" is the page PATH's "Older runs" link (its cursor);
# "{ids}" the ids of the first runs page, as that page polls them.
PAGES: tuple[tuple[str, str], ...] = (
    ("all", "/ui"),
    ("all", "/ui/tasks"),
    ("all", "/ui/live/tasks"),
    ("all", "/ui/workers"),
    ("all", "/ui/runs"),
    ("all", "{next:/ui/runs}"),
    ("all", "/ui/runs?state=failed"),
    ("all", "/ui/runs?kind=kind.3"),
    ("all", "/ui/runs?kind=kind.2&state=failed"),
    ("all", "/ui/runs?kind=kind.3&state=failed"),  # a combination no run has
    ("all", "/ui/runs?project=proj.2&state=failed"),
    ("all", "/ui/runs?since={since}&before={before}"),
    ("all", "{next:/ui/runs?since={since}&before={before}}"),
    ("all", "/ui/runs?q=req-4242"),
    ("all", "/ui/live/runs?{ids}"),
    (BOUND, "/ui"),
    (BOUND, "/ui/runs"),
    (BOUND, "{next:/ui/runs}"),
    (BOUND, "/ui/runs?state=failed"),
    (BOUND, "/ui/runs?kind=kind.1&state=succeeded"),
    (BOUND, "/ui/workers"),
)


def task_ids() -> list[str]:
    return [f"{n:04d}_bench_task" for n in range(1, TASKS + 1)]


def write_tasks(folder: Path) -> None:
    """The same files every time, so that a later run without --fill finds them applied."""
    for n, task_id in enumerate(task_ids(), start=1):
        (folder / f"{task_id}.py").write_text(TASK.format(n=n))


def fill(dsn: str, config: Config, count: int) -> None:
    from runce.tasks.library import baseline, upgrade_schema

    schema = sql.Identifier(SCHEMA)
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The history refuses to lose rows (TRUNCATE too): a fill starts on a new schema.
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
    upgrade_schema(config)
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.monotonic()
        conn.execute(sql.SQL(FILL).format(schema=schema), {"n": count})
        print(f"inserted {count:,} runs in {time.monotonic() - started:.0f} s")
        history = {"n": ATTEMPTS, "ids": task_ids(), "tasks": TASKS}
        conn.execute(sql.SQL(HISTORY).format(schema=schema), history)
        conn.execute(sql.SQL(WORKERS).format(schema=schema), {"n": DRAINS + LIVE, "live": LIVE})
    baseline(config, all_pending=True, until=task_ids()[APPLIED - 1])
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("runs", "history", "applied", "workers"):
            conn.execute(sql.SQL("ANALYZE {}.{}").format(schema, sql.Identifier(table)))
    print(
        f"{TASKS} once tasks ({APPLIED} applied) with {ATTEMPTS + APPLIED:,} attempts; "
        f"{DRAINS:,} stopped workers and {LIVE} live"
    )


def _page(filters: RunFilter, after: tuple[datetime, str] | None = None) -> tuple[Any, Any]:
    """A runs page's statement and parameters, made as the store makes them."""
    from runce.stores.postgres.dialect import CODECS
    from runce.stores.postgres.queries import query_with
    from runce.stores.postgres.queue import _PAGE_AFTER, _PAGE_FILTERS
    from runce.stores.sql.runs import page_of

    page = page_of(filters, after, 51, CODECS, _PAGE_FILTERS, _PAGE_AFTER)
    conditions = [sql.SQL(condition) for condition in page.conditions]
    where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true")
    statement = query_with(page.statement, SCHEMA, filters=where, direction=sql.SQL(page.direction))
    return statement, page.params


def _fiftieth(conn: psycopg.Connection[Any], where: str) -> tuple[datetime, str]:
    """The last run of a first page (newest first): where the second page starts."""
    statement = sql.SQL(
        "SELECT created_at, id FROM {}.runs WHERE "
        + where
        + " ORDER BY created_at DESC, id DESC OFFSET 49 LIMIT 1"
    ).format(sql.Identifier(SCHEMA))
    row = conn.execute(statement).fetchone()
    assert row is not None
    return row[0], row[1]


def plans(dsn: str) -> None:
    from runce.stores.postgres.queries import query_with
    from runce.stores.postgres.queue import COUNTS_SETTINGS

    now = datetime.now(UTC)
    since, before = now - timedelta(days=10), now - timedelta(days=9)
    with psycopg.connect(dsn, autocommit=True) as conn:
        counts = query_with(
            "run_counts",
            SCHEMA,
            since=sql.Literal(now - timedelta(hours=1)),
            limit=sql.Literal(10_001),
        )
        shown: dict[str, tuple[Any, Any]] = {
            "the overview's counts (run_counts)": (counts, {}),
            "once tasks, the latest 20 attempts of each (latest_attempts)": (
                query_with("latest_attempts", SCHEMA),
                {"task_ids": task_ids(), "per_task": 20},
            ),
            "workers, those not stopped and the last 20 stopped (workers)": (
                query_with("workers", SCHEMA),
                {"stopped": 20},
            ),
            "runs page, newest first (page_runs_by_state)": _page(RunFilter()),
            "runs page, second page (page_runs_by_state)": _page(
                RunFilter(), _fiftieth(conn, "true")
            ),
            "runs page, failed ones (page_runs)": _page(RunFilter(state="failed")),
            "runs page, kind and state (page_runs)": _page(
                RunFilter(kind="kind.2", state="failed")
            ),
            "runs page, a kind and state no run has (page_runs)": _page(
                RunFilter(kind="kind.3", state="failed")
            ),
            "runs page, project and state (page_runs)": _page(
                RunFilter(project_id="proj.2", state="failed")
            ),
            "runs page, a day ten days ago (page_runs_by_state)": _page(
                RunFilter(since=since, before=before)
            ),
            f"runs page of a token bound to {BOUND}, second page (page_runs)": _page(
                RunFilter(project_id=BOUND), _fiftieth(conn, f"project_id = '{BOUND}'")
            ),
            "live rows of a page, by their ids (page_runs)": _page(
                RunFilter(
                    ids=tuple(
                        f"{g:012x}-0000-7000-8000-000000000000" for g in range(999_951, 1_000_001)
                    )
                )
            ),
            "find by correlation id (page_runs)": _page(RunFilter(correlation_id="req-4242")),
        }
        for title, (statement, params) in shown.items():
            text = psycopg.ClientCursor(conn).mogrify(statement, params)
            with conn.transaction():
                if title.endswith("(run_counts)"):  # as the store sends it
                    conn.execute(COUNTS_SETTINGS)
                explain = f"EXPLAIN (ANALYZE, BUFFERS) {text}".encode()
                rows = conn.execute(explain).fetchall()
            print(f"\n#### {title}\n\n```\n" + "\n".join(r[0] for r in rows) + "\n```")


def signed_in(app: Any, token: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    client = TestClient(app)
    form = client.get("/ui/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None
    client.post("/ui/login", data={"csrf": csrf.group(1), "token": token})
    return client


def _resolved(client: Any, path: str, values: dict[str, str]) -> tuple[str | None, str]:
    """The path to ask for (None: a second page that does not exist), and its name."""
    if path.startswith("{next:"):
        first = path[len("{next:") : -1]
        older = re.search(r'<a rel="next" href="([^"]+)"', client.get(first.format(**values)).text)
        name = f"{_named(first)}, second page (cursor)"
        return (html.unescape(older.group(1)) if older else None), name
    return path.format(**values), _named(path)


def _named(path: str) -> str:
    if "{ids}" in path:
        return path.replace("{ids}", "id=… (50 ids)")
    return path.replace("{since}", "(10 days ago)").replace("{before}", "(9 days ago)")


def timings(config: Config, rounds: int) -> None:
    everyone = create_token("bench", ["runs:read", "runs:write"], config=config).text
    bound = create_token("bench-bound", ["runs:read"], [BOUND], config=config).text
    app = create_app(config)
    clients = {"all": signed_in(app, everyone), BOUND: signed_in(app, bound)}
    shown = re.findall(r'data-run-id="([^"]+)"', clients["all"].get("/ui/runs").text)
    now = datetime.now(UTC)
    values = {
        "since": (now - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M"),
        "before": (now - timedelta(days=9)).strftime("%Y-%m-%dT%H:%M"),
        "ids": "&".join(f"id={run_id}" for run_id in shown),
    }
    print(f"\nload average before: {_load()}")
    print("\n| token | page | median ms | p95 ms |\n|---|---|---|---|")
    for who, template in PAGES:
        client = clients[who]
        path, name = _resolved(client, template, values)
        token = "no project" if who == "all" else who
        if path is None:
            print(f"| {token} | `{name}` | no such page (too few runs) | |")
            continue
        spent: list[float] = []
        for _ in range(rounds):
            started = time.perf_counter()
            answer = client.get(path)
            spent.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, (path, answer.status_code)
        p95 = statistics.quantiles(spent, n=20)[-1] if len(spent) > 1 else spent[0]
        print(f"| {token} | `{name}` | {statistics.median(spent):.1f} | {p95:.1f} |")
    print(f"\nload average after: {_load()}")


def _load() -> str:
    return ", ".join(f"{n:.1f}" for n in os.getloadavg())


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/bench")
    parser.add_argument("--dsn", default=default, help=f"the database (its schema {SCHEMA})")
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument(
        "--no-fill", action="store_true", help="keep the runs, history and workers already there"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="runce-dashboard-bench-") as folder:
        write_tasks(Path(folder))
        config = resolve_config({"store": args.dsn, "schema": SCHEMA}, tasks_dir=folder)
        if not args.no_fill:
            fill(args.dsn, config, args.runs)
        else:
            from runce.tasks.library import upgrade_schema

            upgrade_schema(config)
        timings(config, args.rounds)
    plans(args.dsn)


if __name__ == "__main__":
    main()
