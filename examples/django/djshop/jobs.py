"""The shop's jobs, named in ``RUNCE["worker"]["handlers"]``."""

from __future__ import annotations

from typing import Any

import runce


@runce.job("djshop.welcome")
def welcome(params: dict[str, Any], ctx: runce.JobContext) -> None:
    ctx.services.record(f"welcomed {params['email']}")
