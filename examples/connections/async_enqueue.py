"""Enqueueing from async code: in the caller's transaction on a psycopg AsyncConnection
(the insert is awaited on that connection), and the async reads.

    python async_enqueue.py postgresql://app@db.internal/app
"""

from __future__ import annotations

import asyncio
import sys

import psycopg

import runce


async def place_order(conninfo: str, email: str) -> runce.Run:
    async with await psycopg.AsyncConnection.connect(conninfo) as aconn:
        async with aconn.transaction():
            await aconn.execute("SELECT 1")  # the order's own writes go here
            run = await runce.aenqueue(
                "email.welcome", {"email": email}, connection=aconn, config={"store": conninfo}
            )
        # committed: the run exists now, with the order
        return await runce.aget_run(run.id, config={"store": conninfo})


async def main(conninfo: str) -> None:
    run = await place_order(conninfo, "ada@example.com")
    page = await runce.alist_runs(kind="email.welcome", config={"store": conninfo})
    print(run.state, len(page.runs))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
