"""A request body must arrive within ``api.body_timeout`` of its head, else 408 and the
connection is closed: a client that sends its body slowly, or never, holds no request open.

The deadline covers the whole body, not each read, so a body sent a byte at a time ends at
the same moment as one that never comes.
"""

from __future__ import annotations

import asyncio

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTimeout:
    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.timeout
        complete = False

        async def timed() -> Message:
            nonlocal complete
            if complete:  # later reads wait for a disconnect: no deadline on those
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                # Raised while FastAPI reads the body, an HTTPException reaches the problem
                # handlers; "Connection: close" ends the connection with the unread rest.
                raise HTTPException(408, self._detail(), headers={"Connection": "close"}) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed, send)

    def _detail(self) -> str:
        return f"the request body did not arrive within {self.timeout:g} s (api.body_timeout)"
