"""The OpenAPI document: served, committed, and in step with the app."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from tests.server.conftest import Api

ROOT = Path(__file__).parents[2]


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("openapi_script", ROOT / "scripts" / "openapi.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_document_is_the_apps() -> None:
    committed = (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert committed == _script().current(), (
        "docs/openapi.json is out of date: python scripts/openapi.py writes it"
    )
    assert _script().main(["--check"]) == 0


def test_the_served_document_needs_no_token_and_equals_the_committed_one(api: Api) -> None:
    response = api.call("GET", "/openapi.json", role=None)
    assert response.status_code == 200
    assert response.json() == json.loads((ROOT / "docs" / "openapi.json").read_text())


def test_every_error_answer_is_documented_as_problem_json(api: Api) -> None:
    document = api.call("GET", "/openapi.json", role=None).json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    assert list(answer["content"]) == ["application/problem+json"], (
                        method,
                        path,
                    )
            if path.startswith("/v1/"):
                assert operation["security"] == [{"token": []}], (method, path)
                assert "401" in operation["responses"], (method, path)
