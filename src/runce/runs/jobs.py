"""Job definitions (docs/runs.md#defining-jobs): ``@runce.job("email.send")`` on the
function that does the work.

A job function is called as ``fn(params, ctx)`` (or ``fn(params)``), sync or ``async``.
When its first parameter or its return value is annotated (a pydantic model, or any type
pydantic understands), runs are typed: the input is validated when the run is enqueued
(a bad input is refused before anything is stored, with the field errors), the job gets
the validated value (a model instance), and its result is validated before it is stored.
Without annotations, ``params`` is the run's JSON input as is.

Modules holding jobs are named in ``worker.handlers`` and imported by the worker (and by
``runce runs enqueue`` to check kinds and inputs).
"""

from __future__ import annotations

import importlib
import inspect
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, Unpack, overload

from runce.config import (
    MAX_ATTEMPTS,
    MAX_RUN_TIME,
    MIN_TIMEOUT,
    ConfigArg,
    bounded,
    parse_duration,
)
from runce.domain.runs import Unreadable
from runce.errors import ConfigError, InvalidInput, UsageError
from runce.runs.dispatch import dispatch
from runce.runs.limits import check_text
from runce.stores.queue import MAX_CONCURRENCY

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from runce.domain.runs import EnqueueOptions, Run
    from runce.runs.context import JobContext
    from runce.runs.inline import JobResult

JobFunction = Callable[..., Any]
P = TypeVar("P")  # what the job takes: the run's input, validated into its annotation
R = TypeVar("R")  # what the job returns (an async job's awaited value)

_KIND = re.compile(r"^[A-Za-z0-9][\w.:-]{0,199}$")


