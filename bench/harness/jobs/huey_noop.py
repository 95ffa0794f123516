"""Huey's no-op task on SqliteHuey (WAL, the library's defaults).

Consumer: ``huey_consumer harness.jobs.huey_noop.huey -w C -k thread``.
"""

import os

from huey import SqliteHuey

from harness import probe

huey = SqliteHuey("bench", filename=os.environ["BENCH_HUEY_DB"])


@huey.task(name="bench.noop")
def noop(t: float) -> None:
    probe.hit(t)
