"""Fixtures shared by every test folder: the database servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import services


@pytest.fixture(scope="session")
def postgres_server() -> str:
    url = services.postgres_url()
    services.check_postgres(url)
    return url


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[str]:
    yield from services.mongo_server()
