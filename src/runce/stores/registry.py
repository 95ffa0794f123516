"""Find the backend for a store by its ``type`` or URL scheme.

runce's own backends are named here as import paths, so a command imports only the one it
uses. Third-party backends plug in through the ``runce.stores`` entry-point group: an entry
``myscheme = "mypackage.store:open_store"`` makes ``store = "myscheme://…"`` work, with no
change to runce. A factory takes a :class:`~runce.stores.base.StoreSpec` and returns a
:class:`~runce.stores.base.Store`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from runce.errors import UnknownStore
from runce.stores.base import Store, StoreSpec

StoreFactory = Callable[[StoreSpec], Store]

ENTRY_POINT_GROUP = "runce.stores"

_BUILTIN: dict[str, str] = {
    "sqlite": "runce.stores.sqlite:open_store",
    "file": "runce.stores.file:open_store",
    "memory": "runce.stores.memory:open_store",
    "postgresql": "runce.stores.postgres:open_store",
    "postgres": "runce.stores.postgres:open_store",
    "mongodb": "runce.stores.mongo:open_store",
    "mongodb+srv": "runce.stores.mongo:open_store",
    "mongo": "runce.stores.mongo:open_store",
}

_EXTRAS = {
    "postgresql": "postgres",
    "postgres": "postgres",
    "mongodb": "mongo",
    "mongodb+srv": "mongo",
    "mongo": "mongo",
}

_registered: dict[str, StoreFactory] = {}


def register_store(type_name: str, factory: StoreFactory) -> None:
    """Register a backend in this process (entry points do the same across installs)."""
    _registered[type_name.lower()] = factory


def scheme_of(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    if not scheme:
        raise UnknownStore(
            f"store URL {url!r} has no scheme; use one like sqlite:///.runce/runce.db, "
            "postgresql://host/db, mongodb://host/db, file:///path/applied.jsonl or memory://"
        )
    return scheme


def is_builtin(type_name: str) -> bool:
    return type_name.lower() in _BUILTIN or type_name.lower() in _registered


def _entry_points(**selection: str) -> Any:
    # importlib.metadata scans every installed distribution: only for third-party stores
    from importlib.metadata import entry_points

    return entry_points(**selection)


def known_types() -> list[str]:
    names = set(_BUILTIN) | set(_registered)
    names.update(ep.name for ep in _entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def find_factory(type_name: str) -> StoreFactory:
    key = type_name.lower()
    if key in _registered:
        return _registered[key]
    if key in _BUILTIN:
        return _load(_BUILTIN[key], key)
    for ep in _entry_points(group=ENTRY_POINT_GROUP, name=key):
        factory: StoreFactory = ep.load()
        return factory
    raise UnknownStore(
        f"no store is registered for {type_name!r}; known: {', '.join(known_types())} "
        f"(third-party stores register in the {ENTRY_POINT_GROUP!r} entry-point group)"
    )


def _load(target: str, key: str) -> StoreFactory:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = _EXTRAS.get(key)
        if extra is None or exc.name == module_name:
            raise UnknownStore(f"the {key} store cannot be loaded: {exc}") from exc
        raise UnknownStore(
            f"the {key} store needs its driver: pip install 'nurv-runce[{extra}]' ({exc})"
        ) from exc
    factory: StoreFactory = getattr(module, attr)
    return factory


def open_store(spec: StoreSpec) -> Store:
    """Open the store a spec names. Nothing is created or migrated until the first write."""
    return find_factory(spec.type)(spec)


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
