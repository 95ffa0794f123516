"""Fixtures shared by every test folder: the database servers."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import pytest

from tests import services


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background (``cmd &`` in a script, ``nohup``) inherits Ctrl-C
    ignored, and so would every command it starts: Python keeps an inherited SIG_IGN, so
    the tests that press Ctrl-C would find it ignored. The suite gives it back to Python."""
    main = threading.current_thread() is threading.main_thread()
    if main and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    url = services.postgres_url()
    services.check_postgres(url)
    return url


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[str]:
    yield from services.mongo_server()


def _encodable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Reports whose captured logs or failure text hold lone surrogates (the bad-input tests
    make them on purpose) are written with escapes: pytest-xdist can only send UTF-8."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    report.sections = [(title, _encodable(text)) for title, text in report.sections]
    if report.longrepr is not None:
        shown = str(report.longrepr)
        if _encodable(shown) != shown:
            report.longrepr = _encodable(shown)
