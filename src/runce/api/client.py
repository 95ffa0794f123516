"""``runce.Client``: the job queue of a runce server (``runce serve``), over HTTP.

Its methods are the library's (:mod:`runce.runs.library`) and return the same records
(:class:`~runce.domain.runs.Run`, :class:`~runce.runs.service.RunPage`, ...), so code
moves between a local store and a server by swapping one object::

    client = runce.Client("http://jobs.internal:8080", token=os.environ["RUNCE_API_TOKEN"])
    run = client.enqueue("email.send", {"to": "ada@example.com"}, idempotency_key="signup-42")
    client.wait(run.id, timeout=60)

Errors are the ones a local call raises (``UnknownRun`` for a 404, ``UnknownSchedule`` for
a schedule's, ``IllegalTransition``, ``IdempotencyConflict``, ``InvalidInput`` with its field
errors, ``UsageError`` for a request the server refused as invalid); the rest are
:class:`~runce.errors.AuthError`, :class:`~runce.errors.RateLimited`,
:class:`~runce.errors.RemoteError`, and :class:`~runce.errors.ServerUnavailable` when the
server cannot be reached or fails. Each is one sentence naming the server; httpx's own
exception stays as ``__cause__``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar, Unpack
from urllib.parse import quote, urlsplit

try:
    import httpx
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ModuleNotFoundError(
        "runce.Client needs httpx, which is not installed: pip install 'nurv-runce[client]'",
        name="httpx",
    ) from exc
from pydantic import BaseModel

from runce import tracing
from runce._version import __version__
from runce.api.idempotency import HEADER, to_header
from runce.api.retries import RETRY_STATUSES, RetryPolicy
from runce.api.schemas import PROBLEM_BASE, AttemptModel, RunModel, ScheduleModel, WorkerModel
from runce.domain.runs import (
    AttemptRecord,
    EnqueueOptions,
    Run,
    RunQuery,
    WorkerInfo,
    check_enqueue_options,
    check_query,
)
from runce.domain.schedules import Schedule
from runce.errors import (
    AuthError,
    IdempotencyConflict,
    IllegalTransition,
    InvalidInput,
    RateLimited,
    RemoteError,
    RunceError,
    ServerUnavailable,
    TaskLoadError,
    UnknownRun,
    UnknownSchedule,
    UsageError,
)
from runce.runs.service import FlowStatus, RunPage

DEFAULT_TIMEOUT = 10.0

M = TypeVar("M", bound=BaseModel)


class Client:
    """A runce server's runs, with a bearer token from ``runce tokens create``.

    ``timeout`` is the seconds one request may take (connecting, sending, waiting for the
    answer). Idempotent calls (reads, an enqueue with an idempotency key, cancel, enabling
    and disabling a schedule) are sent again after a network failure or a 429 or 503
    answer, after the pause its ``Retry-After`` asks for: at most ``retry_attempts`` tries
    in all, none starting later than ``retry_time`` seconds after the first
    (``retry_attempts=1`` never retries). A client keeps its connections open: reuse it,
    and ``close()`` it (or use it in a ``with`` block) when done.
    """

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
        self._http = httpx.Client(base_url=self.url, headers=headers_for(token), timeout=timeout)

    def __repr__(self) -> str:
        return f"runce.Client({self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- runs ---------------------------------------------------------------------------------

    def enqueue(
        self,
        kind: str,
        input: object = None,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> Run:
        """Enqueue one run; the same ``idempotency_key`` returns the same run (as the library)."""
        run, _ = self.enqueue_answer(kind, input, idempotency_key=idempotency_key, **options)
        return run

    def enqueue_answer(
        self,
        kind: str,
        input: object = None,
        *,
        idempotency_key: str | None = None,
        trace_context: Mapping[str, str] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> tuple[Run, bool]:
        """:meth:`enqueue`, also saying whether the run was created (False: an earlier run
        with the same idempotency key). The trace context sent (``traceparent`` header) is
        ``trace_context``, else the active span's where the application set up OpenTelemetry."""
        body, headers = enqueue_request(
            kind, input, idempotency_key=idempotency_key, trace_context=trace_context, **options
        )
        response = self.request("POST", "/v1/runs", json=body, headers=headers)
        return run_from_json(response.json()), response.status_code == 201

    def get_run(self, run_id: str) -> Run:
        return run_from_json(self.request("GET", run_path(run_id)).json())

    def list_runs(self, **query: Unpack[RunQuery]) -> RunPage:
        """Runs newest first (``order="oldest"``: oldest first); pass ``page.next_cursor``
        back as ``cursor``, with the same ``order``, for the next page."""
        params = list_params(query)
        return page_from_json(self.request("GET", "/v1/runs", params=params).json())

    def limits(self) -> dict[str, str]:
        """The flow-control limit in words of each job of the server's ``worker.handlers``
        that has one, by kind (``{}`` from a server that lists none)."""
        return limits_from_json(self.request("GET", "/v1/workers").json())

    def flow(self, run: Run | str) -> FlowStatus:
        """The flow-control limit of a run (or a run id) and, for a due queued run its limit
        holds back, why it waits, as the server's jobs say."""
        run_id = run if isinstance(run, str) else run.id
        return flow_from_json(self.request("GET", run_path(run_id, "/flow")).json())

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        """The attempts that did not succeed, oldest first."""
        data = self.request("GET", run_path(run_id, "/attempts")).json()
        return [_model(AttemptModel, a).to_record() for a in data["attempts"]]

    def cancel_run(self, run_id: str) -> Run:
        """Queued: canceled now. Running: asked to stop; its worker stops it cooperatively."""
        return run_from_json(self.request("POST", run_path(run_id, ":cancel")).json())

    def retry_run(self, run_id: str) -> Run:
        """A failed or canceled run back to the queue, with one more attempt."""
        return run_from_json(self.request("POST", run_path(run_id, ":retry")).json())

    def prune_runs(
        self, *, succeeded_after: float | None = None, failed_after: float | None = None
    ) -> int:
        """Delete finished runs older than these seconds (default: the server's
        ``runs.retention``); returns how many. Needs a token bound to no project."""
        body = _without_none(succeeded_after=succeeded_after, failed_after=failed_after)
        deleted: int = self.request("POST", "/v1/runs:prune", json=body).json()["deleted"]
        return deleted

    def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """Poll until the run is finished (or ``timeout`` seconds pass); return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.05
        while True:
            run = self.get_run(run_id)
            if run.finished or (deadline is not None and time.monotonic() >= deadline):
                return run
            remaining = pause if deadline is None else deadline - time.monotonic()
            time.sleep(max(0.0, min(pause, remaining)))
            pause = min(pause * 1.5, 1.0)

    def workers(self) -> list[WorkerInfo]:
        """Workers that reported to the server's store, with their last heartbeat."""
        data = self.request("GET", "/v1/workers").json()
        return [_model(WorkerModel, w).to_info() for w in data["workers"]]

    # -- schedules ----------------------------------------------------------------------------

    def list_schedules(self) -> list[Schedule]:
        """The schedules stored on the server, by name."""
        data = self.request("GET", "/v1/schedules").json()
        return [_model(ScheduleModel, s).to_schedule() for s in data["schedules"]]

    def enable_schedule(self, name: str) -> Schedule:
        """Switch a schedule on; it next runs at its first tick from now (no catch-up).
        Needs a token bound to no project."""
        return self._switch(name, ":enable")

    def disable_schedule(self, name: str) -> Schedule:
        """Switch a schedule off; workers leave it alone until it is enabled again.
        Needs a token bound to no project."""
        return self._switch(name, ":disable")

    def _switch(self, name: str, verb: str) -> Schedule:
        response = self.request("POST", schedule_path(name, verb), missing=UnknownSchedule)
        return _model(ScheduleModel, response.json()).to_schedule()

    # -- the server ---------------------------------------------------------------------------

    def tasks(self) -> dict[str, Any]:
        """The once tasks' status on the server, as ``runce status --json`` prints it."""
        found: dict[str, Any] = self.request("GET", "/v1/tasks").json()
        return found

    def health(self) -> dict[str, Any]:
        """``GET /healthz`` (no token needed): the server's store and its clock."""
        found: dict[str, Any] = self.request("GET", "/healthz").json()
        return found

    # -- the wire -----------------------------------------------------------------------------

    def request(
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
        """One request; a problem answer (4xx/5xx) or a network failure raises runce's error
        (``missing`` for a 404 about what the path names: a run unless told otherwise)."""
        took = self.timeout if timeout is None else timeout
        sending = dict(headers or {})
        retrying = self.retries.start(method, path, sending)
        while True:
            try:
                response = self._http.request(
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
                time.sleep(pause)
                continue
            if response.status_code in RETRY_STATUSES:
                pause = retrying.pause(response)
                if pause is not None:
                    time.sleep(pause)
                    continue
            if response.status_code >= 400:
                raise refusal(self.url, self.token, response, method, path, missing)
            return response


# -- what both clients send -------------------------------------------------------------------


def headers_for(token: str | None) -> dict[str, str]:
    headers = {"User-Agent": f"runce/{__version__}", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def enqueue_request(
    kind: str,
    input: Any,
    *,
    idempotency_key: str | None,
    trace_context: Mapping[str, str] | None = None,
    **options: Unpack[EnqueueOptions],
) -> tuple[dict[str, Any], dict[str, str]]:
    """The body and headers of ``POST /v1/runs``; the trace context is ``trace_context``, else
    the active span's where the application set up OpenTelemetry."""
    check_enqueue_options(options, "enqueue")
    body = _without_none(
        kind=kind,
        input=input,
        project_id=options.get("project_id"),
        run_at=wire_time(options.get("run_at")),
        max_attempts=options.get("max_attempts"),
        priority=options.get("priority", 0),
        correlation_id=options.get("correlation_id"),
        concurrency_key=options.get("concurrency_key"),
    )
    body["input"] = input  # null is an input like any other
    headers = {} if idempotency_key is None else {HEADER: to_header(idempotency_key)}
    headers.update(tracing.checked(trace_context) or tracing.current_context() or {})
    return body, headers


def list_params(query: RunQuery) -> dict[str, Any]:
    """The query string of ``GET /v1/runs`` for ``query``."""
    check_query(query, "list_runs")
    order = query.get("order", "newest")
    return _without_none(
        order=None if order == "newest" else order,
        project_id=query.get("project_id"),
        state=query.get("state"),
        kind=query.get("kind"),
        since=wire_time(query.get("since")),
        before=wire_time(query.get("before")),
        cursor=query.get("cursor"),
        limit=query.get("limit", 50),
    )


def page_from_json(data: Mapping[str, Any]) -> RunPage:
    return RunPage([run_from_json(r) for r in data["runs"]], data.get("next_cursor"))


def unreachable(
    url: str, method: str, path: str, took: float, exc: httpx.TransportError
) -> ServerUnavailable:
    """A network failure as one sentence naming the server."""
    if isinstance(exc, httpx.TimeoutException):
        return ServerUnavailable(
            f"the runce server at {url} did not answer {method} {path} within {took:g}s"
        )
    return ServerUnavailable(f"cannot reach the runce server at {url}: {_reason(exc)}")


def refusal(
    url: str,
    token: str | None,
    response: httpx.Response,
    method: str,
    path: str,
    missing: type[RunceError],
) -> RunceError:
    """A 4xx or 5xx answer as runce's error."""
    problem = _problem(response)
    if problem is None:
        return _not_runce(url, response, method, path)
    slug, detail = problem
    return _error(url, token, slug, detail, response, missing)


# -- turning answers into runce's errors ----------------------------------------------------


def _problem(response: httpx.Response) -> tuple[str, str] | None:
    """(slug, detail) of a problem+json answer; None for anything else."""
    try:
        data = response.json()
    except ValueError:
        return None
    kind = data.get("type") if isinstance(data, dict) else None
    if not isinstance(kind, str) or not kind.startswith(PROBLEM_BASE):
        return None
    detail = data.get("detail") or data.get("title") or response.reason_phrase
    return kind.removeprefix(PROBLEM_BASE), str(detail)


def _error(
    url: str,
    token: str | None,
    slug: str,
    detail: str,
    response: httpx.Response,
    missing: type[RunceError] = UnknownRun,
) -> RunceError:
    status = response.status_code
    same_as_local: dict[str, type[RunceError]] = {
        "illegal-transition": IllegalTransition,
        "idempotency-conflict": IdempotencyConflict,
        "invalid-request": UsageError,
        "tasks-unreadable": TaskLoadError,
    }
    if slug in same_as_local:
        return same_as_local[slug](detail)
    if slug == "not-found" and not detail.startswith("no route"):
        return missing(detail)
    where = f"the runce server at {url}"
    if slug == "not-found":
        return RemoteError(f"{where} has no such route ({detail}); check the URL", status, slug)
    if slug == "invalid-input":
        return InvalidInput(detail, _field_errors(response))
    if slug in ("unauthorized", "forbidden"):
        hint = "" if token else " (no token was given: pass one, or set RUNCE_API_TOKEN)"
        return AuthError(f"{where} refused the request ({slug}): {detail}{hint}", status, slug)
    if slug == "rate-limited":
        wait = _retry_after(response)
        return RateLimited(f"{where} limits this token: {detail}", status, slug, wait)
    if status >= 500:
        return ServerUnavailable(f"{where} failed ({status} {slug}): {detail}")
    return RemoteError(f"{where} refused the request ({status} {slug}): {detail}", status, slug)


def _not_runce(url: str, response: httpx.Response, method: str, path: str) -> RunceError:
    status = f"{response.status_code} {response.reason_phrase}".strip()
    text = f"{url} answered {status} to {method} {path}"
    if response.status_code >= 500:
        return ServerUnavailable(text)
    return RemoteError(f"{text}; is it a runce server?", response.status_code)


def _field_errors(response: httpx.Response) -> list[dict[str, Any]]:
    """The field errors of an ``invalid-input`` problem, with locations inside the input
    (as a local enqueue gives them), not inside the request body."""
    errors = response.json().get("errors") or []
    found = []
    for error in errors:
        loc = list(error.get("loc", []))
        found.append({"loc": loc[1:] if loc[:1] == ["input"] else loc, "msg": error.get("msg")})
    return found


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _reason(exc: httpx.HTTPError) -> str:
    """What went wrong on the network, without httpx's punctuation."""
    text = str(exc).strip()
    if "] " in text and text.startswith("["):  # "[Errno 111] Connection refused"
        text = text.split("] ", 1)[1]
    return (text or type(exc).__name__).rstrip(".").lower()


# -- records ----------------------------------------------------------------------------------


def _model(model: type[M], data: Mapping[str, Any]) -> M:
    """Validate an answer, ignoring fields a newer server may add."""
    return model.model_validate({k: v for k, v in data.items() if k in model.model_fields})


def flow_from_json(data: Mapping[str, Any]) -> FlowStatus:
    """The answer of ``GET /v1/runs/{id}/flow``."""
    return FlowStatus(data.get("limit"), data.get("waiting"))


def limits_from_json(data: Mapping[str, Any]) -> dict[str, str]:
    """The ``limits`` of a ``GET /v1/workers`` answer (absent from an older server: none)."""
    found = data.get("limits") or {}
    return {str(kind): str(text) for kind, text in found.items()}


def run_from_json(data: Mapping[str, Any]) -> Run:
    return _model(RunModel, data).to_run()


def run_path(run_id: str, suffix: str = "") -> str:
    if not run_id:
        raise UsageError("a run id is empty")
    return f"/v1/runs/{quote(run_id, safe='')}{suffix}"


def schedule_path(name: str, verb: str) -> str:
    if not name:
        raise UsageError("a schedule name is empty")
    return f"/v1/schedules/{quote(name, safe='')}{verb}"


def wire_time(moment: datetime | None) -> str | None:
    """ISO-8601 with an offset; a naive time is taken as UTC, as the stores take it."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _without_none(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _base_url(url: str) -> str:
    text = (url or "").strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(
            f"{url!r} is not the URL of a runce server; expected one like http://127.0.0.1:8080"
        )
    return text
