"""The dashboard in a real headless browser: Debian's ``chromium`` driven by Playwright,
against ``runce serve`` and ``runce worker`` running as real processes.

``scripts/test`` installs chromium when it is missing (as root); without it these tests
fail in CI and are skipped elsewhere, with the reason. Playwright's own browser downloads
are never used: the browser is the system's.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import Workspace
from tests.acceptance.test_serve import Server
from tests.services import ROOT, unavailable

CHROMIUM = Path("/usr/bin/chromium")
QUIET = [
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SHOTS = ROOT / "tests" / ".artifacts" / "screenshots"
WAIT = 60_000  # milliseconds: generous, the machine may be busy

JOBS = '''
import os, time
import runce


@runce.job("ui.step")
def step(params, ctx):
    """Runs until the test opens its gate (a file), showing progress on the way."""
    ctx.progress(10, "waiting for the gate")
    deadline = time.monotonic() + 120
    while not os.path.exists(params["gate"]) and time.monotonic() < deadline:
        if ctx.cancelled:
            return "stopped"
        time.sleep(0.05)
    return {"passed": params["gate"]}


@runce.job("ui.hostile", max_attempts=1)
def hostile(params, ctx):
    raise ValueError(params["note"])


@runce.job("ui.quick")
def quick(params, ctx):
    return {"ok": True}


runce.schedule("0 3 * * *", "ui.quick", name="nightly.report")
runce.schedule("*/5 * * * *", "ui.quick", name="cache.warm")
'''


@dataclass
class Dashboard:
    """``runce serve`` on a SQLite store in a workspace, with a token per role."""

    space: Workspace
    server: Server
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def enqueue(self, kind: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = httpx.post(
            f"{self.url}/v1/runs",
            json={"kind": kind, **(body or {})},
            headers={"Authorization": f"Bearer {self.tokens['writer']}"},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def run(self, run_id: str) -> dict[str, Any]:
        answer = httpx.get(
            f"{self.url}/v1/runs/{run_id}",
            headers={"Authorization": f"Bearer {self.tokens['writer']}"},
            timeout=30,
        )
        found: dict[str, Any] = answer.json()
        return found


@pytest.fixture(scope="module")  # not longer: its event loop would stay for the tests after
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        unavailable(
            f"Debian's chromium is not at {CHROMIUM}; `scripts/test` installs it as root "
            "(apt-get install chromium)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (it comes with the dev extra)")
    args = ["--no-sandbox", *QUIET] if os.geteuid() == 0 else QUIET
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield launched
        launched.close()


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    space = Workspace(
        tmp_path,
        "sqlite:///.runce/runce.db",
        '[worker]\nhandlers = ["ui_jobs"]\nlease = 6\npoll = 0.2\nshutdown_timeout = 1\n',
    )
    (tmp_path / "ui_jobs.py").write_text(textwrap.dedent(JOBS))
    server = Server(space)
    made = Dashboard(space, server)
    made.tokens = {
        "writer": server.token("runs:read", "runs:write", name="operator"),
        "reader": server.token("runs:read", name="auditor"),
    }
    yield made
    server.stop()
    space.reap()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    made = browser.new_context(viewport={"width": 1280, "height": 900})
    yield made
    made.close()


def watch(page: Any) -> list[str]:
    """Every dialog, console error and uncaught error of ``page`` from now on (a dialog is
    dismissed); none may happen on a dashboard page."""
    seen: list[str] = []

    def on_dialog(dialog: Any) -> None:
        seen.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("console", lambda m: seen.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda error: seen.append(f"page error: {error}"))
    return seen


def sign_in(page: Any, dashboard: Dashboard, role: str, path: str = "/ui") -> None:
    page.goto(dashboard.url + path)
    page.get_by_label("API token").fill(dashboard.tokens[role])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{path}", timeout=WAIT)
