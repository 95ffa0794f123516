"""The HTTP service in process (FastAPI's TestClient) on a real SQLite store, with tokens
of every kind made through runce's own token functions."""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette suggests another httpx for its TestClient
    from fastapi.testclient import TestClient

from runce.api.app import create_app
from runce.config import Config, resolve_config
from runce.runs.tokens import create_token

ALL = ("runs:read", "runs:write", "runs:work")
# Each token by role: its scopes and projects.
ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "all": (ALL, ()),
    "reader": (("runs:read",), ()),
    "writer": (("runs:write",), ()),
    "worker": (("runs:work",), ()),
    "shop": (("runs:read", "runs:write"), ("shop",)),
    "shop_worker": (("runs:work",), ("shop",)),
    "two": (("runs:read", "runs:write"), ("shop", "blog")),
}


@dataclass
class Api:
    client: TestClient
    config: Config
    tokens: dict[str, str] = field(default_factory=dict)

    def as_(self, role: str | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}

    def call(self, method: str, path: str, role: str | None = "all", **kwargs: Any) -> Any:
        headers = {**self.as_(role), **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def enqueue(self, role: str = "all", **body: Any) -> dict[str, Any]:
        response = self.call("POST", "/v1/runs", role, json={"kind": "email.send", **body})
        assert response.status_code == 201, response.text
        found: dict[str, Any] = response.json()
        return found


def make_api(root: Path, settings: dict[str, Any] | None = None) -> Api:
    values = {"store": "sqlite:///.runce/runce.db", **(settings or {})}
    config = resolve_config(values, tasks_dir=str(root / "tasks"))
    api = Api(TestClient(create_app(config), raise_server_exceptions=False), config)
    for role, (scopes, projects) in ROLES.items():
        api.tokens[role] = create_token(role, scopes, projects, config=config).text
    return api


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.chdir(tmp_path)
    made = make_api(tmp_path)
    yield made
    made.client.close()


@pytest.fixture
def typed_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """A server whose worker.handlers define a typed job, ``typed.signup``."""
    # One module name for the session: the job registry is the process's, and a kind may
    # be defined by one module only.
    module = "server_typed_jobs"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            from pydantic import BaseModel, Field
            import runce

            class Signup(BaseModel):
                email: str = Field(pattern=r".+@.+")
                age: int = Field(ge=18)

            @runce.job("typed.signup")
            def signup(params: Signup) -> None:
                pass
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    made = make_api(tmp_path, {"worker": {"handlers": [module]}})
    yield made
    made.client.close()
