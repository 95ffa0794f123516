"""Cron schedules declared in code (docs/runs.md#cron-schedules): ``runce.schedule(...)`` or
``@runce.job(cron=...)``.

A declaration is checked when it is made (an invalid expression or an unknown timezone is
refused with the reason) and lives in :data:`registry` until a worker synchronises it to
the store (:mod:`runce.runs.scheduler`). Declarations sit beside the jobs, in the modules
``worker.handlers`` names; its job may be defined after it in the module, so whether a job
runs its kind is checked when a worker starts with those modules loaded
(:func:`check_handled`), and when a schedule is enabled where handlers are configured.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runce.errors import UsageError
from runce.runs import cron

_NAME = re.compile(r"^[A-Za-z0-9][\w.:@-]{0,199}$")


@dataclass(frozen=True)
class ScheduleSpec:
    """One declared schedule: run ``kind`` with ``input`` at every tick of ``expression``."""

    name: str
    kind: str
    expression: str
    timezone: str = "UTC"
    input: Any = None


class ScheduleRegistry:
    """Declared schedules by name; one name is one schedule."""

    def __init__(self) -> None:
        self._specs: dict[str, ScheduleSpec] = {}
        self._mutex = threading.Lock()

    def register(self, spec: ScheduleSpec) -> ScheduleSpec:
        with self._mutex:
            existing = self._specs.get(spec.name)
            if existing is not None and existing != spec:
                raise UsageError(
                    f"two schedules are named {spec.name!r} ({existing.kind} at "
                    f"{existing.expression!r} and {spec.kind} at {spec.expression!r}); "
                    "give each its own name="
                )
            self._specs[spec.name] = spec
            return spec

    def all(self) -> list[ScheduleSpec]:
        with self._mutex:
            return [self._specs[name] for name in sorted(self._specs)]

    def forget(self, name: str) -> None:
        with self._mutex:
            self._specs.pop(name, None)


registry = ScheduleRegistry()


def schedule(
    expression: str,
    kind: str,
    input: Any = None,
    *,
    timezone: str = "UTC",
    name: str | None = None,
) -> ScheduleSpec:
    """Run ``kind`` with ``input`` at every tick of the cron ``expression`` in ``timezone``.

    The schedule is named ``name`` (the kind when not given): the name is what
    ``runce schedules enable|disable`` take, and one name is one schedule.
    """
    spec = ScheduleSpec(name or kind, kind, expression, timezone, input)
    check(spec)
    return registry.register(spec)


def unhandled(name: str, kind: str, known: Sequence[str]) -> UsageError:
    """The error for a schedule of a kind no loaded job defines: each of its ticks would
    enqueue a run that no worker can run."""
    jobs = ", ".join(known) or "none"
    return UsageError(
        f"schedule {name!r} runs kind {kind!r}, which no job in worker.handlers defines "
        f"(jobs: {jobs}); every tick would enqueue a run no worker can run"
    )


def check_handled(specs: Sequence[ScheduleSpec], known: Sequence[str]) -> None:
    """Refuse the first declared schedule whose kind none of the ``known`` jobs has."""
    for spec in specs:
        if spec.kind not in known:
            raise unhandled(spec.name, spec.kind, known)


def check(spec: ScheduleSpec) -> None:
    if not isinstance(spec.name, str) or not _NAME.match(spec.name):
        raise UsageError(
            f"schedule name {spec.name!r} must be letters, digits and . _ : @ - (at most 200)"
        )
    try:
        cron.check(spec.expression, spec.timezone)
    except UsageError as exc:
        raise UsageError(f"schedule {spec.name!r}: {exc}") from None
