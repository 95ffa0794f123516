"""PgQueuer's no-op entrypoint, for ``pgq run harness.jobs.pgqueuer_noop:create``."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job

from harness import probe

ENTRYPOINT = "bench_noop"


@asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    conn = await asyncpg.connect(os.environ["BENCH_PG_DSN"])
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint(ENTRYPOINT)
    async def noop(job: Job) -> None:
        probe.hit(float(job.payload) if job.payload else 0.0)

    try:
        yield pgq
    finally:
        await conn.close()
