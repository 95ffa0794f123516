"""examples/connections/async_client.py runs as written against a real runce server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.acceptance.conftest import clean_env
from tests.client.conftest import Server

EXAMPLE = Path(__file__).parents[2] / "examples" / "connections" / "async_client.py"


def test_the_async_client_example(server: Server) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), server.url],
        env=clean_env(RUNCE_API_TOKEN=server.tokens["all"]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "queued True"