def check_concurrency_key(value: Any, what: str = "concurrency_key") -> str:
    """A run's concurrency key: text (or a whole number, kept as its digits) of 1 to 200
    printable characters."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text or a whole number, not {type(value).__name__}")
    try:
        checked = check_text(value, what, optional=False)
    except UsageError as exc:
        raise InvalidInput(str(exc)) from None
    assert checked is not None
    return checked


_RATE = re.compile(r"^\s*(\d{1,7})\s*/\s*(\d{0,5})\s*([a-z]+)\s*$")
_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
MAX_RATE = 1_000_000
MAX_RATE_WINDOW = 86400.0


def parse_rate(kind: str, rate: Any) -> tuple[int, float] | None:
    """``"100/m"`` (also ``/s``, ``/h``, ``/d``, or a multiple: ``"5/10s"``) as (starts,
    seconds); a UsageError saying what is wrong otherwise."""
    if rate is None:
        return None
    shown = repr(rate) if len(repr(rate)) <= 40 else repr(rate)[:40] + "…"
    found = _RATE.match(rate) if isinstance(rate, str) else None
    unit = _UNITS.get(found.group(3).removesuffix("s") or "s") if found else None
    if found is None or unit is None:
        raise UsageError(
            f'job {kind!r}: rate {shown} is not a rate like "100/m" '
            '(starts per s, m, h or d, or per a multiple such as "5/10s")'
        )
    count, times = int(found.group(1)), int(found.group(2) or "1")
    window = float(times * unit)
    if not 1 <= count <= MAX_RATE:
        raise UsageError(
            f"job {kind!r}: rate {shown} must allow 1 to {MAX_RATE:,} starts per window"
        )
    if not 1 <= window <= MAX_RATE_WINDOW:
        raise UsageError(f"job {kind!r}: rate {shown} needs a window of 1 second to 1 day")
    return count, window


# A debounce from a millisecond to a day: a run is held back at most that long per enqueue.
MIN_DEBOUNCE = 0.001
MAX_DEBOUNCE = 86400.0


def parse_debounce(kind: str, debounce: Any, key: Any) -> float | None:
    """``debounce="30s"`` (or seconds) as seconds; a UsageError saying what is wrong."""
    if debounce is None:
        return None
    if key is None:
        raise UsageError(
            f"job {kind!r}: debounce= needs concurrency_key=, the key whose runs it merges"
        )
    shown = repr(debounce) if len(repr(debounce)) <= 40 else repr(debounce)[:40] + "…"
    try:
        seconds = parse_duration(debounce)
    except ValueError:
        seconds = -1.0
    if not MIN_DEBOUNCE <= seconds <= MAX_DEBOUNCE:
        raise UsageError(
            f"job {kind!r}: debounce must be a duration from 1ms to 1 day "
            f'(seconds, or a string like "30s" or "5m"), got {shown}'
        )
    return seconds


def check_concurrency(
    kind: str, concurrency: Any, key: Any, rate: Any = None, debounce: Any = None
) -> None:
    """Refuse flow-control options of ``@runce.job(kind, ...)`` that cannot work."""
    if concurrency is not None and (
        isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or not 1 <= concurrency <= MAX_CONCURRENCY
    ):
        shown = repr(concurrency) if len(repr(concurrency)) <= 40 else "a huge number"
        raise UsageError(
            f"job {kind!r}: concurrency must be a whole number from 1 to {MAX_CONCURRENCY:,}, "
            f"got {shown}"
        )
    if key is None:
        return
    if concurrency is None and rate is None and not debounce:
        raise UsageError(
            f"job {kind!r}: concurrency_key= needs concurrency=N, rate= or debounce=, "
            "the limit per key"
        )
    if isinstance(key, str):
        check_text(key, f"job {kind!r}: concurrency_key", optional=False)
    elif not callable(key):
        raise UsageError(
            f"job {kind!r}: concurrency_key must be a field name or a function of the input, "
            f"not {type(key).__name__}"
        )


@dataclass(frozen=True)
class Job(Generic[P, R]):
    """A registered job: the function and how its runs are retried and timed out.

    ``Job[P, R]`` takes a ``P`` and returns an ``R``: ``later`` and ``now`` are typed by it.
    """

    kind: str
    fn: JobFunction
    max_attempts: int | None = None
    timeout: float | None = None
    # Its work and its success commit together, in ctx.db's transaction (SQL stores only).
    transactional: bool = False
    # Flow control: at most this many runs running at once (per concurrency key, if any).
    concurrency: int | None = None
    # The field of the input, or a function of the input, that gives a run's key.
    concurrency_key: str | Callable[[Any], Any] | None = None
    # At most this many starts per this many seconds (per key), with a burst of as many.
    rate: tuple[int, float] | None = None
    # Seconds: an enqueue merges into the key's queued run and starts it this long from now.
    debounce: float | None = None

    def key_of(self, stored_input: Any) -> str | None:
        """The concurrency key of a run with this (stored, JSON) input, or None."""
        source = self.concurrency_key
        if source is None:
            return None
        if isinstance(source, str):
            if not isinstance(stored_input, dict) or source not in stored_input:
                raise InvalidInput(
                    f"the input of {self.kind!r} has no field {source!r}, "
                    "which its concurrency_key names"
                )
            value = stored_input[source]
        else:
            try:
                value = source(stored_input)
            except Exception as exc:
                raise InvalidInput(
                    f"the concurrency_key function of {self.kind!r} failed on the input: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
        return check_concurrency_key(value, f"the concurrency key of {self.kind!r}")

    def input_for_storage(self, value: Any) -> Any:
        """The run's input as it will be stored: validated, and dumped to JSON values."""
        adapter = _adapters(self.fn).params
        if adapter is None:
            return value
        checked = _validated(adapter, value, f"the input of {self.kind!r}")
        return adapter.dump_python(checked, mode="json")

    def params_from_storage(self, value: Any) -> Any:
        """What the job function gets: the stored input, validated into its annotated type,
        with its secret references resolved (only ever called where the job runs)."""
        if isinstance(value, Unreadable):  # the run fails; the worker goes on with the others
            raise InvalidInput(f"its stored input cannot be read: {value.reason}")
        adapter = _adapters(self.fn).params
        what = f"the input of {self.kind!r}"
        if adapter is None:
            return _with_secrets(value, what) if _mentions_secret(value) else value
        return _validated(adapter, value, what, context=_RESOLVING)

    def result_for_storage(self, value: Any) -> Any:
        """The job's return value, validated against its annotation and dumped to JSON."""
        adapter = _adapters(self.fn).result
        if adapter is None:
            return value
        checked = _validated(adapter, value, f"the result of {self.kind!r}")
        return adapter.dump_python(checked, mode="json")

    # Read on every run by the worker: worked out once, when the job is registered.
    is_async: bool = field(init=False, default=False)
    takes_context: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.fn))
        parameters = inspect.signature(self.fn).parameters
        object.__setattr__(self, "takes_context", len(parameters) >= 2)

    def later(
        self,
        params: P,
        *,
        idempotency_key: str | None = None,
        connection: Any = None,
        config: ConfigArg = None,
        **options: Unpack[EnqueueOptions],
    ) -> Run:
        """Enqueue a run of this job and return it (the options are ``runce.enqueue``'s)."""
        return dispatch().enqueue(
            self.kind,
            params,
            idempotency_key=idempotency_key,
            connection=connection,
            config=config,
            **options,
        )

    async def alater(
        self,
        params: P,
        *,
        idempotency_key: str | None = None,
        connection: Any = None,
        config: ConfigArg = None,
        **options: Unpack[EnqueueOptions],
    ) -> Run:
        """:meth:`later` for async callers; ``connection=`` may be a psycopg
        ``AsyncConnection`` in a transaction (the insert is awaited on it)."""
        return await dispatch().aenqueue(
            self.kind,
            params,
            idempotency_key=idempotency_key,
            connection=connection,
            config=config,
            **options,
        )

    def now(
        self,
        params: P,
        *,
        persist: bool = True,
        project_id: str | None = None,
        correlation_id: str | None = None,
        config: ConfigArg = None,
    ) -> R:
        """Run the job here and now, once, and return its (validated) result.

        The run is recorded (inserted already running, claimed by ``inline:<host>:<pid>``)
        unless ``persist=False``. A failure raises :class:`~runce.errors.JobFailed` with the
        run's id; a bad input raises :class:`~runce.errors.InvalidInput`, recording nothing.
        """
        if self.transactional:
            raise UsageError(
                f"job {self.kind!r} is transactional: .now() gives no ctx.db; "
                "enqueue it with .later() for a worker on the SQLite or PostgreSQL store"
            )
        call = dispatch().inline_call(self, persist=persist, config=config)
        result: R = call.run(params, project_id=project_id, correlation_id=correlation_id)
        return result

    async def anow(
        self,
        params: P,
        *,
        persist: bool = True,
        project_id: str | None = None,
        correlation_id: str | None = None,
        config: ConfigArg = None,
    ) -> R:
        """:meth:`now` from async code: the call runs in a worker thread."""
        import asyncio

        return await asyncio.to_thread(
            lambda: self.now(
                params,
                persist=persist,
                project_id=project_id,
                correlation_id=correlation_id,
                config=config,
            )
        )

    def batch(
        self,
        items: Sequence[P],
        *,
        concurrency: int = 3,
        stop_on_error: bool = False,
        persist: bool = True,
        config: ConfigArg = None,
    ) -> list[JobResult[P, R]]:
        """:meth:`now` on every item, ``concurrency`` at a time: a list of ``JobResult`` in the
        items' order. With ``stop_on_error``, items not started when one fails are skipped."""
        entry = dispatch()
        call = entry.inline_call(self, persist=persist, config=config)
        return entry.run_batch(call.run, items, concurrency, stop_on_error)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calling the job calls its function, as if it were not decorated."""
        return self.fn(*args, **kwargs)

    @property
    def where(self) -> str:
        return f"{self.fn.__module__}.{self.fn.__qualname__}"


@dataclass(frozen=True)
class _Adapters:
    params: Any  # pydantic TypeAdapter, or None for an untyped parameter
    result: Any


_adapter_cache: dict[JobFunction, _Adapters] = {}


def _adapters(fn: JobFunction) -> _Adapters:
    """pydantic adapters for the annotated parameter and return type (built once per job)."""
    found = _adapter_cache.get(fn)
    if found is None:
        found = _adapter_cache[fn] = _build_adapters(fn)
    return found


def _build_adapters(fn: JobFunction) -> _Adapters:
    import typing

    hints = typing.get_type_hints(fn)
    names = list(inspect.signature(fn).parameters)
    param_type = hints.get(names[0]) if names else None
    result_type = hints.get("return", inspect.Signature.empty)
    return _Adapters(_adapter_for(param_type), _adapter_for(result_type, returns=True))


# Annotations that say "any JSON" validate nothing, so they cost nothing.
_UNTYPED: tuple[Any, ...] = (None, Any, inspect.Signature.empty, object, dict, list, Mapping)


def _adapter_for(annotation: Any, returns: bool = False) -> Any:
    if annotation in _UNTYPED or (returns and annotation is type(None)):
        return None
    from pydantic import TypeAdapter

    return TypeAdapter(annotation)


_RESOLVING = {"resolve_secrets": True}


def _validated(adapter: Any, value: Any, what: str, context: Any = None) -> Any:
    from pydantic import ValidationError

    try:
        return adapter.validate_python(value, context=context)
    except ValidationError as exc:
        fields = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors(include_url=False)]
        raise InvalidInput(f"{what} is not valid: {_field_errors(exc)}", fields) from None


def _mentions_secret(value: Any) -> bool:
    if isinstance(value, dict):
        return "$secret" in value or any(map(_mentions_secret, value.values()))
    if isinstance(value, list):
        return any(map(_mentions_secret, value))
    return False


def _with_secrets(value: Any, what: str) -> Any:
    from runce.runs.secrets import SecretMissing, resolve_references

    try:
        return resolve_references(value)
    except SecretMissing as exc:
        raise InvalidInput(f"{what} is not valid: {exc}") from None


def _field_errors(exc: Any) -> str:
    """``to: value is not a valid email address; ...`` from a pydantic ValidationError."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "value"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


