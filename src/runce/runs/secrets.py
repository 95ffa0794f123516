"""Secrets in runs (docs/runs.md#secrets): references in the stored input, values only
inside the worker.

A run's input never holds a secret. A job field typed ``runce.Secret``
(:mod:`runce.runs.secret_field`) holds a *reference*, ``{"$secret": "NAME"}``; enqueueing a
plain value there is refused. When the job runs, the
worker resolves each reference (from its environment by default, or through the function
``worker.secrets`` names) and the job gets a ``pydantic.SecretStr``, whose ``repr`` and
``str`` are masked: call ``.get_secret_value()`` where the value is needed. Untyped jobs
get the same for any ``{"$secret": "NAME"}`` object in their input.

Resolved values are remembered (in this process only) so that they are masked wherever
runce writes text: a run's stored error, and runce's log records, whose configured keys
(``worker.redact``) are masked too (see :mod:`runce.runs.redact`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import SecretStr

REFERENCE_KEY = "$secret"
Resolver = Callable[[str], "str | None"]


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A reference to a secret by name, as a run's input keeps it."""

    name: str

    def __repr__(self) -> str:
        return f"SecretRef({self.name!r})"


class SecretMissing(ValueError):
    """The resolver has no value for a referenced secret (the attempt fails, not retried)."""


def environment(name: str) -> str | None:
    """The default resolver: the worker's environment variable ``name``."""
    return os.environ.get(name)


class _State:
    def __init__(self) -> None:
        self.resolver: Resolver = environment
        self.values: set[str] = set()  # resolved in this process: masked in runce's text
        self.known: frozenset[str] = frozenset()  # the same, read without the mutex
        self.mutex = threading.Lock()


_state = _State()


def use_resolver(resolver: Resolver | None) -> None:
    """Resolve references with ``resolver`` from now on (None: the environment)."""
    _state.resolver = resolver or environment


def resolve(name: str) -> SecretStr:
    from pydantic import SecretStr

    value = _state.resolver(name)
    if value is None:
        raise SecretMissing(f"secret {name!r} is not set where the job runs")
    # Masking a one-letter value would mangle every text it appears in.
    if len(value) >= 4 and value not in _state.known:
        with _state.mutex:
            _state.values.add(value)
            _state.known = frozenset(_state.values)
    return SecretStr(value)


def known_values() -> frozenset[str]:
    return _state.known


def is_reference(value: object) -> bool:
    return (
        isinstance(value, dict)
        and len(value) == 1
        and isinstance(value.get(REFERENCE_KEY), str)
        and bool(value[REFERENCE_KEY])
    )


def resolve_references(value: Any) -> Any:
    """An untyped input with every ``{"$secret": NAME}`` object replaced by its value."""
    if isinstance(value, dict):
        if is_reference(value):
            return resolve(value[REFERENCE_KEY])
        return {k: resolve_references(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_references(v) for v in value]
    return value
