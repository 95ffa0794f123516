"""What runs, in which virtualenv, and which figures the table compares."""

from __future__ import annotations

from dataclasses import dataclass

QUEUE = ("enqueue_single", "enqueue_batched", "process", "latency")


@dataclass(frozen=True)
class Subject:
    adapter: str  # module under harness/adapters/
    venv: str  # "runce" (the project's .venv) or "peers" (bench/.venv-peers)
    group: str  # what --only selects
    measurements: tuple[str, ...]
    label: str  # the name in the table


SUBJECTS = (
    Subject("runce_postgres", "runce", "postgresql", QUEUE, "runce"),
    Subject("runce_postgres_tuned", "runce", "postgresql", ("process",), "runce tuned"),
    Subject("runce_postgres_observed", "runce", "postgresql", ("process",), "runce observed"),
    Subject("pgqueuer", "peers", "postgresql", QUEUE, "pgqueuer"),
    Subject("procrastinate", "peers", "postgresql", QUEUE, "procrastinate"),
    Subject(
        "pgbench_ceiling",
        "runce",
        "ceiling",
        ("ceiling", "enqueue_single", "enqueue_batched"),
        "pgbench",
    ),
    Subject("runce_sqlite", "runce", "sqlite", QUEUE, "runce"),
    Subject("runce_sqlite_tuned", "runce", "sqlite", ("process",), "runce tuned"),
    Subject("runce_sqlite_observed", "runce", "sqlite", ("process",), "runce observed"),
    Subject("huey", "peers", "sqlite", QUEUE, "huey"),
    Subject("runce_once", "runce", "once", ("once_run", "once_status"), "runce"),
    Subject("alembic_cli", "peers", "once", ("once_run", "once_status"), "alembic"),
    Subject("yoyo_cli", "peers", "once", ("once_run", "once_status"), "yoyo"),
    Subject("runce_once", "runce", "startup", ("startup",), "runce"),
    Subject("runce_sqlite", "runce", "memory", ("memory",), "runce"),
)

GROUPS = tuple(dict.fromkeys(s.group for s in SUBJECTS))
SINGLE_RUN_GROUPS = frozenset({"memory"})  # long, and a trend rather than a speed


@dataclass(frozen=True)
class Row:
    """One line of the table: runce's figure and, per peer, the peer's and the ratio."""

    section: str
    workload: str
    measurement: str
    key: str  # field of the result
    unit: str
    higher_is_better: bool
    runce: str  # adapter
    peers: tuple[tuple[str, str], ...] = ()  # (adapter, measurement) pairs
    ceiling: tuple[str, str] | None = None  # shown as runce's share of it
    # A client's ceiling, (adapter, measurement, key): the same statements sent from Python.
    client_ceiling: tuple[str, str, str] | None = None


def _queue_rows(section: str, runce: str, peers: tuple[str, ...]) -> list[Row]:
    def vs(measurement: str) -> tuple[tuple[str, str], ...]:
        return tuple((p, measurement) for p in peers)

    return [
        Row(
            section,
            "enqueue, one by one",
            "enqueue_single",
            "runs_per_s",
            "runs/s",
            True,
            runce,
            vs("enqueue_single"),
            ceiling=("pgbench_ceiling", "enqueue_single") if section == "postgresql" else None,
            client_ceiling=(
                ("pgbench_ceiling", "enqueue_single", "psycopg_runs_per_s")
                if section == "postgresql"
                else None
            ),
        ),
        Row(
            section,
            "enqueue, batches of B",
            "enqueue_batched",
            "runs_per_s",
            "runs/s",
            True,
            runce,
            vs("enqueue_batched"),
            ceiling=("pgbench_ceiling", "enqueue_batched") if section == "postgresql" else None,
        ),
        Row(
            section,
            "process, 1 worker, concurrency C",
            "process",
            "runs_per_s",
            "runs/s",
            True,
            runce,
            vs("process"),
            ceiling=("pgbench_ceiling", "ceiling") if section == "postgresql" else None,
        ),
        # CPU the worker process spent per run: steadier than runs/s on a loaded machine.
        Row(
            section,
            "process, worker CPU per run",
            "process",
            "cpu_us_per_run",
            "µs",
            False,
            runce,
            (*vs("process"), (f"{runce}_tuned", "process"), (f"{runce}_observed", "process")),
        ),
        # runce against itself, in the same run: what the default INFO line per run costs
        # (default / --log-level warning), and what metrics and tracing cost (on / off).
        Row(
            section,
            "process, default / --log-level warning",
            "process",
            "runs_per_s",
            "runs/s",
            True,
            runce,
            ((f"{runce}_tuned", "process"),),
        ),
        Row(
            section,
            "process, metrics + tracing on / off",
            "process",
            "runs_per_s",
            "runs/s",
            True,
            f"{runce}_observed",
            ((runce, "process"),),
        ),
        Row(
            section,
            "latency p50 at R/s, idle worker",
            "latency",
            "p50_ms",
            "ms",
            False,
            runce,
            vs("latency"),
        ),
        Row(
            section,
            "latency p99 at R/s, idle worker",
            "latency",
            "p99_ms",
            "ms",
            False,
            runce,
            vs("latency"),
        ),
        Row(
            section,
            "worker RSS, idle after warm-up",
            "latency",
            "idle_rss_mib",
            "MiB",
            False,
            runce,
            vs("latency"),
        ),
    ]


ROWS = (
    *_queue_rows("postgresql", "runce_postgres", ("pgqueuer", "procrastinate")),
    *_queue_rows("sqlite", "runce_sqlite", ("huey",)),
    Row(
        "sqlite",
        "worker RSS growth over M runs",
        "memory",
        "growth_mib",
        "MiB",
        False,
        "runce_sqlite",
    ),
    Row(
        "once",
        "run, nothing to do (T applied)",
        "once_run",
        "median_s",
        "s",
        False,
        "runce_once",
        (("alembic_cli", "once_run"), ("yoyo_cli", "once_run")),
    ),
    Row(
        "once",
        "status (T applied)",
        "once_status",
        "median_s",
        "s",
        False,
        "runce_once",
        (("alembic_cli", "once_status"), ("yoyo_cli", "once_status")),
    ),
    Row("startup", "runce --help", "startup", "help_s", "s", False, "runce_once"),
    Row("startup", "python -c 'import runce'", "startup", "import_s", "s", False, "runce_once"),
)

PEER_COMMANDS = {
    ("alembic_cli", "once_run"): "alembic upgrade head",
    ("alembic_cli", "once_status"): "alembic current",
    ("yoyo_cli", "once_run"): "yoyo apply",
    ("yoyo_cli", "once_status"): "yoyo list",
}
