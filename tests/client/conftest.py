"""A real runce server for the client's tests: ``create_app`` under uvicorn on a free port
(in a thread of the test process), on a fresh SQLite or PostgreSQL store, with tokens made
by runce's own token functions."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from runce.api.app import create_app
from runce.api.client import Client
from runce.config import Config, resolve_config
from runce.runs.jobs import load_handlers
from runce.runs.tokens import create_token
from tests import services

ALL = ("runs:read", "runs:write", "runs:work")
ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "all": (ALL, ()),
    "reader": (("runs:read",), ()),
    "worker": (("runs:work",), ()),
    "shop": (("runs:read", "runs:write"), ("shop",)),
}


@dataclass
class Server:
    url: str
    config: Config
    tokens: dict[str, str] = field(default_factory=dict)
    clients: list[Client] = field(default_factory=list)

    def client(self, role: str | None = "all", **options: Any) -> Client:
        made = Client(self.url, None if role is None else self.tokens[role], **options)
        self.clients.append(made)
        return made


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(config: Config) -> Iterator[str]:
    """Run the app on a free port until the test ends; yields its URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def _store(request: pytest.FixtureRequest, root: Path) -> Iterator[dict[str, Any]]:
    if request.param == "sqlite":
        yield {"store": f"sqlite:///{root / 'runce.db'}"}
        return
    url = request.getfixturevalue("postgres_server")
    schema = f"runce_t_{uuid.uuid4().hex[:12]}"
    yield {"store": url, "schema": schema}
    services.drop_schema(url, schema)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "tasks").mkdir()
    stores = _store(request, tmp_path)
    values = {
        **next(stores),
        "tasks_dir": str(tmp_path / "tasks"),
        "worker": {"handlers": ["tests.client.jobs"], "backoff_base": 0.05},
        "api": {"rate_limit": {"enqueue": "off", "cancel": "off"}},
    }
    config = resolve_config(values)
    load_handlers(config.worker.handlers, "test jobs")
    urls = serve(config)
    made = Server(next(urls), config)
    for role, (scopes, projects) in ROLES.items():
        made.tokens[role] = create_token(role, scopes, projects, config=config).text
    yield made
    for client in made.clients:
        client.close()
    for _ in urls:
        pass
    for _ in stores:
        pass
