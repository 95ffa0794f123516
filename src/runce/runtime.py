"""What a running program works with: its configuration, its open store and the parts made
on them (the run service, the token store), in one object (docs/architecture.md).

Whoever runs owns a :class:`Runtime`: a command opens one for its length and closes it at
the end (``with Runtime(cfg) as runtime:``), so the once-task functions it calls and the
line naming the store share one store; the HTTP app and the library's default borrow the
process's shared store for the configuration's (:func:`shared_store`), opened on first use
and closed at exit, so enqueueing in a loop does not set up a connection per run.

Parts are made by the layers above (:mod:`runce.runs` makes the run service) and kept here
by their maker: the runtime knows stores and configuration, nothing of runs or tasks.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar, cast

from runce.config import Config, ConfigArg, resolve_config
from runce.stores.base import Store, StoreSpec
from runce.stores.registry import open_store

T = TypeVar("T")

_shared: dict[tuple[object, ...], Store] = {}
_mutex = threading.Lock()


class Runtime:
    """A configuration, the store it names and what is made on them, for one owner.

    ``store``: a store to borrow (the runtime never closes it); None opens the
    configuration's own store when first needed, closed by :meth:`close`.
    """

    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self._store = store
        self._owns_store = store is None
        self._parts: dict[Callable[[Runtime], Any], Any] = {}
        self._guard = threading.RLock()  # a part made under it may open the store

    @classmethod
    def shared(cls, config: Config) -> Runtime:
        """A runtime on the process's shared store for ``config`` (never closed by it)."""
        return cls(config, shared_store(config.store))

    @property
    def store(self) -> Store:
        """The store, opened on first use."""
        found = self._store
        if found is None:
            with self._guard:
                if self._store is None:
                    self._store = open_store(self.config.store)
                found = self._store
        return found

    @property
    def description(self) -> str:
        """The store as the commands' first line names it."""
        return self.store.description

    def part(self, make: Callable[[Runtime], T]) -> T:
        """What ``make`` builds on this runtime, built once and kept (the run service)."""
        found = self._parts.get(make)
        if found is None:
            with self._guard:
                found = self._parts.get(make)
                if found is None:
                    found = self._parts[make] = make(self)
        return cast(T, found)

    def close(self) -> None:
        """Close the store if this runtime opened it; the parts go with it."""
        with self._guard:
            store, self._store = self._store, None
            self._parts.clear()
        if store is not None and self._owns_store:
            store.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# What a function of the library takes: a configuration in any of its forms (a runtime is
# made for the call and closed at its end) or the caller's runtime.
RuntimeArg = ConfigArg | Runtime


@contextmanager
def using(config: RuntimeArg) -> Iterator[Runtime]:
    """The caller's runtime, or one made for ``config`` and closed when the call ends (its
    store is opened only if the call needs it)."""
    if isinstance(config, Runtime):
        yield config
        return
    with Runtime(resolve_config(config)) as runtime:
        yield runtime


def shared_store(spec: StoreSpec) -> Store:
    """The process's open store for ``spec`` (opened on first use, closed at exit)."""
    key = (
        spec.type,
        spec.url,
        repr(sorted(spec.options.items())),
        str(spec.base_dir),
        spec.schema,
        spec.auto_migrate,
    )
    with _mutex:
        store = _shared.get(key)
        if store is None:
            store = _shared[key] = open_store(spec)
        return store


_on_close: list[Callable[[], None]] = []


def on_close_shared(forget: Callable[[], None]) -> None:
    """Call ``forget`` whenever the shared stores close (a layer's caches of parts on them)."""
    _on_close.append(forget)


@atexit.register
def close_shared() -> None:
    """Close every shared store (at exit, and in a Django process whose connections were
    made anew); the next use opens it again."""
    with _mutex:
        stores = list(_shared.values())
        _shared.clear()
    for forget in _on_close:
        forget()
    for store in stores:
        store.close()
