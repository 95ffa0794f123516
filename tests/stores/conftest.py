"""Stores under test. Each backend yields a maker that opens store objects on one fresh
location, so a second ``open()`` stands for a second process looking at the same data."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runce.stores import memory
from runce.stores.base import Store, StoreSpec
from runce.stores.registry import open_store


@dataclass
class StoreMaker:
    """Opens stores of one backend on one location; closes them all at the end."""

    spec: StoreSpec
    # Whether a lease can lapse by time (flock-based locks cannot).
    leases_expire: bool = True
    # Whether `clear(force=True)` can take a live lock away (a kernel flock cannot).
    force_clears: bool = True
    opened: list[Store] = field(default_factory=list)
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def open(self, **changes: object) -> Store:
        spec = StoreSpec(**{**self.spec.__dict__, **changes})  # type: ignore[arg-type]
        store = open_store(spec)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            store.close()
        for step in self.cleanup:
            step()


def _memory(tmp_path: Path) -> StoreMaker:
    return StoreMaker(StoreSpec(type="memory", url=f"memory://{uuid.uuid4().hex}"))


def _sqlite(tmp_path: Path) -> StoreMaker:
    return StoreMaker(StoreSpec(type="sqlite", url="sqlite:///.runce/runce.db", base_dir=tmp_path))


def _file(tmp_path: Path) -> StoreMaker:
    url = f"file://{tmp_path / 'applied.jsonl'}"
    spec = StoreSpec(type="file", url=url, base_dir=tmp_path)
    return StoreMaker(spec, leases_expire=False, force_clears=False)


def _postgres(request: pytest.FixtureRequest) -> StoreMaker:
    from tests import services

    url = request.getfixturevalue("postgres_server")
    schema = f"runce_t_{uuid.uuid4().hex[:12]}"
    made = StoreMaker(StoreSpec(type="postgresql", url=url, schema=schema), leases_expire=False)
    made.cleanup.append(lambda: services.drop_schema(url, schema))
    return made


def _mongo(request: pytest.FixtureRequest) -> StoreMaker:
    server = request.getfixturevalue("mongo_server")
    database = f"runce_t_{uuid.uuid4().hex[:12]}"
    made = StoreMaker(StoreSpec(type="mongodb", url=f"{server.rstrip('/')}/{database}"))

    def drop() -> None:
        import pymongo

        with pymongo.MongoClient(server) as client:
            client.drop_database(database)

    made.cleanup.append(drop)
    return made


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], StoreMaker]] = {
    "memory": lambda request, tmp_path: _memory(tmp_path),
    "sqlite": lambda request, tmp_path: _sqlite(tmp_path),
    "file": lambda request, tmp_path: _file(tmp_path),
}
# Backends join the suite as their module lands.
if importlib.util.find_spec("runce.stores.postgres") is not None:
    BACKENDS["postgres"] = lambda request, tmp_path: _postgres(request)
if importlib.util.find_spec("runce.stores.mongo") is not None:
    BACKENDS["mongo"] = lambda request, tmp_path: _mongo(request)


@pytest.fixture(params=sorted(BACKENDS))
def maker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreMaker]:
    made = BACKENDS[request.param](request, tmp_path)
    yield made
    made.close_all()
    memory.reset()


@pytest.fixture
def store(maker: StoreMaker) -> Store:
    return maker.open()
