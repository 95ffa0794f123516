"""The OpenAPI document served at ``/openapi.json`` and kept as ``docs/openapi.json``.

FastAPI's own document describes errors as ``application/json`` with its validation model;
runce answers every error as ``application/problem+json`` (:class:`~.schemas.Problem`), so
the error responses are rewritten to say so. ``scripts/openapi.py`` writes the document
and a test fails when the committed copy drifts from the app's.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from runce.api.problems import MEDIA_TYPE
from runce.api.schemas import FieldError, Problem

_REF = "#/components/schemas/{model}"
_FASTAPI_ERRORS = ("HTTPValidationError", "ValidationError")


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_ERRORS:
        schemas.pop(name, None)
    schemas["Problem"] = Problem.model_json_schema(ref_template=_REF)
    schemas["Problem"].pop("$defs", None)
    schemas["FieldError"] = FieldError.model_json_schema(ref_template=_REF)
    for operation in _operations(schema):
        for status, response in operation.get("responses", {}).items():
            if status.isdigit() and int(status) >= 400:
                response["content"] = {
                    MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
                }
    return schema


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for path in schema.get("paths", {}).values() for op in path.values()]


def text(app: FastAPI) -> str:
    """The document as committed: sorted keys, two-space indent, a final newline."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
