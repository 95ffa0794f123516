"""``runce.AsyncClient``: :class:`runce.Client` for async code, on ``httpx.AsyncClient``.

The same methods, awaited, with the same records, errors and retries::

    async with runce.AsyncClient("http://jobs.internal:8080", token=token) as client:
        run = await client.enqueue("email.send", {"to": "ada@example.com"})
        await client.wait(run.id, timeout=60)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Unpack

try:
    import httpx
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ModuleNotFoundError(
        "runce.AsyncClient needs httpx, which is not installed: pip install 'nurv-runce[client]'",
        name="httpx",
    ) from exc

from runce.api.client import (
    DEFAULT_TIMEOUT,
    _base_url,
    _model,
    _without_none,
    enqueue_request,
    flow_from_json,
    headers_for,
    limits_from_json,
    list_params,
    page_from_json,
    refusal,
    run_from_json,
    run_path,
    schedule_path,
    unreachable,
)
from runce.api.retries import RETRY_STATUSES, RetryPolicy
from runce.api.schemas import AttemptModel, ScheduleModel, WorkerModel
from runce.domain.runs import AttemptRecord, EnqueueOptions, Run, RunQuery, WorkerInfo
from runce.domain.schedules import Schedule
from runce.errors import RunceError, UnknownRun, UnknownSchedule
from runce.runs.service import FlowStatus, RunPage


class AsyncClient:
    """A runce server's runs from async code (see :class:`runce.Client` for the arguments)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry_attempts: int = 4,
        retry_time: float = 30.0,
    ):
        self.url = _base_url(url)
        self.token = token
        self.timeout = timeout
        self.retries = RetryPolicy(retry_attempts, retry_time)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers_for(token), timeout=timeout
        )

    def __repr__(self) -> str:
        return f"runce.AsyncClient({self.url!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- runs ---------------------------------------------------------------------------------

    async def enqueue(
        self,
        kind: str,
        input: object = None,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> Run:
        """Enqueue one run; the same ``idempotency_key`` returns the same run."""
        run, _ = await self.enqueue_answer(kind, input, idempotency_key=idempotency_key, **options)
        return run

    async def enqueue_answer(
        self,
        kind: str,
        input: object = None,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> tuple[Run, bool]:
        """:meth:`enqueue`, also saying whether the run was created (False: an earlier run
        with the same idempotency key, or the key's queued run a debounced job merged into)."""
        body, headers = enqueue_request(kind, input, idempotency_key=idempotency_key, **options)
        response = await self.request("POST", "/v1/runs", json=body, headers=headers)
        return run_from_json(response.json()), response.status_code == 201

    async def get_run(self, run_id: str) -> Run:
        return run_from_json((await self.request("GET", run_path(run_id))).json())

    async def list_runs(self, **query: Unpack[RunQuery]) -> RunPage:
        """Runs newest first (``order="oldest"``: oldest first); pass ``page.next_cursor``
        back as ``cursor``, with the same ``order``, for the next page."""
        params = list_params(query)
        return page_from_json((await self.request("GET", "/v1/runs", params=params)).json())

    async def attempts(self, run_id: str) -> list[AttemptRecord]:
        """The attempts that did not succeed, oldest first."""
        data = (await self.request("GET", run_path(run_id, "/attempts"))).json()
        return [_model(AttemptModel, a).to_record() for a in data["attempts"]]

    async def flow(self, run: Run | str) -> FlowStatus:
        """The flow-control limit of a run (or a run id) and, for a due queued run its limit
        holds back, why it waits, as the server's jobs say."""
        run_id = run if isinstance(run, str) else run.id
        return flow_from_json((await self.request("GET", run_path(run_id, "/flow"))).json())

    async def cancel_run(self, run_id: str) -> Run:
        """Queued: canceled now. Running: asked to stop; its worker stops it cooperatively."""
        return run_from_json((await self.request("POST", run_path(run_id, ":cancel"))).json())

    async def retry_run(self, run_id: str) -> Run:
        """A failed or canceled run back to the queue, with one more attempt."""
        return run_from_json((await self.request("POST", run_path(run_id, ":retry"))).json())

    async def prune_runs(
        self, *, succeeded_after: float | None = None, failed_after: float | None = None
    ) -> int:
        """Delete finished runs older than these seconds; returns how many."""
        body = _without_none(succeeded_after=succeeded_after, failed_after=failed_after)
        response = await self.request("POST", "/v1/runs:prune", json=body)
        deleted: int = response.json()["deleted"]
        return deleted

    async def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """Poll until the run is finished (or ``timeout`` seconds pass); return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.05
        while True:
            run = await self.get_run(run_id)
            if run.finished or (deadline is not None and time.monotonic() >= deadline):
                return run
            remaining = pause if deadline is None else deadline - time.monotonic()
            await asyncio.sleep(max(0.0, min(pause, remaining)))
            pause = min(pause * 1.5, 1.0)

    async def workers(self) -> list[WorkerInfo]:
        """Workers that reported to the server's store, with their last heartbeat."""
        data = (await self.request("GET", "/v1/workers")).json()
        return [_model(WorkerModel, w).to_info() for w in data["workers"]]

    async def limits(self) -> dict[str, str]:
        """The flow-control limit in words of each job of the server's ``worker.handlers``
        that has one, by kind (``{}`` from a server that lists none)."""
        return limits_from_json((await self.request("GET", "/v1/workers")).json())

    # -- schedules ----------------------------------------------------------------------------

    async def list_schedules(self) -> list[Schedule]:
        data = (await self.request("GET", "/v1/schedules")).json()
        return [_model(ScheduleModel, s).to_schedule() for s in data["schedules"]]

    async def enable_schedule(self, name: str) -> Schedule:
        return await self._switch(name, ":enable")

    async def disable_schedule(self, name: str) -> Schedule:
        return await self._switch(name, ":disable")

    async def _switch(self, name: str, verb: str) -> Schedule:
        path = schedule_path(name, verb)
        response = await self.request("POST", path, missing=UnknownSchedule)
        return _model(ScheduleModel, response.json()).to_schedule()

    # -- the server ---------------------------------------------------------------------------

    async def tasks(self) -> dict[str, Any]:
        found: dict[str, Any] = (await self.request("GET", "/v1/tasks")).json()
        return found

    async def health(self) -> dict[str, Any]:
        found: dict[str, Any] = (await self.request("GET", "/healthz")).json()
        return found

    # -- the wire -----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        missing: type[RunceError] = UnknownRun,
    ) -> httpx.Response:
        """One request, retried as :meth:`runce.Client.request` retries it."""
        took = self.timeout if timeout is None else timeout
        sending = dict(headers or {})
        retrying = self.retries.start(method, path, sending)
        while True:
            try:
                response = await self._http.request(
                    method,
                    path,
                    json=json,
                    params=dict(params) if params else None,
                    headers=sending,
                    timeout=took,
                )
            except httpx.TransportError as exc:
                pause = retrying.pause(None)
                if pause is None:
                    raise unreachable(self.url, method, path, took, exc) from exc
                await asyncio.sleep(pause)
                continue
            if response.status_code in RETRY_STATUSES:
                pause = retrying.pause(response)
                if pause is not None:
                    await asyncio.sleep(pause)
                    continue
            if response.status_code >= 400:
                raise refusal(self.url, self.token, response, method, path, missing)
            return response
