"""The HTTP API from async code: runce.AsyncClient, with the retries of runce.Client.

RUNCE_API_TOKEN=rnc_... python async_client.py http://127.0.0.1:8080
"""

from __future__ import annotations

import asyncio
import os
import sys

import runce


async def main(url: str) -> None:
    async with runce.AsyncClient(
        url, token=os.environ["RUNCE_API_TOKEN"], retry_attempts=4, retry_time=30.0
    ) as client:
        run = await client.enqueue(
            "email.send", {"to": "ada@example.com"}, idempotency_key="signup-42"
        )
        print(run.state, (await client.get_run(run.id)).id == run.id)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