class JobRegistry:
    """Jobs by kind; one kind is one job."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job[Any, Any]] = {}
        self._mutex = threading.Lock()

    def register(self, job: Job[Any, Any]) -> Job[Any, Any]:
        with self._mutex:
            existing = self._jobs.get(job.kind)
            if existing is not None and existing.where != job.where:
                raise UsageError(
                    f"two jobs are named {job.kind!r}: {existing.where} and {job.where}"
                )
            self._jobs[job.kind] = job
            return job

    def get(self, kind: str) -> Job[Any, Any] | None:
        return self._jobs.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._jobs)

    def forget(self, kind: str) -> None:
        with self._mutex:
            self._jobs.pop(kind, None)


registry = JobRegistry()


class JobDecorator(Protocol):
    """What ``@runce.job(...)`` applies: it turns ``fn(params[, ctx])`` into a ``Job``."""

    @overload
    def __call__(self, fn: Callable[[P, JobContext], Awaitable[R]], /) -> Job[P, R]: ...
    @overload
    def __call__(self, fn: Callable[[P], Awaitable[R]], /) -> Job[P, R]: ...
    @overload
    def __call__(self, fn: Callable[[P, JobContext], R], /) -> Job[P, R]: ...
    @overload
    def __call__(self, fn: Callable[[P], R], /) -> Job[P, R]: ...


def job(
    kind: str,
    *,
    max_attempts: int | None = None,
    timeout: float | None = None,
    cron: str | None = None,
    cron_timezone: str = "UTC",
    transactional: bool = False,
    concurrency: int | None = None,
    concurrency_key: str | Callable[[Any], Any] | None = None,
    rate: str | None = None,
    debounce: str | float | None = None,
) -> JobDecorator:
    """Register the decorated function as the job for runs of ``kind``.

    ``cron`` also declares a schedule named ``kind`` that runs the job with no input at
    every tick (in ``cron_timezone``); ``runce.schedule`` declares one with an input.
    ``transactional`` gives the job ``ctx.db``, a connection in a transaction on the store's
    database in which the worker also records the run's success (SQLite and PostgreSQL).
    ``concurrency`` caps the runs of the kind running at once across every worker, per
    ``concurrency_key`` (a field of the input, or a function of it) when one is given;
    ``rate`` (``"100/m"``) caps its starts per window the same way, with a burst of as many.
    ``debounce`` (``"30s"``, needs ``concurrency_key``): enqueueing a run whose key already
    has a queued run of the kind replaces that run's input and starts it that long from now.
    """
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise UsageError(f"job kind {kind!r} must be letters, digits and . _ : - (at most 200)")
    parsed_rate = parse_rate(kind, rate)
    seconds = parse_debounce(kind, debounce, concurrency_key)
    check_concurrency(kind, concurrency, concurrency_key, parsed_rate, seconds)
    if max_attempts is not None:
        bounded(f"job {kind!r}: max_attempts", max_attempts, 1, MAX_ATTEMPTS, duration=False)
    if timeout is not None:
        bounded(f"job {kind!r}: timeout", timeout, MIN_TIMEOUT, MAX_RUN_TIME)
    if cron is not None:
        from runce.runs.schedules import ScheduleSpec, check

        check(ScheduleSpec(kind, kind, cron, cron_timezone))

    def register(fn: JobFunction) -> Job[Any, Any]:
        if not callable(fn):
            raise UsageError(f"@runce.job({kind!r}) must decorate a function")
        try:
            _adapters(fn)  # a bad annotation fails here, on import, not on the first run
        except Exception as exc:
            raise UsageError(f"job {kind!r}: its annotations cannot be used: {exc}") from exc
        if transactional and inspect.iscoroutinefunction(fn):
            raise UsageError(
                f"job {kind!r}: transactional=True needs a plain function, not async "
                "(ctx.db is a blocking connection)"
            )
        made = registry.register(
            Job(
                kind,
                fn,
                max_attempts,
                timeout,
                transactional,
                concurrency,
                concurrency_key,
                parsed_rate,
                seconds,
            )
        )
        if cron is not None:
            _declare_schedule(made, cron, cron_timezone)
        return made

    return register


def _declare_schedule(made: Job[Any, Any], expression: str, timezone: str) -> None:
    from runce.runs.schedules import schedule

    try:
        made.input_for_storage(None)
    except InvalidInput as exc:
        raise UsageError(
            f"job {made.kind!r}: cron= runs it with no input, which is not valid ({exc}); "
            "declare runce.schedule(expression, kind, input) instead"
        ) from None
    schedule(expression, made.kind, None, timezone=timezone)


def load_handlers(modules: Sequence[str], where: str = "worker.handlers") -> None:
    """Import the modules that define jobs; an import error names the module."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise ConfigError(
                f"{where}: module {name!r} could not be imported: {type(exc).__name__}: {exc}"
            ) from exc
