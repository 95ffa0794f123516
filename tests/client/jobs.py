"""The jobs the client's test server knows (one module for the session: a kind may be
defined by one module only)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

import runce


class Signup(BaseModel):
    email: str = Field(pattern=r".+@.+")
    age: int = Field(ge=18)


@runce.job("client.signup")
def signup(params: Signup) -> None:
    pass


@runce.job("client.echo")
def echo(params: Any, ctx: runce.JobContext) -> Any:
    ctx.progress(50, "half way")
    if isinstance(params, dict) and params.get("fail"):
        raise runce.NonRetryable("asked to fail")
    return {"echo": params}


@runce.job("client.serial", concurrency=1, concurrency_key="customer")
def serial(params: Any) -> None:
    pass
