"""What every route works with: the configuration, the store opened once per app, the run
service over its queue. Routes get it with ``Depends(context)``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from runce.config import Config
from runce.runs.service import RunService
from runce.stores.base import Store
from runce.stores.queue import RunQueue


@dataclass(frozen=True)
class ApiContext:
    config: Config
    store: Store
    runs: RunService

    @property
    def queue(self) -> RunQueue:
        return self.runs.queue


def context(request: Request) -> ApiContext:
    found: ApiContext = request.app.state.runce
    return found
