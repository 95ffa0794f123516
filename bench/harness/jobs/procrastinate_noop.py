"""Procrastinate's app and no-op task, for
``procrastinate --app=harness.jobs.procrastinate_noop.app worker``."""

import os

from procrastinate import App, PsycopgConnector

from harness import probe

app = App(connector=PsycopgConnector(conninfo=os.environ["BENCH_PG_DSN"]))


@app.task(name="bench.noop", queue="bench")
async def noop(t: float = 0.0) -> None:
    probe.hit(t)
