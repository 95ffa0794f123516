"""The clients send idempotent calls again after a dropped connection, a 429 or a 503,
honouring Retry-After, within their attempts and total time; other calls are sent once.
Against a real HTTP server (a stdlib one in a thread) that answers from a script."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import runce
from runce.errors import RateLimited, ServerUnavailable

RUN = {
    "id": "r1",
    "kind": "email.send",
    "state": "queued",
    "input": {},
    "attempt": 0,
    "max_attempts": 3,
    "priority": 0,
    "run_at": "2026-01-01T00:00:00Z",
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
}


class Script:
    """What the server answers, in order: ("drop",) closes the connection unanswered,
    (status, headers) answers a problem, ("ok",) answers the run."""

    def __init__(self) -> None:
        self.steps: list[tuple[Any, ...]] = []
        self.seen: list[tuple[str, str, float]] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            script.seen.append((self.command, self.path, time.monotonic()))
            step = script.steps.pop(0) if script.steps else ("ok",)
            if step[0] == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if step[0] == "ok":
                self.reply(200, RUN, {})
                return
            status, headers = step
            problem = {
                "type": f"https://runce.dev/problems/{'rate-limited' if status == 429 else 'x'}",
                "title": "busy",
                "status": status,
                "detail": "busy",
            }
            self.reply(status, problem, headers)

        def reply(self, status: int, body: Any, headers: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = answer
        do_POST = answer

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()
    httpd.server_close()


def test_a_read_is_retried_after_503_and_a_dropped_connection(
    server: tuple[str, Script],
) -> None:
    url, script = server
    script.steps = [(503, {"Retry-After": "0.3"}), ("drop",)]
    with runce.Client(url, "t") as client:
        assert client.get_run("r1").id == "r1"
    times = [seen[2] for seen in script.seen]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.29, "Retry-After was honoured"


def test_an_enqueue_with_an_idempotency_key_is_retried_but_one_without_is_not(
    server: tuple[str, Script],
) -> None:
    url, script = server
    script.steps = [(429, {"Retry-After": "0"})]
    with runce.Client(url, "t") as client:
        assert client.enqueue("email.send", {}, idempotency_key="k").id == "r1"
        assert len(script.seen) == 2
        script.steps = [(429, {"Retry-After": "0"})]
        with pytest.raises(RateLimited):
            client.enqueue("email.send", {})
    assert len(script.seen) == 3, "a POST without a key is sent once"


def test_retries_stop_at_the_attempts_and_at_the_total_time(
    server: tuple[str, Script],
) -> None:
    url, script = server
    script.steps = [(503, {"Retry-After": "0"})] * 10
    with runce.Client(url, "t", retry_attempts=3) as client, pytest.raises(ServerUnavailable):
        client.get_run("r1")
    assert len(script.seen) == 3
    script.seen.clear()
    script.steps = [(503, {"Retry-After": "60"})] * 2
    began = time.monotonic()
    with runce.Client(url, "t", retry_time=5) as client, pytest.raises(ServerUnavailable):
        client.get_run("r1")
    assert len(script.seen) == 1, "a pause past the total time is not waited for"
    assert time.monotonic() - began < 5


def test_the_async_client_retries_and_reads(server: tuple[str, Script]) -> None:
    url, script = server
    script.steps = [("drop",), (503, {"Retry-After": "0"})]

    async def scenario() -> runce.Run:
        async with runce.AsyncClient(url, "t") as client:
            return await client.cancel_run("r1")

    assert asyncio.run(scenario()).id == "r1"
    assert [seen[:2] for seen in script.seen] == [("POST", "/v1/runs/r1:cancel")] * 3


def test_the_client_needs_only_httpx_and_says_so_when_it_is_missing() -> None:
    """Without FastAPI and uvicorn the client imports; without httpx, one sentence."""
    code = """
import sys
class Block:
    def __init__(self, names): self.names = names
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block(set(sys.argv[1].split(","))))
import runce
try:
    print(runce.Client("http://127.0.0.1:1").url)
    print(runce.AsyncClient("http://127.0.0.1:1").url)
except ModuleNotFoundError as exc:
    print("missing:", exc)
"""
    ok = subprocess.run(
        [sys.executable, "-c", code, "fastapi,uvicorn,starlette"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ok.stdout.splitlines() == ["http://127.0.0.1:1"] * 2
    missing = subprocess.run(
        [sys.executable, "-c", code, "httpx"], capture_output=True, text=True, check=True
    )
    assert missing.stdout.strip() == (
        "missing: runce.Client needs httpx, which is not installed: "
        "pip install 'nurv-runce[client]'"
    )
