"""The app's state, what every route works with: the runtime (the configuration and the
store opened once per process), the run service over its queue, the tokens and the rate
limits. Routes get it with ``Depends(app_state)``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from runce.api.ratelimit import RateLimiter
from runce.config import Config
from runce.runs.service import RunService
from runce.runs.tokens import LastUsed
from runce.runtime import Runtime
from runce.stores.base import Store
from runce.stores.queue import RunQueue
from runce.stores.tokens import TokenStore


@dataclass(frozen=True)
class AppState:
    runtime: Runtime
    runs: RunService
    tokens: TokenStore
    enqueue_limit: RateLimiter | None = None
    cancel_limit: RateLimiter | None = None
    last_used: LastUsed = field(default_factory=LastUsed)
    metrics: Any = None  # the registry GET /metrics serves (None: no prometheus_client)

    @property
    def config(self) -> Config:
        return self.runtime.config

    @property
    def store(self) -> Store:
        return self.runtime.store

    @property
    def queue(self) -> RunQueue:
        return self.runs.queue


def app_state(request: Request) -> AppState:
    found: AppState = request.app.state.runce
    return found
