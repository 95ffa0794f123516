"""Stores under test. Each backend yields a maker that opens store objects on one fresh
location, so a second ``open()`` stands for a second process looking at the same data."""

from __future__ import annotations

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
    opened: list[Store] = field(default_factory=list)

    def open(self, **changes: object) -> Store:
        spec = StoreSpec(**{**self.spec.__dict__, **changes})  # type: ignore[arg-type]
        store = open_store(spec)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


def _memory(tmp_path: Path) -> StoreMaker:
    return StoreMaker(StoreSpec(type="memory", url=f"memory://{uuid.uuid4().hex}"))


def _sqlite(tmp_path: Path) -> StoreMaker:
    return StoreMaker(StoreSpec(type="sqlite", url="sqlite:///.runce/runce.db", base_dir=tmp_path))


def _file(tmp_path: Path) -> StoreMaker:
    url = f"file://{tmp_path / 'applied.jsonl'}"
    return StoreMaker(StoreSpec(type="file", url=url, base_dir=tmp_path), leases_expire=False)


BACKENDS: dict[str, Callable[[Path], StoreMaker]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "file": _file,
}


@pytest.fixture(params=sorted(BACKENDS))
def maker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreMaker]:
    made = BACKENDS[request.param](tmp_path)
    yield made
    made.close_all()
    memory.reset()


@pytest.fixture
def store(maker: StoreMaker) -> Store:
    return maker.open()
