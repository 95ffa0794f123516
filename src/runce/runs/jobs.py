"""Job definitions (R-4): ``@runce.job("email.send")`` on the function that does the work.

A job function is called as ``fn(params, ctx)`` (or ``fn(params)``), sync or ``async``;
``params`` is the run's JSON input. Modules holding jobs are named in ``worker.handlers``
and imported by the worker (and by ``runce runs enqueue`` to check kinds).
"""

from __future__ import annotations

import importlib
import inspect
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from runce.errors import ConfigError, UsageError

JobFunction = Callable[..., Any]
F = TypeVar("F", bound=JobFunction)

_KIND = re.compile(r"^[A-Za-z0-9][\w.:-]{0,199}$")


@dataclass(frozen=True)
class Job:
    """A registered job: the function and how its runs are retried and timed out."""

    kind: str
    fn: JobFunction
    max_attempts: int | None = None
    timeout: float | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    @property
    def takes_context(self) -> bool:
        parameters = inspect.signature(self.fn).parameters
        return len(parameters) >= 2

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calling the job calls its function, as if it were not decorated."""
        return self.fn(*args, **kwargs)

    @property
    def where(self) -> str:
        return f"{self.fn.__module__}.{self.fn.__qualname__}"


class JobRegistry:
    """Jobs by kind; one kind is one job."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._mutex = threading.Lock()

    def register(self, job: Job) -> Job:
        with self._mutex:
            existing = self._jobs.get(job.kind)
            if existing is not None and existing.where != job.where:
                raise UsageError(
                    f"two jobs are named {job.kind!r}: {existing.where} and {job.where}"
                )
            self._jobs[job.kind] = job
            return job

    def get(self, kind: str) -> Job | None:
        return self._jobs.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._jobs)

    def forget(self, kind: str) -> None:
        with self._mutex:
            self._jobs.pop(kind, None)


registry = JobRegistry()


def job(
    kind: str, *, max_attempts: int | None = None, timeout: float | None = None
) -> Callable[[JobFunction], Job]:
    """Register the decorated function as the job for runs of ``kind``."""
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise UsageError(f"job kind {kind!r} must be letters, digits and . _ : - (at most 200)")
    if max_attempts is not None and max_attempts < 1:
        raise UsageError(f"job {kind!r}: max_attempts must be at least 1")
    if timeout is not None and timeout <= 0:
        raise UsageError(f"job {kind!r}: timeout must be a positive number of seconds")

    def register(fn: JobFunction) -> Job:
        if not callable(fn):
            raise UsageError(f"@runce.job({kind!r}) must decorate a function")
        return registry.register(Job(kind, fn, max_attempts, timeout))

    return register


def load_handlers(modules: Sequence[str], where: str = "worker.handlers") -> None:
    """Import the modules that define jobs; an import error names the module."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise ConfigError(
                f"{where}: module {name!r} could not be imported: {type(exc).__name__}: {exc}"
            ) from exc
